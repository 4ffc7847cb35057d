"""The plugin under pytest-xdist, and what it puts into JUnit XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from pytest_flopbudget.baseline import store as baseline

pytest.importorskip("xdist")

SUITE = """
import pytest
import torch
from torch import nn

WIDTHS = {widths}

def linear(width):
    return nn.Linear(64, width, device="meta"), torch.empty(4, 64, device="meta")

@pytest.mark.parametrize("width", WIDTHS)
def test_width(flops, width):
    flops(*linear(width))

@pytest.mark.flop_budget(gflops=1e-6)
def test_over(flops):
    flops(*linear(512))   # 4*64*512 = 131,072 MACs = 0.000262 GFLOPs > 0.000001

def test_keys(flops):
    flops(*linear(8), key="small")
    flops(*linear(16), key="big")
"""


def run_suite(pytester: pytest.Pytester, widths: list[int], *args: str) -> tuple[pytest.RunResult, str]:
    pytester.makepyfile(test_par=SUITE.format(widths=widths))
    result = pytester.runpytest_subprocess("--flop-report", "-p", "no:randomly", *args)
    return result, result.stdout.str()


def report_rows(output: str) -> list[str]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if "FLOP REPORT" in line)
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("=") or not line.strip():
            break
        rows.append(line.rstrip())
    return rows


def test_serial_and_parallel_runs_agree_byte_for_byte(pytester: pytest.Pytester) -> None:
    widths = [8, 16, 32, 64, 128, 256]
    serial, out_serial = run_suite(pytester, widths, "--flop-update", "-p", "no:xdist")
    serial.assert_outcomes(passed=7, failed=1)
    serial_bytes = (pytester.path / "flopbudget.toml").read_bytes()
    (pytester.path / "flopbudget.toml").unlink()

    parallel, out_parallel = run_suite(pytester, widths, "--flop-update", "-n", "2")
    parallel.assert_outcomes(passed=7, failed=1)
    assert (pytester.path / "flopbudget.toml").read_bytes() == serial_bytes
    assert report_rows(out_parallel) == report_rows(out_serial)
    loaded = baseline.load(pytester.path / "flopbudget.toml").entries
    assert loaded["test_par.py::test_width[256]"].macs == 4 * 64 * 256
    assert loaded["test_par.py::test_keys#big"].macs == 4 * 64 * 16
    assert "test_par.py::test_over" not in loaded  # an update never blesses a budget violation

    # Compare runs: the same verdicts either way, and only the controller writes.
    before = (pytester.path / "flopbudget.toml").stat().st_mtime_ns
    s, out_s = run_suite(pytester, [8, 16, 32, 64, 128, 512], "-p", "no:xdist")   # 256 -> 512 regresses
    p, out_p = run_suite(pytester, [8, 16, 32, 64, 128, 512], "-n", "2")
    assert s.parseoutcomes() == p.parseoutcomes()
    assert report_rows(out_s) == report_rows(out_p)
    assert (pytester.path / "flopbudget.toml").stat().st_mtime_ns == before
    assert any("regressed" in row for row in report_rows(out_p))


def test_time_estimates_travel_from_the_workers_into_the_baseline_and_reports(pytester: pytest.Pytester) -> None:
    widths = [8, 16, 32]
    run_suite(pytester, widths, "--flop-update", "--flop-device=h100-sxm", "-p", "no:xdist")
    serial_bytes = (pytester.path / "flopbudget.toml").read_bytes()
    (pytester.path / "flopbudget.toml").unlink()
    run_suite(pytester, widths, "--flop-update", "--flop-device=h100-sxm", "-n", "2")
    assert (pytester.path / "flopbudget.toml").read_bytes() == serial_bytes
    entries = baseline.load(pytester.path / "flopbudget.toml").entries
    assert set(entries["test_par.py::test_width[8]"].time) == {"h100-sxm"}
    # The records carry the baseline's times from the workers: the same Markdown either way.
    serial, _ = run_suite(pytester, widths, "--flop-report-md=serial.md", "-p", "no:xdist")
    parallel, _ = run_suite(pytester, widths, "--flop-report-md=parallel.md", "-n", "2")
    assert serial.parseoutcomes() == parallel.parseoutcomes()
    markdown = (pytester.path / "parallel.md").read_text()
    assert markdown == (pytester.path / "serial.md").read_text()
    assert "| `test_par.py::test_width[8]` | `h100-sxm` |" in markdown and " | = |" in markdown


def test_prune_under_xdist_uses_the_controllers_view(pytester: pytest.Pytester) -> None:
    run_suite(pytester, [8, 16], "--flop-update", "-n", "2")
    assert "test_par.py::test_width[16]" in baseline.load(pytester.path / "flopbudget.toml").entries
    result, _ = run_suite(pytester, [8], "--flop-prune", "-n", "2")
    result.stdout.fnmatch_lines(["*removed test_par.py::test_width?16?*"])
    assert "test_par.py::test_width[16]" not in baseline.load(pytester.path / "flopbudget.toml").entries
    assert "test_par.py::test_width[8]" in baseline.load(pytester.path / "flopbudget.toml").entries


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_junit_xml_carries_the_measurements(pytester: pytest.Pytester, workers: list[str]) -> None:
    run_suite(pytester, [8], "--flop-update", "-p", "no:xdist")
    result, _ = run_suite(pytester, [8], "--junitxml=junit.xml", *workers)
    result.assert_outcomes(passed=2, failed=1)
    root = ET.parse(pytester.path / "junit.xml").getroot()
    props = {}
    for case in root.iter("testcase"):
        for prop in case.iter("property"):
            props[(case.get("name"), prop.get("name"))] = prop.get("value")
    assert props[("test_width[8]", "flopbudget.macs")] == str(4 * 64 * 8)
    assert props[("test_width[8]", "flopbudget.published_macs")] == str(4 * 64 * 8)  # a Linear: all published
    assert props[("test_width[8]", "flopbudget.gflops")] == str(round(2 * 4 * 64 * 8 / 1e9, 6))
    assert props[("test_width[8]", "flopbudget.status")] == "ok"
    assert props[("test_over", "flopbudget.status")] == "over-budget"
    assert props[("test_over", "flopbudget.budget_gflops")] == "1e-06"
    assert props[("test_keys", "flopbudget[big].macs")] == str(4 * 64 * 16)
    failure = next(c for c in root.iter("testcase") if c.get("name") == "test_over").find("failure")
    assert failure is not None and failure.get("message", "").startswith("Failed: FLOP budget exceeded: ")
