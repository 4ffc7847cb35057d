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
FAILING = ("over-budget", "regressed")


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
    """``1 over-budget, 2 regressed, 0 new, 1 improved, 12 ok`` (ASCII separators)."""
    return ", ".join(f"{n} {status}" for status, n in status_counts(records).items())


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


def plain_number(value: float, decimals: int = 6) -> str:
    """``value`` with at most ``decimals`` decimals and no trailing zeros (``2.5``, ``0``, ``1200``)."""
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def nice_top(value: float) -> float:
    """A round axis maximum at least 5% above ``value`` (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten)."""
    if value <= 0:
        return 1.0
    step = 10 ** math.floor(math.log10(value))
    for factor in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if factor * step >= value * 1.05:
            return factor * step
    return 10 * step


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


# ---------------------------------------------------------------- environment


def _counting_key(key: str) -> bool:
    """Environment keys whose change can change FLOP counts."""
    return key == "torch" or "counter" in key or key in ("torchprofile", "flops_per_mac")


def env_differences(env: dict[str, str], baseline_env: dict[str, str] | None) -> list[tuple[str, str, str]]:
    """``(key, recorded, now)`` for each counting-relevant key recorded in both environments with different values."""
    if not baseline_env:
        return []
    out = []
    for key, value in env.items():
        old = baseline_env.get(key)
        if _counting_key(key) and old is not None and str(old) != str(value):
            out.append((key, str(old), str(value)))
    return out

