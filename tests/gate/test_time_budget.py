"""The time budget in the marker (ms= with device=) and the run's devices (--flop-device, --flop-devices)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pytest_flopbudget.deploy import devices

# The counter of these runs: flops(n) is one bfloat16 matrix-vector product of n x n weights, memory-bound
# everywhere: it moves (n + n*n + n) * 2 bytes, 33,570,816 for n = 4096:
# 0.010021 ms on an H100 SXM (3.35 TB/s), 0.11190 ms on an L4 (0.3 TB/s).
CONFTEST = """
from pytest_flopbudget.results.result import FlopResult, OpCost

def pytest_flopbudget_count(model, args, kwargs, config, options):
    n = model
    if n == 0:
        return FlopResult(macs=5)  # a capture that records no per-operator costs
    cost = OpCost("aten::mm", dtype="bfloat16", macs=n * n, bytes_read=(n + n * n) * 2, bytes_written=n * 2)
    return FlopResult(macs=n * n, costs=(cost,))
"""


@pytest.fixture(autouse=True)
def _builtin_devices() -> Iterator[None]:
    devices._reset()
    yield
    devices._reset()


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    return pytester


def test_a_time_budget_passes_under_and_fails_over_the_lower_bound(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.flop_budget(ms=0.02, device="h100-sxm")
        def test_within(flops):
            flops(4096)

        @pytest.mark.flop_budget(ms=0.005, device="H100")
        def test_over(flops):
            flops(4096)
        """
    )
    result = project.runpytest("--flop-missing=warn", "--flop-report")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*time budget exceeded on h100-sxm: roofline lower bound 0.01002 ms > ms=0.005 (+100.4%; 100% memory-bound)*",
        "*time budget: 0.005 ms on h100-sxm (@pytest.mark.flop_budget; estimated 0.01002 ms, roofline lower bound)*",
    ])
    result.stdout.fnmatch_lines([
        "time estimates (roofline lower bound*",
        "*test_over: h100-sxm 0.01002 ms memory-bound 100% (budget 0.005 ms)",
        "*test_within: h100-sxm 0.01002 ms memory-bound 100% (budget 0.02 ms)",
    ])


def test_the_run_devices_are_estimated_and_reported(project: pytest.Pytester) -> None:
    project.makepyfile("def test_model(flops):\n    flops(4096)\n")
    out = project.path / "report.json"
    result = project.runpytest("--flop-missing=warn", "--flop-report", "--flop-device=h100-sxm, l4", f"--flop-report-json={out}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_model: h100-sxm 0.01002 ms memory-bound 100%; l4 0.1119 ms memory-bound 100%"])
    (test,) = json.loads(out.read_text())["tests"]
    assert list(test["estimates"]) == ["h100-sxm", "l4"]
    assert test["estimates"]["l4"]["ms"] == pytest.approx(1e3 * (4096 + 4096 * 4096 + 4096) * 2 / 0.3e12)
    assert test["estimates"]["l4"]["bound"] == "memory" and test["budget_ms"] is None


def test_a_time_budget_without_costs_fails_with_the_reason(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.flop_budget(ms=1.0, device="l4")
        def test_no_costs(flops):
            flops(0)

        def test_reported_only(flops):
            flops(0)
        """
    )
    result = project.runpytest("--flop-missing=warn", "--flop-device=l4")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*time budget ms=1 on l4 cannot be checked: this measurement has no per-operator costs*"])


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("ms=1.0", "ms= needs device=, the device the time is estimated on"),
        ("device='l4'", "device= goes with ms="),
        ("ms=1.0, device='b300'", "unknown device 'b300'; known: h100-sxm"),
        ("ms=-1, device='l4'", "flop_budget ms must be >= 0"),
        ("ms=1.0, device=4", "device must be a device name, got 4"),
    ],
)
def test_bad_time_budgets(project: pytest.Pytester, marker: str, message: str) -> None:
    project.makepyfile(f"import pytest\n\n@pytest.mark.flop_budget({marker})\ndef test_x(flops):\n    flops(16)\n")
    result = project.runpytest("--flop-missing=warn")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{message}*"])


def test_devices_from_a_toml_file_and_bad_names(project: pytest.Pytester) -> None:
    project.makefile(".toml", devices="[devices.lab]\nfp32 = 1\nbf16 = 10\nbandwidth = 0.1\nmemory = 8\n")
    project.makepyfile(
        """
        import pytest

        @pytest.mark.flop_budget(ms=0.1, device="lab")
        def test_lab(flops):
            flops(4096)
        """
    )
    result = project.runpytest("--flop-missing=warn", "--flop-devices=devices.toml", "--flop-device=lab")
    result.assert_outcomes(failed=1)  # 33.57 MB at 0.1 TB/s: 0.3357 ms
    result.stdout.fnmatch_lines(["*time budget exceeded on lab: roofline lower bound 0.3357 ms > ms=0.1*"])
    bad = project.runpytest("--flop-device=h100-sxm,nope")
    bad.stderr.fnmatch_lines(["*pytest-flopbudget: --flop-device/--flop-devices: unknown device 'nope'*"])
    project.makefile(".toml", broken="[devices.x]\nfp32 = 1\n")
    broken = project.runpytest("--flop-devices=broken.toml")
    broken.stderr.fnmatch_lines(["*devices file *broken.toml: device 'x': missing bandwidth, memory*"])
