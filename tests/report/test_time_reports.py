"""Time estimates in the Markdown, HTML, terminal and JSON reports, and the Record fields that carry them.

The records are made by hand: a test that moves 10,000 bytes per call on a device of 1 GB/s is estimated at
10,000 ns = 0.01 ms, memory-bound; its baseline recorded 8,000 ns (0.008 ms), so the change is +25.0%.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator

import pytest

from pytest_flopbudget.deploy import devices
from pytest_flopbudget.report import html_report, json_report, markdown_report
from pytest_flopbudget.report.estimates import time_facts
from pytest_flopbudget.report.html import breakdown
from pytest_flopbudget.report.terminal import estimate_lines
from pytest_flopbudget.results.result import Record

ENV = {"torch": "2.13.0"}
TITLE = "**Time estimates** (roofline lower bound: no launch overhead, no fusion, peak rates; docs/deployment.md)"
HEADER = "| Test | Device | Est. ms | Bound | Budget ms | Baseline ms | Change |"


def est(ns: int, bound: str = "memory", share: float = 1.0) -> dict[str, object]:
    return {"ms": ns / 1e6, "bound": bound, "share": share, "ns": ns, "figures": "0123abcd"}


def timed(name: str = "t.py::test_a", **kw: object) -> Record:
    fields: dict[str, object] = {"estimates": {"round": est(10_000)}, "baseline_time_ns": {"round": 8_000}}
    fields.update(kw)
    return Record(id=name, nodeid=name, macs=1000, status="ok", baseline_macs=1000, **fields)  # type: ignore[arg-type]


def test_markdown_has_one_row_per_test_and_device_with_budget_and_baseline() -> None:
    budgeted = timed("t.py::test_b", estimates={"round": est(10_000), "h100-sxm": est(3_000, "compute", 0.75)},
                     budget_ms=0.5, budget_device="h100-sxm", baseline_time_ns={})
    md = markdown_report([timed(), budgeted, Record(id="t.py::test_c", nodeid="t.py::test_c", macs=5, status="ok")], ENV, None)
    section = md[md.index(TITLE):].split("\n\n")
    assert section[1].splitlines() == [
        HEADER,
        "|:---|:---|---:|:---|---:|---:|---:|",
        "| `t.py::test_a` | `round` | 0.01 | memory 100% |  | 0.008 | +25.0% |",
        "| `t.py::test_b` | `round` | 0.01 | memory 100% |  |  |  |",
        "| `t.py::test_b` | `h100-sxm` | 0.003 | compute 75% | 0.5 |  |  |",
    ]
    assert "t.py::test_c` |" not in section[1]  # no estimates: no row


def test_markdown_has_no_time_section_without_estimates() -> None:
    md = markdown_report([Record(id="t.py::x", nodeid="t.py::x", macs=5, status="ok")], ENV, None)
    assert "Time estimates" not in md


def test_markdown_folds_a_long_time_table_and_lists_the_notes() -> None:
    records = [timed(f"t.py::test_{i:02d}") for i in range(11)]
    records[0].time_notes.append("time on round not compared with flopbudget.toml: recorded with other figures")
    md = markdown_report(records, ENV, None)
    section = md[md.index(TITLE):]
    assert section.startswith(f"{TITLE}\n\n<details>\n<summary>11 time estimates</summary>\n\n{HEADER}")
    assert ("⚠️ Times not compared:\n\n- `t.py::test_00`: time on round not compared with flopbudget.toml: "
            "recorded with other figures") in section


def test_html_facts_give_each_device_its_time_bound_budget_and_baseline() -> None:
    record = timed(budget_ms=0.02, budget_device="round", time_notes=["time on l4 not compared with the base main: other figures"])
    assert time_facts(record) == [
        ("time on round", "0.01 ms (roofline lower bound), 100% memory-bound; budget 0.02 ms; baseline 0.008 ms (+25.0%)"),
        ("time not compared", "time on l4 not compared with the base main: other figures"),
    ]
    part = breakdown(record)
    assert "<dt>time on round</dt><dd>0.01 ms (roofline lower bound), 100% memory-bound; budget 0.02 ms; " in part
    page = html_report([record], ENV)
    assert "baseline 0.008 ms (+25.0%)" in page


def test_terminal_lines_show_the_baseline_time() -> None:
    assert estimate_lines([timed()])[1] == "  t.py::test_a: round 0.01 ms memory-bound 100% (baseline 0.008 ms, +25.0%)"


def test_json_report_carries_the_times_and_the_notes() -> None:
    record = timed(time_notes=["a note"])
    (test,) = json_report([record], ENV, "flopbudget.toml")["tests"]
    assert test["estimates"]["round"] == {"ms": 0.01, "bound": "memory", "share": 1.0, "ns": 10_000, "figures": "0123abcd"}
    assert test["baseline_time_ns"] == {"round": 8_000} and test["time_notes"] == ["a note"]


def test_record_time_fields_survive_the_json_round_trip() -> None:
    record = timed(time_notes=["a note"], budget_ms=1.5, budget_device="round")
    again = Record.from_json(json.loads(json.dumps(record.to_json())))
    assert again == record


# ---- end to end: a Linear on meta on a device registered in the suite --------------------------------------

# Linear(64 -> 128) on (4, 64) float32: 32,768 MACs = 65,536 FLOPs at 1 GFLOP/s = 65,536 ns (0.06554 ms), compute-
# bound (it moves 36,352 bytes = 36,352 ns at 1 GB/s).
CONFTEST = 'from pytest_flopbudget import register_device\nregister_device("round", fp32=0.001, bandwidth=0.001, memory=1, replace=True)\n'
SUITE = """
import pytest
import torch
from torch import nn

@pytest.mark.flop_budget(ms=0.1, device="round")
def test_linear(flops):
    flops(nn.Linear(64, 128, device="meta"), torch.empty(4, 64, device="meta"))
"""


@pytest.fixture
def _builtin_devices() -> Iterator[None]:
    devices._reset()
    yield
    devices._reset()


@pytest.mark.usefixtures("_builtin_devices")
def test_reports_of_a_run_show_the_linear_time(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_m=textwrap.dedent(SUITE))
    pytester.runpytest("--flop-update").assert_outcomes(passed=1)
    pytester.runpytest("--flop-report-md=r.md", "--flop-report-html=r.html").assert_outcomes(passed=1)
    md = (pytester.path / "r.md").read_text()
    assert "| `test_m.py::test_linear` | `round` | 0.06554 | compute 100% | 0.1 | 0.06554 | = |" in md
    page = (pytester.path / "r.html").read_text()
    assert "<dt>time on round</dt><dd>0.06554 ms (roofline lower bound), 100% compute-bound; budget 0.1 ms; baseline 0.06554 ms (=)</dd>" in page
