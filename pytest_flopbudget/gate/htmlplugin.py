"""FLOP columns and breakdowns in pytest-html's report, through pytest-html's own hooks (v4).

plugin.py registers this module on the controller only, and only when pytest-html is installed,
not disabled (``-p no:html``) and writing a report (``--html=PATH``), so nothing here runs, and
pytest_html is never imported, otherwise.

- ``pytest_html_results_table_header``: the GFLOPs, baseline, change and FLOP status columns.
- ``pytest_html_results_table_row``: their cells, on every row pytest-html makes (a test that
  measured nothing, a setup error or a collection error gets empty cells, so the columns stay in
  line); a test with keyed measurements gets one line per key.
- each measured test's call report gains an HTML extra, shown under its row: the verdict text
  and the breakdown of :func:`pytest_flopbudget.report.html.breakdown` (its facts, with peak memory,
  bytes moved and the time estimates where measured; categories and modules as
  stacked bars, the changes against the baseline).
- ``pytest_html_results_summary``: the count per status, and the breakdown's CSS once.

Everything is built from the records riding on the test reports, so it works the same under
pytest-xdist (the controller writes pytest-html's report).
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_flopbudget.gate.session import records as run_records
from pytest_flopbudget.report import common
from pytest_flopbudget.report import html as page
from pytest_flopbudget.results.result import Record

COLUMNS = (
    ("flopGflops", "GFLOPs", False),
    ("flopBaseline", "baseline GFLOPs", False),
    ("flopChange", "change", False),
    ("flopStatus", "FLOP status", True),  # text sorts right; numbers would sort as text in pytest-html
)


def _records(report: Any) -> list[Record]:
    return [Record.from_json(raw) for raw in getattr(report, "flopbudget", None) or ()]


def _lines(records: list[Record], cell: Any) -> str:
    keyed = len(records) > 1 or any(r.key for r in records)
    return "<br>".join(
        (f"{page.esc(r.key)}: " if keyed and r.key else "") + page.esc(cell(r)) for r in records
    )


def cells_for(records: list[Record]) -> list[str]:
    """The four cells of one row (empty when the row measured nothing)."""
    values = {
        "flopGflops": _lines(records, lambda r: common.fmt_gflops(r.gflops)),
        "flopBaseline": _lines(records, lambda r: common.fmt_gflops(r.baseline_gflops)),
        "flopChange": _lines(records, lambda r: common.fmt_delta(r.delta_pct)),
        "flopStatus": _lines(records, lambda r: r.status),
    }
    return [f'<td class="col-{name}">{values[name]}</td>' for name, _, _ in COLUMNS]


def extra_html(records: list[Record], shown: str = "") -> str:
    """The block under a measured test's row: for each measurement its text (unless pytest-html
    already shows it in ``shown``, the failure's text) and its breakdown."""
    parts = ['<div class="fb-pytest-html">']
    for record in records:
        title = "FLOPs" if record.key is None else f"FLOPs [{record.key}]"
        parts.append(f"<h4>{page.esc(title)}: {page.status_badge(record.status)}</h4>")
        parts.append(page.breakdown(record, message=record.message not in shown))
    parts.append("</div>")
    return "".join(parts)


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_table_header(cells: list[str]) -> None:
    for name, label, sortable in COLUMNS:
        cls = ' class="sortable"' if sortable else ""
        cells.append(f'<th{cls} data-column-type="{name}">{label}</th>')


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_table_row(report: Any, cells: list[str]) -> None:
    cells.extend(cells_for(_records(report)))


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_summary(prefix: list[str], summary: list[str], postfix: list[str], session: pytest.Session) -> None:
    measured = run_records(session.config)
    prefix.append(f"<style>{page.FRAGMENT_CSS}</style>")
    if measured:
        prefix.append(f"<p>FLOP budget: {page.esc(common.counts_line(measured))}</p>")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Runs before pytest-html's own (trylast) logreport, which reads report.extras at teardown.
    if report.when != "call":
        return
    records = _records(report)
    if records:
        from pytest_html import extras

        report.extras = [*getattr(report, "extras", []), extras.html(extra_html(records, report.longreprtext))]  # type: ignore[attr-defined]  # pytest-html's attribute
