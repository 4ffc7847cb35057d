"""The terminal FLOP REPORT table and its remediation hints (no ANSI codes)."""

from __future__ import annotations

from collections.abc import Iterable

from pytest_flopbudget.report.common import (
    UPDATE_COMMAND,
    BaseSummary,
    base_changes,
    base_headline,
    fmt_delta,
    fmt_gflops,
    fmt_gmacs,
    sort_records,
    status_counts,
)
from pytest_flopbudget.report.estimates import baseline_change, fmt_change
from pytest_flopbudget.results.result import Record

# One unit per column name in every format: counts in GFLOPs (2 x MACs), the published convention in
# GMACs (the unit of model cards, timm and papers). The header's second line names each column's unit.
_HEADERS = ("test", "GFLOPs", "published", "budget", "baseline", "change", "status")
_UNITS = ("", "", "GMACs", "GFLOPs", "GFLOPs", "", "")
_BASE_HEADERS = ("base", "vs base")  # inserted before status when the run has a base
_BASE_UNITS = ("GFLOPs", "")  # inserted before status when the run has a base
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


def _row(record: Record, base: bool = False) -> list[str]:
    cells = [
        record.id,
        fmt_gflops(record.gflops),
        fmt_gmacs(record.published_macs),
        fmt_gflops(record.budget_gflops),
        fmt_gflops(record.baseline_gflops),
        fmt_delta(record.delta_pct),
    ]
    if base:
        cells += [fmt_gflops(record.base_gflops), "new" if record.base_macs is None else fmt_delta(record.base_delta_pct)]
    return [*cells, record.status]


def _format_line(cells: list[str], widths: list[int]) -> str:
    test = cells[0].ljust(widths[0])
    numbers = [cell.rjust(w) for cell, w in zip(cells[1:-1], widths[1:-1])]
    return _GAP.join([test, *numbers, cells[-1]]).rstrip()


def terminal_table(records: list[Record], width: int = 120, base: bool = False) -> list[str]:
    """Lines of the FLOP table, most severe first; no ANSI codes. Empty input gives no lines.
    The first line names the columns, the second their units (GFLOPs; GMACs for ``published``).

    ``base``: add the base's GFLOPs and the change against it (``new``: not in the base).
    """
    if not records:
        return []
    headers = [*_HEADERS[:-1], *(_BASE_HEADERS if base else ()), _HEADERS[-1]]
    units = [*_UNITS[:-1], *(_BASE_UNITS if base else ()), _UNITS[-1]]
    rows = [_row(record, base) for record in sort_records(records)]
    widths = [max(len(r[i]) for r in [headers, units, *rows]) for i in range(len(headers))]
    others = sum(widths[1:]) + len(_GAP) * (len(headers) - 1)
    widths[0] = min(widths[0], max(_MIN_TEST_WIDTH, width - others))
    for row in rows:
        row[0] = shorten_left(row[0], widths[0])
    lines = [_format_line(headers, widths), _format_line(units, widths)]
    lines.append("-" * (widths[0] + others))
    lines.extend(_format_line(row, widths) for row in rows)
    return lines


def hints(records: Iterable[Record], baseline_path: str, command: str = UPDATE_COMMAND, updated: bool = False) -> list[str]:
    """Remediation lines with the exact command to run (``command`` records counts), in severity order.

    ``updated``: the run was ``--flop-update``, which recorded the new, regressed and improved
    counts already, so only what it cannot accept (over budget, raised against the base) is left.
    """
    counts = status_counts(records)
    if updated:
        counts = {**counts, "regressed": 0, "new": 0, "improved": 0}
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
    if counts["raised"]:
        lines.append(
            f"Raised against the base ({counts['raised']}): more than the base limit allows; get the raise approved "
            "(the check then runs without the limit) or make the model cheaper."
        )
    if counts["new"]:
        lines.append(f"New ({counts['new']}): no baseline entry yet; {command} records them.")
    if counts["improved"]:
        lines.append(
            f"Improved ({counts['improved']}): lock the gain in with {command} "
            "so a later change cannot silently give it back."
        )
    return lines


def base_lines(records: Iterable[Record], base: BaseSummary, listed: int = 20) -> list[str]:
    """The base section under the table: the headline, then the tests raised, new and gone since the base."""
    records = list(records)
    changes = base_changes(records)
    lines = [f"against {base.label}: {base_headline(records, base)}"]
    if not base.exists:
        return lines
    for record in changes.raised[:listed]:
        grown = ", ".join(f"{path} {delta:+,} MACs" for path, delta in record.base_module_changes()[:3] if delta > 0)
        lines.append(f"  raised {fmt_delta(record.base_delta_pct)}: {record.id}" + (f" ({grown})" if grown else ""))
    for what, ids in (("new since the base", [r.id for r in changes.new]), ("gone since the base", list(base.gone or ()))):
        if ids:
            more = f" (+{len(ids) - listed} more)" if len(ids) > listed else ""
            lines.append(f"  {what}: {', '.join(ids[:listed])}{more}")
    return lines


def estimate_lines(records: Iterable[Record]) -> list[str]:
    """The time estimates of the run's devices (--flop-device, a marker's device=) under the table:
    one line per measurement, each device's roofline lower bound and the bound that binds."""
    listed = [r for r in sort_records(list(records)) if r.estimates]
    if not listed:
        return []
    lines = ["time estimates (roofline lower bound: no launch overhead, no fusion, peak rates; docs/deployment.md):"]
    for record in listed:
        parts = []
        for name, est in record.estimates.items():
            budget = f" (budget {record.budget_ms:g} ms)" if record.budget_device == name and record.budget_ms is not None else ""
            change = baseline_change(record, name)
            old = f" (baseline {change[0]:.4g} ms, {fmt_change(change[1])})" if change is not None else ""
            parts.append(f"{name} {est['ms']:.4g} ms {est['bound']}-bound {100 * est['share']:.0f}%{budget}{old}")
        lines.append(f"  {record.id}: " + "; ".join(parts))
    return lines
