"""The terminal FLOP REPORT table and its remediation hints (no ANSI codes)."""

from __future__ import annotations

from typing import Iterable

from ..result import Record
from .common import UPDATE_COMMAND, fmt_delta, fmt_gflops, fmt_gmacs, sort_records, status_counts



_HEADERS = ("test", "GFLOPs", "published", "budget", "baseline", "change", "status")
CONVENTIONS_NOTE = (
    "GFLOPs = 2 x MACs of every priced operator; published = GMACs of matmul, conv and attention only "
    "(what torchvision's GFLOPS, timm's GMACs, fvcore and papers print)"
)
_GAP = "  "
_MIN_TEST_WIDTH = 12


def shorten_left(text: str, width: int) -> str:
    """Keep the end of ``text`` (the test name), replacing the start with ``...``."""
    if len(text) <= width:
        return text
    if width <= 3:
        return text[-width:] if width > 0 else ""
    return "..." + text[-(width - 3):]


def _row(record: Record) -> list[str]:
    return [
        record.id,
        fmt_gflops(record.gflops),
        fmt_gmacs(record.published_macs),
        fmt_gflops(record.budget_gflops),
        fmt_gflops(record.baseline_gflops),
        fmt_delta(record.delta_pct),
        record.status,
    ]


def _format_line(cells: list[str], widths: list[int]) -> str:
    test = cells[0].ljust(widths[0])
    numbers = [cell.rjust(w) for cell, w in zip(cells[1:-1], widths[1:-1])]
    return _GAP.join([test, *numbers, cells[-1]]).rstrip()


def terminal_table(records: list[Record], width: int = 120) -> list[str]:
    """Lines of the FLOP table, most severe first; no ANSI codes. Empty input gives no lines."""
    if not records:
        return []
    rows = [_row(record) for record in sort_records(records)]
    widths = [max(len(r[i]) for r in [list(_HEADERS), *rows]) for i in range(len(_HEADERS))]
    others = sum(widths[1:]) + len(_GAP) * (len(_HEADERS) - 1)
    widths[0] = min(widths[0], max(_MIN_TEST_WIDTH, width - others))
    for row in rows:
        row[0] = shorten_left(row[0], widths[0])
    lines = [_format_line(list(_HEADERS), widths)]
    lines.append("-" * (widths[0] + others))
    lines.extend(_format_line(row, widths) for row in rows)
    return lines


def hints(records: Iterable[Record], baseline_path: str, command: str = UPDATE_COMMAND) -> list[str]:
    """Remediation lines with the exact command to run (``command`` records counts), in severity order."""
    counts = status_counts(records)
    lines = []
    if counts["over-budget"]:
        lines.append(
            f"Over budget ({counts['over-budget']}): make the model cheaper or raise its budget in the test; "
            f"{command} does not change budgets."
        )
    if counts["regressed"]:
        lines.append(
            f"Regressed ({counts['regressed']}): if the growth is intended, accept it with {command} "
            f"(rewrites {baseline_path}; commit it)"
        )
    if counts["new"]:
        lines.append(f"New ({counts['new']}): no baseline entry yet; {command} records them.")
    if counts["improved"]:
        lines.append(
            f"Improved ({counts['improved']}): lock the gain in with {command} "
            "so a later change cannot silently give it back."
        )
    return lines
