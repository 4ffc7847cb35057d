"""Peak memory and bytes moved in the terminal and Markdown reports, for the tests that measured them."""

from __future__ import annotations

from pytest_flopbudget.results.result import MIB, Record, collapse_indices, pct

GB = 1_000_000_000


def _where(record: Record) -> str:
    module, operator = record.peak_at or ("", "")
    return f"{collapse_indices(module) if module else '<root>'} ({operator})" if operator else (module or "<root>")


def _delta(new: int | None, old: int | None) -> str:
    if new is None or old is None:
        return ""
    change = pct(new, old)
    return f"{change:+.1f}%" if abs(change) >= 0.05 else "="


def _measured(records: list[Record]) -> list[Record]:
    return sorted((r for r in records if r.peak_bytes is not None), key=lambda r: r.id)


def memory_table(records: list[Record]) -> list[str]:
    """A terminal table: peak MiB (and its change against the baseline), where, GB moved, FLOPs per byte."""
    measured = _measured(records)
    if not measured:
        return []
    header = ["memory", "peak MiB", "vs base", "GB moved", "FLOP/B", "peak at"]
    rows = []
    for r in measured:
        moved = r.bytes_moved or 0
        rows.append([
            r.id, f"{(r.peak_bytes or 0) / MIB:,.1f}", _delta(r.peak_bytes, r.baseline_peak_bytes),
            f"{moved / GB:,.3f}", f"{2 * r.macs / moved:,.1f}" if moved else "", _where(r),
        ])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i in (0, 5) else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in [header, *rows]]
    return [lines[0], "-" * len(lines[0]), *lines[1:]]


def memory_markdown(records: list[Record]) -> list[str]:
    """A Markdown table of the same figures (nothing when no test measured memory)."""
    measured = _measured(records)
    if not measured:
        return []
    lines = ["**Memory** (peak of live tensor bytes, bytes moved; docs/memory.md)", "",
             "| test | peak MiB | vs baseline | GB moved | FLOP/B | peak at |", "|:--|--:|--:|--:|--:|:--|"]
    for r in measured:
        moved = r.bytes_moved or 0
        lines.append(
            f"| `{r.id}` | {(r.peak_bytes or 0) / MIB:,.1f} | {_delta(r.peak_bytes, r.baseline_peak_bytes)} | "
            f"{moved / GB:,.3f} | {f'{2 * r.macs / moved:,.1f}' if moved else ''} | `{_where(r)}` |"
        )
    return lines
