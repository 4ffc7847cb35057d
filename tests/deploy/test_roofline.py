"""The roofline estimate and MFU on hand-built OpCost records, every expectation derived from shapes."""

from __future__ import annotations

import pytest

from pytest_flopbudget.deploy import estimate, mfu
from pytest_flopbudget.deploy.attention import causal
from pytest_flopbudget.deploy.devices import DEVICES, register_device
from pytest_flopbudget.deploy.roofline import peak_rate
from pytest_flopbudget.results.result import FlopResult, OpCost

H100_BF16 = 989.4e12  # dense BF16 tensor FLOP/s
H100_FP32 = 66.9e12
H100_TF32 = 494.7e12
H100_BW = 3.35e12  # bytes/s
SIZE = {"bfloat16": 2, "float16": 2, "float32": 4}


def gemm(m: int, n: int, k: int, dtype: str = "bfloat16", module: str = "", calls: int = 1) -> OpCost:
    s = SIZE[dtype]
    return OpCost("aten::mm", module=module, dtype=dtype, macs=m * n * k, bytes_read=(m * k + k * n) * s, bytes_written=m * n * s, calls=calls)


def test_a_large_gemm_is_compute_bound() -> None:
    m = n = k = 4096
    est = estimate([gemm(m, n, k)], "h100-sxm")
    flops, moved = 2 * m * n * k, 3 * 4096 * 4096 * 2
    assert flops / moved > DEVICES["h100-sxm"].ridge  # 1365 FLOPs per byte, right of the ridge
    assert est.ms == pytest.approx(1e3 * flops / H100_BF16)
    assert est.bound == "compute" and est.compute_share == 1.0 and est.memory_ms == 0
    assert est.flops == flops and est.bytes_moved == moved
    assert est.intensity == pytest.approx(flops / moved)


def test_a_matrix_vector_product_is_memory_bound() -> None:
    m, n, k = 1, 4096, 4096
    est = estimate([gemm(m, n, k)], "h100-sxm")
    moved = (m * k + k * n + m * n) * 2
    assert 2 * m * n * k / moved < DEVICES["h100-sxm"].ridge  # about 1 FLOP per byte, left of the ridge
    assert est.ms == pytest.approx(1e3 * moved / H100_BW)
    assert est.bound == "memory" and est.memory_share == 1.0
    assert est.ops[0].compute_seconds == pytest.approx(2 * m * n * k / H100_BF16)


def test_an_elementwise_chain_sums_its_memory_traffic() -> None:
    """x * 2, + 1, relu on a million float32 elements: each op reads and writes 4 MB."""
    n = 1_000_000
    chain = [OpCost(op, dtype="float32", macs=n, bytes_read=4 * n, bytes_written=4 * n) for op in ("aten::mul", "aten::add", "aten::relu")]
    est = estimate(chain, "h100-sxm")
    assert est.ms == pytest.approx(3 * 1e3 * 8 * n / H100_BW)
    assert all(op.rate == "fp32" for op in est.ops)  # vector units
    assert est.by_category == {"elementwise": pytest.approx(est.ms)}
    # on the vector units half precision runs at the vector rate, not the tensor rate
    assert peak_rate("h100-sxm", "bfloat16", "vector")[0] == pytest.approx(133.8e12)


def test_attention_full_and_causal() -> None:
    b, h, s, d = 1, 8, 4096, 64
    macs = b * h * s * s * (d + d)
    cost = OpCost("aten::scaled_dot_product_attention", dtype="bfloat16", macs=macs, bytes_read=3 * b * h * s * d * 2, bytes_written=b * h * s * d * 2)
    full = estimate([cost], "h100-sxm")
    assert full.ms == pytest.approx(1e3 * 2 * macs / H100_BF16) and full.attention == "full"
    half = estimate([cost], "h100-sxm", attention=causal(s))
    kept = s * (s + 1) // 2
    assert half.ms == pytest.approx(1e3 * 2 * b * h * kept * (d + d) / H100_BF16)
    assert half.attention == "causal (50.0% of the full matrix)" and half.bound == "compute"
    assert estimate([cost], "h100-sxm", attention=0.25).ms == pytest.approx(full.ms / 4)
    per_layer = estimate([cost], "h100-sxm", attention=lambda c: causal(s) if c.module else 1.0)
    assert per_layer.ms == pytest.approx(full.ms)
    with pytest.raises(ValueError, match="attention must be None, a fraction"):
        estimate([cost], "h100-sxm", attention=1.5)


def test_attention_convention_leaves_other_operators_alone() -> None:
    est = estimate([gemm(4096, 4096, 4096)], "h100-sxm", attention=0.5)
    assert est.ms == pytest.approx(1e3 * 2 * 4096**3 / H100_BF16)


def test_fp32_matmul_runs_at_fp32_and_convolution_at_tf32_by_default() -> None:
    """torch's defaults: allow_tf32 off for matmul, on for cuDNN convolutions."""
    m = 4096
    mm = gemm(m, m, m, "float32")
    conv = OpCost("aten::convolution", dtype="float32", macs=m**3, bytes_read=mm.bytes_read, bytes_written=mm.bytes_written)
    assert estimate([mm], "h100-sxm").ms == pytest.approx(1e3 * 2 * m**3 / H100_FP32)
    assert estimate([conv], "h100-sxm").ms == pytest.approx(1e3 * 2 * m**3 / H100_TF32)
    assert estimate([mm], "h100-sxm", tf32=True).ms == pytest.approx(1e3 * 2 * m**3 / H100_TF32)
    assert estimate([conv], "h100-sxm", tf32=False).ms == pytest.approx(1e3 * 2 * m**3 / H100_FP32)


def test_calls_multiply_and_efficiency_divides() -> None:
    one = estimate([gemm(4096, 4096, 4096)], "h100-sxm")
    assert estimate([gemm(4096, 4096, 4096, calls=3)], "h100-sxm").ms == pytest.approx(3 * one.ms)
    assert estimate([gemm(4096, 4096, 4096)], "h100-sxm", efficiency=0.5).ms == pytest.approx(2 * one.ms)
    with pytest.raises(ValueError, match=r"efficiency must be in \(0, 1\]"):
        estimate([gemm(1, 1, 1)], "h100-sxm", efficiency=0)


def test_a_device_efficiency_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_flopbudget.deploy import devices

    monkeypatch.setattr(devices, "DEVICES", dict(devices.DEVICES))
    register_device("slow-h100", fp32=66.9, bf16=989.4, bandwidth=3.35, memory=80, efficiency=0.5)
    fast = estimate([gemm(1, 4096, 4096)], "h100-sxm").ms
    assert estimate([gemm(1, 4096, 4096)], "slow-h100").ms == pytest.approx(2 * fast)


def test_a_missing_rate_falls_back_to_fp32_with_a_note() -> None:
    est = estimate([gemm(4096, 4096, 4096, "bfloat16")], "t4")
    assert est.ms == pytest.approx(1e3 * 2 * 4096**3 / 8.1e12)
    assert est.notes == ("t4 has no bf16 rate: bfloat16 tensor work priced at its fp32 rate",)
    assert peak_rate("h200", "float8_e4m3fn")[1] == "fp8"
    assert peak_rate("a100", "float8_e4m3fn")[1] == "fp32"
    assert peak_rate("l4", "int8")[0] == pytest.approx(242.5e12)
    with pytest.raises(ValueError, match="unit must be"):
        peak_rate("l4", "int8", "matrix")


def test_per_category_and_module_shares() -> None:
    costs = [
        gemm(4096, 4096, 4096, module="blocks.0.mlp.fc1"),
        gemm(4096, 4096, 4096, module="blocks.1.mlp.fc1"),
        gemm(1, 4096, 4096, module="head"),
        OpCost("aten::layer_norm", module="blocks.0.ln", dtype="bfloat16", macs=4096, bytes_read=8192, bytes_written=8192),
        OpCost("aten::mm", module="blocks.0.attn", phase="backward", dtype="bfloat16", macs=4096**3, bytes_read=1, bytes_written=1),
    ]
    est = estimate(costs, "h100-sxm")
    big = 1e3 * 2 * 4096**3 / H100_BF16
    small = 1e3 * (4096 + 4096**2 + 4096) * 2 / H100_BW
    norm = 1e3 * 16384 / H100_BW
    assert est.by_module == pytest.approx({"blocks.*.mlp.fc1": 2 * big, "head": small, "blocks.*.ln": norm, "backward/blocks.*.attn": big})
    assert est.by_category == pytest.approx({"matmul": 3 * big + small, "norm": norm})
    assert est.top_modules(2) == [("blocks.*.mlp.fc1", pytest.approx(2 * big)), ("backward/blocks.*.attn", pytest.approx(big))]
    assert est.compute_ms == pytest.approx(3 * big) and est.memory_ms == pytest.approx(small + norm)
    assert est.summary().startswith("h100-sxm: ") and "compute-bound" in est.summary()


def test_flop_result_without_costs() -> None:
    with pytest.raises(ValueError, match="no per-operator costs"):
        estimate(FlopResult(macs=10), "h100-sxm")
    assert estimate(FlopResult(macs=0), "h100-sxm").ms == 0
    result = FlopResult(macs=4096**3, costs=(gemm(4096, 4096, 4096),))
    assert estimate(result, "H100").ms == pytest.approx(1e3 * 2 * 4096**3 / H100_BF16)
    with pytest.raises(ValueError, match="takes a FlopResult or OpCost records"):
        estimate([1, 2], "h100-sxm")  # type: ignore[list-item]


def test_mfu() -> None:
    """A step of 989.4 TFLOPs in one second uses the whole BF16 peak of an H100; in two, half."""
    flops = 989.4e12
    assert mfu(flops, 1.0, "h100-sxm") == pytest.approx(1.0)
    assert mfu(FlopResult(macs=int(flops // 2)), 2.0, "h100-sxm") == pytest.approx(0.5)
    assert mfu(flops, 4.0, "h100-sxm", "float32", tf32=True) == pytest.approx(flops / (4 * H100_TF32))
    assert mfu(flops, 4.0, "h100-sxm", "float32") == pytest.approx(flops / (4 * H100_FP32))
    with pytest.raises(ValueError, match="seconds must be a positive measured time"):
        mfu(flops, 0, "h100-sxm")
    with pytest.raises(ValueError, match="work must be a FlopResult or a non-negative FLOP count"):
        mfu(-1, 1.0, "h100-sxm")
