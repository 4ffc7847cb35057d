"""Render FLOP records for people and machines, one module per format.

- ``common``: ordering, status counts, number formatting, unpriced operators
- ``terminal``: the FLOP REPORT table and hints
- ``jsonfile``: the JSON report
- ``markdown``: the pull-request comment / job summary, with its Mermaid chart
- ``html``: one self-contained page with inline SVG charts (and the breakdown pytest-html shows per test)
- ``github``: workflow-command annotations

Pure standard library: nothing here imports torch or pytest. Every output is
deterministic (no timestamps), so reports diff cleanly between runs.
"""


from pytest_flopbudget.report.common import (
    MISSING,
    UPDATE_COMMAND,
    BaseSummary,
    base_changes,
    base_headline,
    counts_line,
    fmt_delta,
    fmt_gflops,
    fmt_gmacs,
    fmt_params,
    sort_records,
    status_counts,
    unpriced_line,
    unpriced_totals,
)
from pytest_flopbudget.report.github import annotations, escape_data, escape_property
from pytest_flopbudget.report.html import breakdown, html_report
from pytest_flopbudget.report.jsonfile import TOP_MODULES, json_report, top_modules
from pytest_flopbudget.report.markdown import (
    CHART_LIMIT,
    MARKER,
    env_warnings,
    markdown_report,
    md_code,
    md_text,
    mermaid_chart,
    short_name,
)
from pytest_flopbudget.report.terminal import (
    CONVENTIONS_NOTE,
    base_lines,
    estimate_lines,
    hints,
    shorten_left,
    terminal_table,
)

__all__ = [
    "CHART_LIMIT", "CONVENTIONS_NOTE", "MARKER", "MISSING", "TOP_MODULES", "UPDATE_COMMAND", "BaseSummary", "annotations",
    "base_changes", "base_headline", "base_lines", "breakdown", "counts_line",
    "env_warnings", "escape_data", "estimate_lines", "escape_property", "fmt_delta", "fmt_gflops", "fmt_gmacs", "fmt_params", "hints",
    "html_report",
    "json_report", "markdown_report", "md_code", "md_text", "mermaid_chart", "short_name", "shorten_left",
    "sort_records", "status_counts", "terminal_table", "top_modules", "unpriced_line", "unpriced_totals",
]
