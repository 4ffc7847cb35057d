"""Time estimates against the baseline and the base: the growth of the roofline lower bound, gated like memory.

Pure logic, no pytest and no torch, like :mod:`.memory`. A measurement with time estimates (a marker's
``device=``, ``--flop-device``, or a baseline entry that already has times) keeps each device's estimate
in whole nanoseconds with the fingerprint of the device figures it was made with
(:func:`pytest_flopbudget.deploy.figures_id`). Growth over the baseline entry's time on the same device
beyond ``rel`` (the marker's, else ``--flop-rel``) fails the test; growth over the base branch's entry
beyond ``--flop-base-rel`` needs approval (both only beyond one more nanosecond, the rounding of the
kept integers). ``abs`` is GFLOPs and applies to FLOPs only. A time recorded with other device figures
is never compared: the record says so in ``time_notes``. An entry without times (a baseline written
before times were kept) is not compared.
"""

from __future__ import annotations

from collections.abc import Mapping

from pytest_flopbudget.baseline.store import Timing
from pytest_flopbudget.gate.budget import Verdict, fmt_pct
from pytest_flopbudget.results.result import Record, pct

NS_PER_MS = 1_000_000
# Both figures are rounded to whole nanoseconds, so a difference of one nanosecond may be rounding alone:
# growth is judged beyond ``rel`` of the baseline plus this much (it matters only for sub-microsecond estimates).
ROUNDING_NS = 1


def to_ns(ms: float) -> int:
    """An estimate in milliseconds as the baseline keeps it: whole nanoseconds."""
    return round(ms * NS_PER_MS)


def fmt_ms(ns: int) -> str:
    return f"{ns / NS_PER_MS:.4g} ms"


def comparable(record: Record, times: Mapping[str, Timing], against: str) -> dict[str, int]:
    """The ``times`` (device -> Timing of a baseline or base entry) made with the same device figures as
    this run's estimates, in nanoseconds; a note on ``record`` for each that was made with other figures."""
    out = {}
    for name, est in record.estimates.items():
        old = times.get(name)
        if old is None or "figures" not in est:
            continue
        if old.figures == est["figures"]:
            out[name] = old.ns
        else:
            record.time_notes.append(
                f"time on {name} not compared with {against}: recorded with other figures for {name} "
                f"(fingerprint {old.figures}, now {est['figures']}: the device table changed, by register_device or "
                "a devices TOML); re-record it with --flop-update"
            )
    return out


def _bound(record: Record, name: str) -> str:
    est = record.estimates[name]
    return f"{100 * est['share']:.0f}% {est['bound']}-bound"


def judge_time_growth(record: Record, *, rel: float, updating: bool, baseline_name: str) -> Verdict | None:
    """A ``regressed`` verdict when a device's estimate grew over the baseline's beyond ``rel`` (None: within it,
    or nothing to compare)."""
    for name, old in record.baseline_time_ns.items():
        new = record.estimates[name]["ns"]
        if new - old > rel * old + ROUNDING_NS:
            text = (f"time regression on {name}: roofline lower bound {fmt_ms(old)} -> {fmt_ms(new)} "
                    f"({fmt_pct(pct(new, old))}, allowed {fmt_pct(100 * rel)}) against {baseline_name}; {_bound(record, name)}")
            return Verdict("regressed", None if updating else text)
    return None


def judge_time_base(record: Record, base_ns: Mapping[str, int], *, rel: float | None, base_label: str,
                    updating: bool) -> Verdict | None:
    """A ``raised`` verdict when a device's estimate grew over the base's (same figures) beyond ``rel``."""
    if rel is None:
        return None
    for name, old in base_ns.items():
        new = record.estimates[name]["ns"]
        if new - old > rel * old + ROUNDING_NS:
            text = (f"time raise against the base {base_label} on {name}: roofline lower bound {fmt_ms(old)} -> "
                    f"{fmt_ms(new)} ({fmt_pct(pct(new, old))}, allowed {fmt_pct(100 * rel)}); {_bound(record, name)}; "
                    "needs approval")
            return Verdict("raised", None if updating else text)
    return None


def time_lines(record: Record) -> list[str]:
    """The time part of a failure message: each device's estimate, the bound that binds, the baseline's time."""
    lines = []
    for name, est in record.estimates.items():
        ns = est.get("ns", to_ns(est["ms"]))
        line = f"  time on {name}: {fmt_ms(ns)} (roofline lower bound), {_bound(record, name)}"
        old = record.baseline_time_ns.get(name)
        if old is not None:
            line += f" (baseline {fmt_ms(old)}, {fmt_pct(pct(ns, old))})"
        lines.append(line)
    lines.extend(f"  note: {note}" for note in record.time_notes)
    return lines


__all__ = ["comparable", "fmt_ms", "judge_time_base", "judge_time_growth", "time_lines", "to_ns"]
