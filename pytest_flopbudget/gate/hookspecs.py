"""The plugin's own hooks. Implement them in a ``conftest.py`` or a plugin of yours."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec(firstresult=True)
def pytest_flopbudget_count(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any], config: pytest.Config, options: dict[str, Any]) -> Any:
    """Count one forward pass ``model(*args, **kwargs)`` and return a ``FlopResult``.

    ``options`` holds what the test chose with ``flops.using(...)`` (``counter``,
    ``mode``, ``unpriced``); they override the run's settings.

    Return ``None`` to leave the measurement to the next implementation; the
    plugin's own one (``counting.count`` with ``--flop-counter``/``--flop-mode``)
    runs last. To wrap the default counter, call ``pytest_flopbudget.measure``
    or ``pytest_flopbudget.counting.count`` from yours and change its result.
    """


@pytest.hookspec
def pytest_flopbudget_json_report(config: pytest.Config, report: dict[str, Any]) -> None:
    """Amend the JSON report in place before it is written (``--flop-report-json``)."""
