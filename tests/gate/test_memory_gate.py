"""Memory budgets end to end: marker ceilings, baseline figures, old baselines, the base gate (pytester).

The model is a Linear(64 -> 128) on a (4, 64) input on meta. By hand (float32):
weights 4 * (64 * 128 + 128) = 33,280 bytes, input 4 * 4 * 64 = 1,024, output 4 * 4 * 128 = 2,048;
the peak is all three (36,352 bytes, at the addmm the Linear dispatches, in the root module);
bytes moved: the Linear reads input, weight and bias and writes the output, also 36,352.
"""

from __future__ import annotations

import textwrap

import pytest

from pytest_flopbudget.baseline import store as baseline

WEIGHTS, INPUT, OUTPUT = 4 * (64 * 128 + 128), 4 * 4 * 64, 4 * 4 * 128
PEAK = WEIGHTS + INPUT + OUTPUT
MOVED = INPUT + WEIGHTS + OUTPUT
MACS = 4 * 64 * 128
MIB = 2**20

TEST = """
import pytest
import torch
from torch import nn

{marker}
def test_linear(flops):
    model, x = nn.Linear(64, 128, device="meta"), torch.empty(4, 64, device="meta")
    flops(model, x)
"""


def write(pytester: pytest.Pytester, marker: str = "") -> None:
    pytester.makepyfile(test_m=textwrap.dedent(TEST.format(marker=marker)))


def write_baseline(pytester: pytest.Pytester, **figures: int) -> None:
    lines = "".join(f"{k} = {v}\n" for k, v in figures.items())
    pytester.path.joinpath("flopbudget.toml").write_text(f'["test_m.py::test_linear"]\nmacs = {MACS}\n{lines}')


def entry(pytester: pytest.Pytester) -> baseline.Entry:
    return baseline.load(pytester.path / "flopbudget.toml").entries["test_m.py::test_linear"]


def test_peak_over_the_marker_ceiling_fails_and_names_where(pytester: pytest.Pytester) -> None:
    write(pytester, "@pytest.mark.flop_budget(peak_mib=0.01)")
    result = pytester.runpytest("--flop-missing=warn")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        f"*memory budget exceeded: peak memory {PEAK / MIB:.4g} MiB > {int(0.01 * MIB) / MIB:.4g} MiB*peak at <root> (aten::addmm)*",
        f"*peak memory: {PEAK:,} bytes*",
        f"*at the peak: weights {WEIGHTS / MIB:.4g} MiB, activations {(INPUT + OUTPUT) / MIB:.4g} MiB*",
    ])


def test_bytes_over_the_marker_ceiling_fails(pytester: pytest.Pytester) -> None:
    write(pytester, "@pytest.mark.flop_budget(bytes_gb=1e-5)")
    result = pytester.runpytest("--flop-missing=warn")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*memory budget exceeded: bytes moved {MOVED / 1e9:.4g} GB > 1e-05 GB*"])


def test_update_records_exact_memory_figures_beside_macs(pytester: pytest.Pytester) -> None:
    write(pytester, "@pytest.mark.flop_budget(peak_mib=1)")
    pytester.runpytest("--flop-update").assert_outcomes(passed=1)
    assert entry(pytester) == baseline.Entry(MACS, {"<root>": MACS}, {}, peak_bytes=PEAK, bytes_moved=MOVED)
    text = (pytester.path / "flopbudget.toml").read_text()
    assert f"macs = {MACS}\ngflops = " in text and f"\npeak_bytes = {PEAK}\nbytes_moved = {MOVED}\n" in text
    pytester.runpytest("--flop-missing=fail").assert_outcomes(passed=1)


def test_a_baseline_without_memory_figures_loads_and_passes(pytester: pytest.Pytester) -> None:
    write(pytester, "@pytest.mark.flop_budget(peak_mib=1)")
    write_baseline(pytester)
    pytester.runpytest("--flop-missing=fail").assert_outcomes(passed=1)
    write(pytester)  # no memory limit: memory is not measured, the entry stays as it was
    pytester.runpytest("--flop-update").assert_outcomes(passed=1)
    assert entry(pytester) == baseline.Entry(MACS, {"<root>": MACS})


def test_an_entry_with_memory_figures_is_measured_and_growth_fails(pytester: pytest.Pytester) -> None:
    write(pytester)
    write_baseline(pytester, peak_bytes=PEAK - 2048, bytes_moved=MOVED)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        f"*memory regression: peak memory {(PEAK - 2048) / MIB:.4g} MiB -> {PEAK / MIB:.4g} MiB (+6.0%, allowed +0%)"
        " against flopbudget.toml; the peak is at <root> (aten::addmm)*",
    ])
    pytester.runpytest("--flop-rel=7%").assert_outcomes(passed=1)
    pytester.runpytest("--flop-update").assert_outcomes(passed=1)
    assert entry(pytester).peak_bytes == PEAK


def test_bytes_moved_growth_fails(pytester: pytest.Pytester) -> None:
    write(pytester)
    write_baseline(pytester, peak_bytes=PEAK, bytes_moved=MOVED - 1)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*memory regression: bytes moved * against flopbudget.toml*"])


def test_flop_memory_measures_every_test(pytester: pytest.Pytester) -> None:
    write(pytester)
    pytester.runpytest("--flop-update", "--flop-memory").assert_outcomes(passed=1)
    assert (entry(pytester).peak_bytes, entry(pytester).bytes_moved) == (PEAK, MOVED)


def test_base_gate_on_memory(pytester: pytest.Pytester) -> None:
    write(pytester, "@pytest.mark.flop_budget(peak_mib=1)")
    write_baseline(pytester, peak_bytes=PEAK, bytes_moved=MOVED)
    base = pytester.path / "base.toml"
    base.write_text(f'["test_m.py::test_linear"]\nmacs = {MACS}\npeak_bytes = {PEAK - 1024}\nbytes_moved = {MOVED}\n')
    result = pytester.runpytest(f"--flop-base={base}", "--flop-base-rel=0")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*memory raise against the base base.toml: peak memory * needs approval*"])
    pytester.runpytest(f"--flop-base={base}").assert_outcomes(passed=1)  # without a limit the base only informs


def test_junit_properties_carry_memory(pytester: pytest.Pytester) -> None:
    write(pytester, "@pytest.mark.flop_budget(peak_mib=1)")
    pytester.runpytest("--junitxml=out.xml", "--flop-missing=warn").assert_outcomes(passed=1)
    xml = (pytester.path / "out.xml").read_text()
    assert f'name="flopbudget.peak_bytes" value="{PEAK}"' in xml
    assert f'name="flopbudget.bytes_moved" value="{MOVED}"' in xml


def test_marker_refuses_a_bad_memory_limit(pytester: pytest.Pytester) -> None:
    write(pytester, "@pytest.mark.flop_budget(peak_mib='lots')")
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["*peak_mib must be a number*"])


def test_json_report_carries_memory(pytester: pytest.Pytester) -> None:
    import json

    write(pytester, "@pytest.mark.flop_budget(peak_mib=1)")
    pytester.runpytest("--flop-report-json=r.json", "--flop-missing=warn").assert_outcomes(passed=1)
    (test,) = json.loads((pytester.path / "r.json").read_text())["tests"]
    assert test["memory"]["peak_bytes"] == PEAK and test["memory"]["bytes_moved"] == MOVED
    assert test["memory"]["peak_at"] == {"module": "<root>", "operator": "aten::addmm"}
    assert test["memory"]["peak_split"] == {"weights": WEIGHTS, "activations": INPUT + OUTPUT, "gradients": 0, "optimizer": 0}


def test_terminal_and_markdown_reports_show_memory(pytester: pytest.Pytester) -> None:
    write(pytester, "@pytest.mark.flop_budget(peak_mib=1)")
    result = pytester.runpytest("--flop-report", "--flop-report-md=r.md", "--flop-missing=warn")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "memory*peak MiB*GB moved*FLOP/B*peak at*",
        f"test_m.py::test_linear*{PEAK / MIB:,.1f}*{MOVED / 1e9:,.3f}*{2 * MACS / MOVED:,.1f}*<root> (aten::addmm)*",
    ])
    md = (pytester.path / "r.md").read_text()
    assert f"| `test_m.py::test_linear` | {PEAK / MIB:,.1f} |  | {MOVED / 1e9:,.3f} | {2 * MACS / MOVED:,.1f} | `<root> (aten::addmm)` |" in md


def test_html_report_draws_memory_over_the_call(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_m=textwrap.dedent("""
        import pytest
        import torch
        from torch import nn

        @pytest.mark.flop_budget(peak_mib=1)
        def test_mlp(flops):
            model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64)).to("meta")
            flops(model, torch.empty(4, 64, device="meta"))
    """))
    pytester.runpytest("--flop-report-html=r.html", "--flop-missing=warn").assert_outcomes(passed=1)
    page = (pytester.path / "r.html").read_text()
    weights = 4 * (64 * 128 + 128 + 128 * 64 + 64)
    peak = weights + 4 * 4 * 64 + 2 * 4 * 4 * 128  # the input, fc1's and ReLU's outputs
    assert "Memory over the call" in page and "<polyline" in page
    assert f"peak {peak / MIB:,.1f} MiB at 1 (aten::relu)" in page
    assert f"{peak:,} bytes" in page
