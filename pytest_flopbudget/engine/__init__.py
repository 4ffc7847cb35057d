"""The counting engine: from a model call to a :class:`~pytest_flopbudget.results.FlopResult`.

- :mod:`.count`: the front door (``count``), choosing a capture and a device mode.
- :mod:`.capture`: the captures (the TorchScript trace, the dispatch capture, the training step)
  and what they share (the tally, module calls, callables).
- :mod:`.rules`: the one registry of per-operator formulas, by category, priced over every capture.
- :mod:`.fastmeta`: output shapes of the common operators on ``meta``, by operator family.
- :mod:`.state`: the guard that leaves the model as it was.
- :mod:`.meta`: moving models and inputs to ``meta``; :mod:`.context`: torch settings shared by the captures.
- :mod:`.generation`, :mod:`.scaling`: counting helpers for generation loops and growth laws.
- :mod:`.errors`: the errors of a count (torch-free, so the pytest side can name them).

The engine imports no pytest. This package's ``__init__`` imports nothing, so importing
:mod:`.errors` (as the pytest side does) never imports torch; its modules do.
"""
