"""Stable import path of what the pytest plugin offers to code: :func:`records` (the run's
measurements) and :class:`FlopBudgetWarning`. The plugin's hooks live in
:mod:`pytest_flopbudget.gate.plugin`, the module the ``pytest11`` entry point names.
"""

from __future__ import annotations

from pytest_flopbudget.gate.plugin import FlopBudgetWarning, records

__all__ = ["FlopBudgetWarning", "records"]
