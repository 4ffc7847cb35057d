"""benchmarks/bench_roofline_gpu.py on a machine without CUDA: the hand-built cases, the table, the
meta-side counts of the model cases, and the exit without a GPU."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from pytest_flopbudget.deploy import device, estimate
from pytest_flopbudget.results.result import FlopResult

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_roofline_gpu.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_roofline_gpu", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_says_so_and_exits_0(bench: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.main([]) == 0
    assert "needs a CUDA GPU" in capsys.readouterr().out


def test_hand_built_costs(bench: ModuleType) -> None:
    (mm,) = bench.gemm_costs(2, 3, 4, "bfloat16")
    assert (mm.operator, mm.macs, mm.bytes_read, mm.bytes_written) == ("aten::mm", 24, (8 + 12) * 2, 6 * 2)
    (fp8,) = bench.gemm_costs(2, 3, 4, "float8_e4m3fn")
    assert (fp8.category, fp8.bytes_read, fp8.bytes_written) == ("matmul", 20, 12)  # fp8 in, bf16 out
    chain = bench.chain_costs(10, "float32", ("aten::mul", "aten::add"))
    assert [(c.macs, c.bytes_moved) for c in chain] == [(10, 80), (10, 80)]
    (att,) = bench.attention_costs(2, 3, 5, 4, "bfloat16")
    assert att.category == "attention" and att.macs == 2 * 3 * 5 * 5 * (4 + 4)
    assert (att.bytes_read, att.bytes_written) == (3 * 2 * 3 * 5 * 4 * 2, 2 * 3 * 5 * 4 * 2)


def test_the_gemm_cases_sit_on_both_sides_of_the_ridge(bench: ModuleType) -> None:
    h200 = device("h200")
    bounds = {(m, dtype): estimate(bench.gemm_costs(m, n, k, dtype), h200, tf32=tf32).bound for m, n, k, dtype, tf32 in bench.GEMMS}
    assert bounds[(8192, "bfloat16")] == "compute" and bounds[(1, "bfloat16")] == "memory" and bounds[(16, "bfloat16")] == "memory"


def test_the_table(bench: ModuleType) -> None:
    h200 = device("h200")
    est = estimate(bench.gemm_costs(1, 8192, 8192, "bfloat16"), h200)
    rows = [bench.Row("gemv", 2 * est.ms, est), bench.Row("no gpu", None, None, "skipped: reason")]
    text = bench.format_rows(rows, h200)
    assert "gemv" in text and "2.00" in text and "memory (100%)" in text and "skipped: reason" in text
    assert "measured / estimated: median 2.00" in text


def test_a_model_without_costs_is_reported_not_timed(bench: ModuleType) -> None:
    row = bench.model_row("m", FlopResult(macs=5), lambda: pytest.fail("must not run"), device("h200"), 3)
    assert row.measured_ms is None and "records no FlopResult.costs" in row.note


def test_the_model_cases_count_on_meta(bench: ModuleType) -> None:
    llama = bench.llama_results(bench.llama_config(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                                  num_attention_heads=4, num_key_value_heads=2, vocab_size=100), prompt=8)
    assert llama["prefill"].macs > llama["decode"].macs > 0
    var = bench.var_results(depth=2, batches=(1,))
    assert var["forward 1"].macs > 0 and var["generate 1"].macs > 0
