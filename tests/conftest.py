"""Shared set-up for the plugin's own tests."""

from __future__ import annotations

import pytest

# pytester's in-process runs drop the modules first imported inside them, and torch (with
# the internals it loads lazily on its first meta-device call) cannot be imported twice in
# one process. Import it and run both counters once here, before any inner run.
from pytest_flopbudget.engine.count import warm_up

warm_up()

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _neutral_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests decide CI and GitHub behaviour themselves; the outer CI must not leak in."""
    for name in ("CI", "GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
