"""How VAR's transformer cost is made up and how it grows: 256 and 512 px at every depth, batch, tokens.

``test_transformer_forward_at`` measures the depths at the resolution they were not released at
(d16..d30 at 512 px, d36 at 256 px) with the same analytic check as ``test_var_flops.py``; with
those the report's "where the MACs go" table (examples/comparison.py) covers every depth at both
sizes. The scaling tests use ``pytest_flopbudget.assert_scaling``.
"""

from __future__ import annotations

import analytic
import pytest
import torch
from model import PATCH_NUMS_256, VAR, build_var, dummy_inputs
from test_var_flops import check_analytic

from pytest_flopbudget import assert_scaling, measure

# depth -> (resolution, GFLOPs ceiling); measured 1250.29, 2300.06, 3813.86, 7139.63 and 3285.80 (+ about 2%)
OTHER_RESOLUTION = {16: (512, 1280), 20: (512, 2350), 24: (512, 3900), 30: (512, 7300), 36: (256, 3360)}


def cases() -> list:
    return [
        pytest.param(depth, res, marks=pytest.mark.flop_budget(ceiling), id=f"d{depth}-{res}")
        for depth, (res, ceiling) in OTHER_RESOLUTION.items()
    ]


@pytest.mark.parametrize("depth, resolution", cases())
def test_transformer_forward_at(flops, depth: int, resolution: int) -> None:
    labels, tokens, _ = dummy_inputs(resolution)
    result = flops(build_var(depth, resolution), labels, tokens)
    check_analytic(result.by_operator, analytic.transformer_forward(analytic.var_shape(depth, resolution)))


def test_cost_is_linear_in_batch() -> None:
    """Batch 1..16: exactly B times the batch-1 count (AdaLN, attention, everything is per sample)."""
    model = build_var(16)

    def at(batch: int) -> int:
        labels, tokens, _ = dummy_inputs(batch=batch)
        return measure(model, labels, tokens).macs

    fit = assert_scaling(at, [1, 2, 4, 8, 16], max_exponent=1.0001, min_exponent=0.9999, dimension="batch")
    assert fit.macs == tuple(b * fit.macs[0] for b in fit.sizes)


SCALES_FOR_TOKENS = {sum(pn * pn for pn in PATCH_NUMS_256[:k]): k for k in range(6, 11)}  # L = 91 .. 680


def test_attention_is_quadratic_in_tokens() -> None:
    """d16 on the first k scales of 256 px: attention (Q K^T, A V: d * H * L^2 * 128) ~ L^2, matmuls ~ L."""
    results = {}

    def at(length: int) -> object:
        if length not in results:
            with torch.device("meta"):
                model = VAR(16, PATCH_NUMS_256[: SCALES_FOR_TOKENS[length]], shared_adaln=False).eval()
            labels, tokens = torch.zeros(1, dtype=torch.long, device="meta"), torch.zeros(1, length - 1, 32, device="meta")
            results[length] = measure(model, labels, tokens)
        return results[length]

    sizes = sorted(SCALES_FOR_TOKENS)
    attention = assert_scaling(at, sizes, max_exponent=2.0001, min_exponent=1.9999, metric="attention", dimension="tokens")
    assert attention.macs == tuple(16 * 16 * n * n * 128 for n in sizes)
    matmul = assert_scaling(at, sizes, max_exponent=1.001, min_exponent=0.99, metric="matmul", dimension="tokens")
    total = assert_scaling(at, sizes, max_exponent=2.0, min_exponent=1.0, dimension="tokens")
    assert matmul.exponent < total.exponent < attention.exponent
