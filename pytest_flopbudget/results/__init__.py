"""What a measurement produces: :class:`FlopResult` and :class:`Record` (:mod:`.result`) and the
categories and counting conventions of operators (:mod:`.conventions`).

Plain data. This package imports nothing else of pytest-flopbudget and never imports torch:
the engine produces results, the gate, the baseline store and the reports read them.
"""

from __future__ import annotations

from pytest_flopbudget.results.result import (
    FLOPS_PER_MAC,
    GIGA,
    PHASES,
    STATUSES,
    FlopResult,
    OpCost,
    Record,
)

__all__ = ["FLOPS_PER_MAC", "GIGA", "PHASES", "STATUSES", "FlopResult", "OpCost", "Record"]
