"""Time estimates in the baseline, gated like memory: stored in whole nanoseconds with the device figures'
fingerprint, growth against the baseline and the base, other figures never compared (pytester).

The device of these tests, "round", is registered in the suite's conftest with round figures:
1 GFLOP/s FP32 (fp32 = 0.001 TFLOP/s) and 1 GB/s (bandwidth = 0.001 TB/s), so one FLOP and one byte
each take one nanosecond.

- A Linear(64 -> 128) on a (4, 64) float32 input on meta: 4 * 64 * 128 = 32,768 MACs = 65,536 FLOPs on
  the FP32 rate (matmul, TF32 off) = 65,536 ns; it moves input 1,024 + weights 33,280 + output 2,048 =
  36,352 bytes = 36,352 ns. Compute binds: 65,536 ns, 100% compute-bound.
- The counter of COUNTER_CONFTEST: flops(n) is one float32 aten::mm of 1,000 MACs (2,000 ns of compute)
  that reads n bytes (n ns): memory-bound for n > 2,000, with the same MACs whatever n; flops(0) has the
  same MACs and no per-operator costs.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import pytest

from pytest_flopbudget.baseline import store as baseline
from pytest_flopbudget.deploy import devices, figures_id

ROUND = 'register_device("round", fp32=0.001, bandwidth=0.001, memory=1, replace=True)'
REGISTER = f"from pytest_flopbudget import register_device\n{ROUND}\n"
COUNTER_CONFTEST = REGISTER + """
from pytest_flopbudget.results.result import FlopResult, OpCost

def pytest_flopbudget_count(model, args, kwargs, config, options):
    if model == 0:
        return FlopResult(macs=1000)  # a capture that records no per-operator costs
    cost = OpCost("aten::mm", dtype="float32", macs=1000, bytes_read=model)
    return FlopResult(macs=1000, costs=(cost,))
"""
LINEAR_NS = 65_536
LINEAR_TEST = """
import pytest
import torch
from torch import nn

{marker}
def test_linear(flops):
    flops(nn.Linear(64, 128, device="meta"), torch.empty(4, 64, device="meta"))
"""
ID = "test_t.py::test_model"


@pytest.fixture(autouse=True)
def _builtin_devices() -> Iterator[None]:
    devices._reset()
    yield
    devices._reset()


def round_figures(**other: float) -> str:
    """The fingerprint of "round" (with ``other`` figures instead of its own)."""
    figures = {"fp32": 0.001, "bandwidth": 0.001, "memory": 1, **other}
    return figures_id(devices.Device("round", **figures))


def load(pytester: pytest.Pytester) -> dict[str, baseline.Entry]:
    return baseline.load(pytester.path / "flopbudget.toml").entries


def ms(ns: int) -> str:
    return f"{ns / 1e6:.4g} ms"


@pytest.fixture
def counted(pytester: pytest.Pytester) -> pytest.Pytester:
    """A suite whose one test, test_model, moves BYTES bytes (edit with ``moving``)."""
    pytester.makeconftest(COUNTER_CONFTEST)
    moving(pytester, 10_000)
    return pytester


def moving(pytester: pytest.Pytester, nbytes: int, marker: str = "") -> None:
    pytester.makepyfile(test_t=f"import pytest\n\n{marker}\ndef test_model(flops):\n    flops({nbytes})\n")


def write_entry(pytester: pytest.Pytester, name: str = "flopbudget.toml", **times: tuple[int, str]) -> None:
    table = "".join(f'"{d}" = {{ ns = {ns}, figures = "{fig}" }}\n' for d, (ns, fig) in times.items())
    text = f'["{ID}"]\nmacs = 1000\n' + (f'\n["{ID}".time]\n{table}' if times else "")
    (pytester.path / name).write_text(text)


def test_update_stores_the_linear_time_in_whole_nanoseconds(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(REGISTER)
    pytester.makepyfile(test_m=textwrap.dedent(LINEAR_TEST.format(marker='@pytest.mark.flop_budget(ms=1, device="round")')))
    result = pytester.runpytest("--flop-update", "--flop-report")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*test_m.py::test_linear: round {ms(LINEAR_NS)} compute-bound 100% (budget 1 ms)"])
    (entry,) = load(pytester).values()
    assert entry.time == {"round": baseline.Timing(LINEAR_NS, round_figures())}
    text = (pytester.path / "flopbudget.toml").read_text()
    assert f'\n["test_m.py::test_linear".time]\n"round" = {{ ns = {LINEAR_NS}, figures = "{round_figures()}" }}\n' in text
    pytester.runpytest("--flop-update").assert_outcomes(passed=1)  # the same figures: the same bytes
    assert (pytester.path / "flopbudget.toml").read_text() == text
    pytester.runpytest("--flop-missing=fail").assert_outcomes(passed=1)


def test_the_run_devices_are_stored_sorted_and_compared_without_the_option(counted: pytest.Pytester) -> None:
    counted.runpytest("--flop-update", "--flop-device=round,h100-sxm").assert_outcomes(passed=1)
    h100 = round(1e9 * 10_000 / 3.35e12)  # 10,000 bytes at 3.35 TB/s: 2.985 ns, memory-bound
    assert load(counted)[ID].time == {"h100-sxm": baseline.Timing(h100, figures_id("h100-sxm")),
                                      "round": baseline.Timing(10_000, round_figures())}
    text = (counted.path / "flopbudget.toml").read_text()
    assert text.index('"h100-sxm" = {') < text.index('"round" = {')
    moving(counted, 12_000)  # 10,000 -> 12,000 ns on round; the entry's devices are estimated without --flop-device
    result = counted.runpytest("--flop-report")
    result.assert_outcomes(failed=1)
    h100_now = 1e3 * 12_000 / 3.35e12  # 3.582 ns: 3 -> 4 ns kept, one nanosecond of rounding, never judged
    result.stdout.fnmatch_lines([
        f"*time regression on round: roofline lower bound {ms(10_000)} -> {ms(12_000)} (+20.0%*",
        f"*test_model: h100-sxm {h100_now:.4g} ms memory-bound 100% (baseline {ms(h100)}, +33.3%); "
        f"round 0.012 ms memory-bound 100% (baseline 0.01 ms, +20.0%)",
    ])


def test_time_growth_fails_with_both_times_the_bound_and_the_accept_command(counted: pytest.Pytester) -> None:
    counted.runpytest("--flop-update", "--flop-device=round").assert_outcomes(passed=1)
    moving(counted, 12_000)
    result = counted.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        f"*time regression on round: roofline lower bound {ms(10_000)} -> {ms(12_000)} (+20.0%, allowed +0%) against "
        "flopbudget.toml; 100% memory-bound",
        f"*time on round: {ms(12_000)} (roofline lower bound), 100% memory-bound (baseline {ms(10_000)}, +20.0%)",
        f"*If intended: pytest \"{ID}\" --flop-update  (then commit flopbudget.toml)",
    ])
    counted.runpytest("--flop-rel=20%").assert_outcomes(passed=1)  # rel: the growth allowed, as for memory
    counted.runpytest("--flop-abs=100").assert_outcomes(failed=1)  # abs is GFLOPs: never a time
    moving(counted, 12_000, "@pytest.mark.flop_budget(rel='25%')")
    counted.runpytest().assert_outcomes(passed=1)
    moving(counted, 12_000)
    counted.runpytest("--flop-update").assert_outcomes(passed=1)  # accepted and recorded
    assert load(counted)[ID].time["round"] == baseline.Timing(12_000, round_figures())
    moving(counted, 9_000)
    counted.runpytest().assert_outcomes(passed=1)  # a shorter time passes


def test_times_made_with_other_device_figures_are_not_compared(counted: pytest.Pytester) -> None:
    counted.runpytest("--flop-update", "--flop-device=round").assert_outcomes(passed=1)
    counted.makeconftest(COUNTER_CONFTEST.replace("bandwidth=0.001", "bandwidth=0.0005"))  # half the bandwidth
    result = counted.runpytest("--flop-report")  # 20,000 ns now: not a regression, other figures
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        f"*{ID}: time on round not compared with flopbudget.toml: recorded with other figures for round "
        f"(fingerprint {round_figures()}, now {round_figures(bandwidth=0.0005)}*re-record it with --flop-update*",
    ])
    counted.runpytest("--flop-update").assert_outcomes(passed=1)
    assert load(counted)[ID].time["round"] == baseline.Timing(20_000, round_figures(bandwidth=0.0005))


def test_a_baseline_written_before_times_loads_and_its_tests_pass(counted: pytest.Pytester) -> None:
    write_entry(counted)  # macs only, as every baseline before this change
    counted.runpytest("--flop-missing=fail", "--flop-device=round").assert_outcomes(passed=1)
    counted.runpytest("--flop-update").assert_outcomes(passed=1)  # without a device: nothing added
    assert load(counted)[ID].time == {}
    counted.runpytest("--flop-update", "--flop-device=round").assert_outcomes(passed=1)
    assert load(counted)[ID].time == {"round": baseline.Timing(10_000, round_figures())}


def test_a_time_on_a_device_this_run_does_not_know_is_noted_not_compared(counted: pytest.Pytester) -> None:
    write_entry(counted, gone=(1, "00000000"), round=(10_000, round_figures()))
    moving(counted, 12_000)
    result = counted.runpytest()
    result.assert_outcomes(failed=1)  # round is still compared
    result.stdout.fnmatch_lines(["*flopbudget.toml has a time on 'gone', a device this run does not know; not compared*"])
    moving(counted, 10_000)
    counted.runpytest().assert_outcomes(passed=1)


def test_baseline_times_of_a_measurement_without_costs_are_noted_not_compared(counted: pytest.Pytester) -> None:
    write_entry(counted, round=(10_000, round_figures()))
    moving(counted, 0)
    result = counted.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*the times in flopbudget.toml not compared: this measurement has no per-operator costs*"])


def test_an_update_under_a_time_budget_violation_writes_nothing(counted: pytest.Pytester) -> None:
    moving(counted, 12_000, '@pytest.mark.flop_budget(ms=0.011, device="round")')
    counted.runpytest("--flop-update").assert_outcomes(failed=1)
    assert not (counted.path / "flopbudget.toml").exists()


def test_base_gate_on_time(counted: pytest.Pytester) -> None:
    write_entry(counted, round=(12_000, round_figures()))
    write_entry(counted, "base.toml", round=(10_000, round_figures()))
    moving(counted, 12_000)
    result = counted.runpytest("--flop-base=base.toml", "--flop-base-rel=0")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        f"*time raise against the base base.toml on round: roofline lower bound {ms(10_000)} -> {ms(12_000)} (+20.0%, "
        "allowed +0%); 100% memory-bound; needs approval",
    ])
    counted.runpytest("--flop-base=base.toml").assert_outcomes(passed=1)  # without a limit the base only informs
    counted.runpytest("--flop-base=base.toml", "--flop-base-rel=20%").assert_outcomes(passed=1)
    write_entry(counted, "base.toml", round=(10_000, "0badf00d"))  # other figures in the base: not compared
    result = counted.runpytest("--flop-base=base.toml", "--flop-base-rel=0")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*time on round not compared with the base base.toml: recorded with other figures*"])


def test_base_gate_on_time_under_xdist(counted: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    write_entry(counted, round=(12_000, round_figures()))
    write_entry(counted, "base.toml", round=(10_000, round_figures()))
    moving(counted, 12_000)
    result = counted.runpytest_subprocess("-n", "2", "--flop-base=base.toml", "--flop-base-rel=0")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*time raise against the base base.toml on round*"])
