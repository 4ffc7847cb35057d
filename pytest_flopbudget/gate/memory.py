"""Memory budgets: peak memory and bytes moved against a marker's ceilings, the baseline and the base.

Pure logic, no pytest and no torch, like :mod:`.budget`. The rules are those of FLOPs: a hard ceiling
from the marker (``peak_mib=``, ``bytes_gb=``), growth over the baseline entry beyond ``rel`` (the
marker's, else ``--flop-rel``) fails the test, growth over the base branch's entry beyond
``--flop-base-rel`` needs approval. ``abs`` is GFLOPs and applies to FLOPs only. An entry without
memory figures (a baseline written before memory was measured) is not compared.
"""

from __future__ import annotations

from pytest_flopbudget.gate.budget import BudgetError, Verdict, fmt_pct, number
from pytest_flopbudget.results.result import MIB, Record, pct

GB = 1_000_000_000
MEMORY_KEYS = ("peak_mib", "bytes_gb")


def memory_limits(kwargs: dict[str, object], marker: str) -> tuple[float | None, float | None]:
    """``peak_mib`` (peak memory ceiling, MiB = 2**20 bytes) and ``bytes_gb`` (bytes moved ceiling, 1e9 bytes)."""
    peak, moved = kwargs.get("peak_mib"), kwargs.get("bytes_gb")
    return (
        None if peak is None else number(peak, f"{marker} peak_mib"),
        None if moved is None else number(moved, f"{marker} bytes_gb"),
    )


def fmt_mib(nbytes: int) -> str:
    value = nbytes / MIB
    return f"{value:,.1f} MiB" if value >= 10 else f"{value:.4g} MiB"


def fmt_gb(nbytes: int) -> str:
    value = nbytes / GB
    return f"{value:,.2f} GB" if value >= 10 else f"{value:.4g} GB"


def where(record: Record) -> str:
    """Where the peak is: ``blocks.3.attn (aten::softmax)``."""
    module, operator = record.peak_at or ("", "")
    name = module or "<root>"
    return f"{name} ({operator})" if operator else name


def judge_memory(record: Record, *, rel: float, updating: bool, baseline_name: str) -> Verdict | None:
    """The memory verdict of a measurement (None: within every limit, or nothing to compare)."""
    figures = (
        ("peak memory", record.peak_bytes, record.budget_peak_mib, MIB, record.baseline_peak_bytes, fmt_mib),
        ("bytes moved", record.bytes_moved, record.budget_bytes_gb, GB, record.baseline_bytes_moved, fmt_gb),
    )
    for name, value, ceiling, unit, _, fmt in figures:
        if value is not None and ceiling is not None and value > ceiling * unit:
            at = f", peak at {where(record)}" if name == "peak memory" else ""
            text = f"memory budget exceeded: {name} {fmt(value)} > {fmt(int(ceiling * unit))} ({fmt_pct(pct(value, ceiling * unit))}){at}"
            return Verdict("over-budget", text)
    for name, value, _, _, old, fmt in figures:
        if value is None or old is None:
            continue
        if value - old > rel * old:
            at = f"; the peak is at {where(record)}" if name == "peak memory" else ""
            text = (f"memory regression: {name} {fmt(old)} -> {fmt(value)} ({fmt_pct(pct(value, old))}, "
                    f"allowed {fmt_pct(100 * rel)}) against {baseline_name}{at}")
            return Verdict("regressed", None if updating else text)
    return None


def judge_memory_base(record: Record, *, base_peak: int | None, base_moved: int | None, rel: float | None,
                      base_label: str, updating: bool) -> Verdict | None:
    """A ``raised`` verdict when peak memory or bytes moved grew over the base's entry beyond ``rel``."""
    if rel is None:
        return None
    for name, value, old, fmt in (("peak memory", record.peak_bytes, base_peak, fmt_mib),
                                  ("bytes moved", record.bytes_moved, base_moved, fmt_gb)):
        if value is not None and old is not None and value - old > rel * old:
            text = (f"memory raise against the base {base_label}: {name} {fmt(old)} -> {fmt(value)} "
                    f"({fmt_pct(pct(value, old))}, allowed {fmt_pct(100 * rel)}); needs approval")
            return Verdict("raised", None if updating else text)
    return None


def memory_lines(record: Record) -> list[str]:
    """The memory part of a failure message: the figures, the baseline's, where the peak is and its split."""
    lines = []
    if record.peak_bytes is not None:
        line = f"  peak memory: {record.peak_bytes:,} bytes = {fmt_mib(record.peak_bytes)} at {where(record)}"
        if record.baseline_peak_bytes is not None:
            line += f" (baseline {fmt_mib(record.baseline_peak_bytes)}, {fmt_pct(pct(record.peak_bytes, record.baseline_peak_bytes))})"
        lines.append(line)
        split = ", ".join(f"{k} {fmt_mib(v)}" for k, v in record.peak_split.items() if v)
        if split:
            lines.append(f"    at the peak: {split}")
    if record.bytes_moved is not None:
        line = f"  bytes moved: {record.bytes_moved:,} = {fmt_gb(record.bytes_moved)}"
        if record.baseline_bytes_moved is not None:
            line += f" (baseline {fmt_gb(record.baseline_bytes_moved)}, {fmt_pct(pct(record.bytes_moved, record.baseline_bytes_moved))})"
        lines.append(line)
    return lines


__all__ = ["MEMORY_KEYS", "BudgetError", "judge_memory", "judge_memory_base", "memory_limits", "memory_lines"]
