"""Shared set-up for the plugin's own tests."""

from __future__ import annotations

import pytest

# pytester's in-process runs drop the modules first imported inside them, and torch (with
# the internals it loads lazily) cannot be imported twice in one process. Load torch and
# run both counters once here, so every later inner run finds them already imported.
import torch

from pytest_flopbudget.counting import count


def _warm_up() -> None:
    with torch.device("meta"):
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2))
        x = torch.empty(1, 3, 8, 8)
    for counter in ("torchprofile", "flop_counter"):
        count(model, (x,), {}, counter=counter)


_warm_up()

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _neutral_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests decide CI and GitHub behaviour themselves; the outer CI must not leak in."""
    for name in ("CI", "GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
