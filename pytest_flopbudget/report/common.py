"""What every report format shares: ordering, status counts, number formatting, unpriced operators.

Pure standard library: the report package only formats ``Record`` data, it never imports torch or pytest.
Every output is deterministic (no timestamps), so reports diff cleanly between runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pytest_flopbudget.results.result import GIGA, STATUSES, Record

UPDATE_COMMAND = "pytest --flop-update"
MISSING = "-"

_SEVERITY = {status: index for index, status in enumerate(STATUSES)}
FAILING = ("over-budget", "regressed", "raised")
ONLY_WHEN_SEEN = ("raised",)  # counts_line names it only when a test has it (a base gate is opt-in)


# ---------------------------------------------------------------- ordering and counts


def _severity(record: Record) -> int:
    return _SEVERITY.get(record.status, len(STATUSES))


def _sort_key(record: Record) -> tuple[Any, ...]:
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


def fmt_gmacs(macs: int | None) -> str:
    """MACs in billions, formatted like GFLOPs (``-`` when not recorded)."""
    return MISSING if macs is None else fmt_gflops(macs / GIGA)


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
    step = 10.0 ** math.floor(math.log10(value))
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


# ---------------------------------------------------------------- against the base branch


@dataclass(frozen=True)
class BaseSummary:
    """What the reports say about the base (``--flop-base-ref``/``--flop-base``) beyond the records.

    ``gone``: ids in the base that this run did not measure although it covered them; None when
    the run was partial (filtered, stopped early, collection errors), where nothing can be said.
    """

    label: str  # "origin/main", or the base file's name
    source: str  # "origin/main:flopbudget.toml"
    exists: bool  # False: no baseline file at the base, every test is new against it
    baseline_name: str  # the local baseline, where a raise is accepted ("flopbudget.toml")
    gate: str = ""  # "--flop-base-rel=2%" when a raise beyond it fails; "" when the base only informs
    gone: tuple[str, ...] | None = ()
    commit: str | None = None
    entries: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.label, "source": self.source, "exists": self.exists, "commit": self.commit,
            "entries": self.entries, "gate": self.gate or None,
            "partial": self.gone is None, "gone": None if self.gone is None else list(self.gone),
        }


@dataclass(frozen=True)
class BaseChanges:
    raised: list[Record]  # more MACs than in the base, largest change first
    lowered: list[Record]  # fewer MACs than in the base, largest drop first
    new: list[Record]  # not in the base


def base_changes(records: Iterable[Record]) -> BaseChanges:
    """Split the records that were compared with a base into raised, lowered and new."""
    compared = [r for r in records if r.base is not None]
    known = [r for r in compared if r.base_macs is not None]
    raised = sorted((r for r in known if r.base_macs is not None and r.macs > r.base_macs), key=lambda r: (-(r.base_delta_pct or 0.0), r.id))
    lowered = sorted((r for r in known if r.base_macs is not None and r.macs < r.base_macs), key=lambda r: (r.base_delta_pct or 0.0, r.id))
    new = sorted((r for r in compared if r.base_macs is None), key=lambda r: r.id)
    return BaseChanges(raised, lowered, new)


def _tests(n: int) -> str:
    return f"{n} test" if n == 1 else f"{n} tests"


def base_headline(records: Iterable[Record], base: BaseSummary, code: Callable[[str], str] = str) -> str:
    """One sentence on the base: ``This PR raises 2 tests by up to +4.98% against main, accepted in
    flopbudget.toml; lowers 1 test by up to -3.0%; 1 test new since main.`` ``code`` formats
    names (Markdown wraps them in backticks)."""
    records = list(records)
    changes = base_changes(records)
    label, local = code(base.label), code(base.baseline_name)
    if not base.exists:
        return f"{label} has no {code(base.source.rsplit(':', 1)[-1])}: every test is new against the base."
    parts = []
    if changes.raised:
        top = fmt_delta(changes.raised[0].base_delta_pct)
        parts.append(f"raises {_tests(len(changes.raised))} by up to {top} against {label}{_verdicts(changes.raised, base, local)}")
    if changes.lowered:
        parts.append(f"lowers {_tests(len(changes.lowered))} by up to {fmt_delta(changes.lowered[0].base_delta_pct)}")
    if not parts:
        parts.append(f"changes no test's FLOPs against {label}")
    news = [f"{_tests(len(changes.new))} new"] if changes.new else []
    if base.gone:
        news.append(f"{len(base.gone)} gone")
    tail = f"; {' and '.join(news)} since {label}" if news else ""
    partial = " (a partial run: tests gone since the base are not listed)" if base.gone is None else ""
    return "This PR " + "; ".join(parts) + tail + "." + partial


def _verdicts(raised: list[Record], base: BaseSummary, local: str) -> str:
    """How the raised tests stand: accepted in the local baseline, needing approval, or failing it."""
    accepted = sum(1 for r in raised if r.status in ("ok", "improved"))
    approval = sum(1 for r in raised if r.status == "raised")
    failing = len(raised) - accepted - approval
    if accepted == len(raised):
        return f", accepted in {local}"
    parts = []
    if accepted:
        parts.append(f"{accepted} accepted in {local}")
    if approval:
        parts.append(f"{approval} over {base.gate} (needs approval)" if approval == 1 else f"{approval} over {base.gate} (need approval)")
    if failing:
        parts.append(f"{failing} not accepted in {local}")
    return ": " + ", ".join(parts)
