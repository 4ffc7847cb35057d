"""What every report format shares: ordering, status counts, number formatting, unpriced operators.

Pure standard library: the report package only formats ``Record`` data, it never imports torch or pytest.
Every output is deterministic (no timestamps), so reports diff cleanly between runs.
"""

from __future__ import annotations

import math
from typing import Iterable

from ..result import STATUSES, Record

UPDATE_COMMAND = "pytest --flop-update"
MISSING = "-"

_SEVERITY = {status: index for index, status in enumerate(STATUSES)}
FAILING = ("over-budget", "regressed", "raised")
ONLY_WHEN_SEEN = ("raised",)  # counts_line names it only when a test has it (a base gate is opt-in)


# ---------------------------------------------------------------- ordering and counts


def _severity(record: Record) -> int:
    return _SEVERITY.get(record.status, len(STATUSES))


def _sort_key(record: Record) -> tuple:
    delta = record.delta_pct
    return (_severity(record), delta is None, -(delta or 0.0), record.id)


def sort_records(records: Iterable[Record]) -> list[Record]:
    """Most severe status first, then the largest change, then the id."""
    return sorted(records, key=_sort_key)


def status_counts(records: Iterable[Record]) -> dict[str, int]:
    """Count per status; every status in STATUSES is a key, in that order."""
    counts = {status: 0 for status in STATUSES}
    for record in records:
        counts[record.status] = counts.get(record.status, 0) + 1
    return counts


def counts_line(records: Iterable[Record]) -> str:
    """``1 over-budget, 2 regressed, 0 new, 1 improved, 12 ok`` (ASCII separators); ``N raised`` only when N > 0."""
    counts = status_counts(records)
    return ", ".join(f"{n} {status}" for status, n in counts.items() if n or status not in ONLY_WHEN_SEEN)


# ---------------------------------------------------------------- number formatting


def finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return value


def _fixed(value: float, decimals: int) -> str:
    """``decimals`` decimals, more below 0.1 so that small values keep ``decimals`` significant digits."""
    if value == 0 or abs(value) >= 0.1:
        return f"{value:.{decimals}f}"
    extra = -math.floor(math.log10(abs(value))) - 1
    return f"{value:.{min(decimals + extra, 9)}f}"


def fmt_gflops(value: float | None) -> str:
    """3 decimals (``3.642``); small values get more (``0.0510``) so a 3% change stays visible."""
    value = finite(value)
    return MISSING if value is None else _fixed(value, 3)


def fmt_delta(delta: float | None) -> str:
    """``+7.4%``, ``-2.0%``, ``0.0%``; a change too small for one decimal keeps 3 significant digits (``+0.0144%``)."""
    if delta is None or math.isnan(delta):
        return MISSING
    if math.isinf(delta):
        return "+inf%" if delta > 0 else "-inf%"
    if delta == 0:
        return "0.0%"
    if abs(delta) < 0.05:
        return f"{delta:+.3g}%"
    return f"{delta:+.1f}%"


def fmt_params(params: int) -> str:
    """Parameters in millions (``-`` when none were counted)."""
    return _fixed(params / 1e6, 2) if params else MISSING



def unpriced_totals(records: Iterable[Record]) -> list[tuple[str, int]]:
    """Operators the counter could not price, with how often they ran in all records, most frequent first."""
    totals: dict[str, int] = {}
    for record in records:
        for op, n in record.unpriced.items():
            totals[op] = totals.get(op, 0) + n
    return sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))


def unpriced_line(records: Iterable[Record]) -> str | None:
    """One terminal line naming the unpriced operators and the tests that ran them, or None."""
    records = list(records)
    totals = unpriced_totals(records)
    if not totals:
        return None
    ops = ", ".join(f"{op} x{n}" for op, n in totals)
    tests = sorted(r.id for r in records if r.unpriced)
    return f"flopbudget: counted as 0 (no counting rule): {ops}; in {len(tests)} measurement(s): {', '.join(tests)}"

