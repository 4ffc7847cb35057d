"""Time estimates in the reports: per measurement and device, the roofline lower bound, the bound that binds,
the time budget and the baseline's time (docs/deployment.md). Only for the tests that have estimates."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pytest_flopbudget.results.result import Record, pct

NS_PER_MS = 1_000_000


def fmt_ms(ms: float) -> str:
    return f"{ms:.4g}"


def _ns(est: dict[str, Any]) -> int:
    return int(est["ns"]) if "ns" in est else round(float(est["ms"]) * NS_PER_MS)


def baseline_change(record: Record, device: str) -> tuple[float, float] | None:
    """``(baseline ms, change in percent)`` of ``record``'s estimate on ``device`` against the baseline's time,
    or None where the baseline has no comparable time (the change is taken on whole nanoseconds, as judged)."""
    old = record.baseline_time_ns.get(device)
    est = record.estimates.get(device)
    if old is None or est is None:
        return None
    return old / NS_PER_MS, pct(_ns(est), old)


def fmt_change(change: float) -> str:
    return f"{change:+.1f}%" if abs(change) >= 0.05 else "="


def rows(records: Iterable[Record]) -> list[tuple[Record, str, dict[str, Any]]]:
    """``(record, device, estimate)`` of every estimate, tests sorted by id, devices in the record's order."""
    return [(r, name, est) for r in sorted(records, key=lambda r: r.id) for name, est in r.estimates.items()]


def budget_ms(record: Record, device: str) -> float | None:
    return record.budget_ms if record.budget_device == device else None


def describe(record: Record, device: str, est: dict[str, Any]) -> str:
    """One device's estimate in words: ``0.112 ms (roofline lower bound), 100% memory-bound; budget 0.2 ms;
    baseline 0.1 ms (+12.0%)``."""
    text = f"{fmt_ms(est['ms'])} ms (roofline lower bound), {100 * est['share']:.0f}% {est['bound']}-bound"
    budget = budget_ms(record, device)
    if budget is not None:
        text += f"; budget {budget:g} ms"
    change = baseline_change(record, device)
    if change is not None:
        text += f"; baseline {fmt_ms(change[0])} ms ({fmt_change(change[1])})"
    return text


def time_facts(record: Record) -> list[tuple[str, str]]:
    """Name/value pairs for a measurement's facts list: one per device, then the notes (why a time was not compared)."""
    facts = [(f"time on {name}", describe(record, name, est)) for name, est in record.estimates.items()]
    facts += [("time not compared", note) for note in record.time_notes]
    return facts
