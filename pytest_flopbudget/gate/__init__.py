"""The pytest side: the plugin's hooks (:mod:`.plugin`), the run's state (:mod:`.session`), options and ini
settings (:mod:`.settings`), budgets and verdicts (:mod:`.budget`), failure messages (:mod:`.messages`),
the plugin's own hook specifications (:mod:`.hookspecs`) and the pytest-html columns (:mod:`.htmlplugin`).

Importing the gate never imports torch: the engine is loaded on the first measurement.
"""
