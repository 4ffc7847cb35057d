"""The baseline store: ``flopbudget.toml`` read, merged and written atomically (:mod:`.store`), and the
base branch's baseline for pull-request gates (:mod:`.base`). Depends on :mod:`pytest_flopbudget.results` only.
"""
