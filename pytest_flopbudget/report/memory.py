"""Peak memory and bytes moved in the terminal and Markdown reports, for the tests that measured them."""

from __future__ import annotations

from pytest_flopbudget.results.result import MIB, Record, pct

GB = 1_000_000_000


def _where(record: Record) -> str:
    module, operator = record.peak_at or ("", "")
    return f"{module or '<root>'} ({operator})" if operator else (module or "<root>")


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


# ---- HTML: facts and the memory-over-the-call chart ------------------------------------------------------

CHART_POINTS = 240  # the timeline a Record keeps: at most this many points, each the most of its stretch


def downsample(timeline: tuple[int, ...] | list[int], points: int = CHART_POINTS) -> list[int]:
    """At most ``points`` values, each the largest of an equal stretch of ``timeline`` (so the peak stays)."""
    n = len(timeline)
    if n <= points:
        return list(timeline)
    return [max(timeline[i * n // points:(i + 1) * n // points]) for i in range(points)]


def memory_facts(record: Record) -> list[tuple[str, str]]:
    """Name/value pairs for a measurement's facts list (nothing where memory was not measured)."""
    if record.peak_bytes is None:
        return []
    facts = [("peak memory", f"{record.peak_bytes:,} bytes = {record.peak_bytes / MIB:,.1f} MiB at {_where(record)}")]
    if record.baseline_peak_bytes is not None:
        facts.append(("baseline peak", f"{record.baseline_peak_bytes / MIB:,.1f} MiB ({_delta(record.peak_bytes, record.baseline_peak_bytes)})"))
    split = ", ".join(f"{k} {v / MIB:,.1f} MiB" for k, v in record.peak_split.items() if v)
    if split:
        facts.append(("at the peak", split))
    if record.bytes_moved:
        facts.append(("bytes moved", f"{record.bytes_moved:,} = {record.bytes_moved / GB:,.3f} GB "
                                     f"({2 * record.macs / record.bytes_moved:,.1f} FLOPs per byte)"))
    return facts


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def memory_chart(record: Record, width: int = 640, height: int = 140) -> str:
    """Inline SVG: live bytes against operator index (downsampled), the peak marked; "" without a timeline."""
    values = record.memory_timeline
    if record.peak_bytes is None or len(values) < 2:
        return ""
    top = max(max(values), 1)
    pad, plot_h = 4, height - 24
    step = (width - 2 * pad) / (len(values) - 1)
    points = " ".join(f"{pad + i * step:.1f},{pad + plot_h * (1 - v / top):.1f}" for i, v in enumerate(values))
    peak_i = max(range(len(values)), key=lambda i: values[i])
    x, y = pad + peak_i * step, pad + plot_h * (1 - values[peak_i] / top)
    label = _esc(f"peak {record.peak_bytes / MIB:,.1f} MiB at {_where(record)}")
    anchor = "end" if x > width / 2 else "start"
    return (
        f'<figure class="fb-memory"><figcaption>Memory over the call: live tensor bytes after each operator '
        f'that allocated ({len(values)} points)</figcaption>'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{label}">'
        f'<line x1="{pad}" y1="{pad + plot_h}" x2="{width - pad}" y2="{pad + plot_h}" stroke="#999"/>'
        f'<polyline fill="none" stroke="#3366cc" stroke-width="1.5" points="{points}"/>'
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#cc3333"><title>{label}</title></circle>'
        f'<text x="{x:.1f}" y="{height - 6}" font-size="11" text-anchor="{anchor}">{label}</text>'
        "</svg></figure>"
    )
