"""assert_scaling: fitted exponents, clear failures, and a linear attention that turned quadratic."""

from __future__ import annotations

import math
import textwrap

import pytest

from pytest_flopbudget import FlopResult, assert_scaling
from pytest_flopbudget.engine.scaling import Scaling, fit_exponent


def test_fit_exponent_recovers_exact_powers() -> None:
    sizes = [2, 4, 8, 16]
    assert fit_exponent(sizes, [7 * s**2 for s in sizes]) == pytest.approx(2.0)
    assert fit_exponent(sizes, [3 * s for s in sizes]) == pytest.approx(1.0)


def test_fit_exponent_rejects_unfittable_input() -> None:
    with pytest.raises(ValueError, match="two different sizes"):
        fit_exponent([4, 4], [1, 2])
    with pytest.raises(ValueError, match="positive"):
        fit_exponent([1, 2], [0, 5])


def test_passing_scaling_returns_the_fit() -> None:
    """cost = 100 n + n^2: between 1 and 2, fitted over n = 10 .. 1000 by least squares."""
    result = assert_scaling(lambda n: 100 * n + n * n, [10, 100, 1000], max_exponent=2.0, dimension="tokens")
    assert isinstance(result, Scaling)
    assert result.macs == (1_100, 20_000, 1_100_000)
    expected = fit_exponent([10, 100, 1000], [1_100, 20_000, 1_100_000])
    assert result.exponent == pytest.approx(expected) and 1.2 < expected < 1.9
    assert result.local_exponents == pytest.approx((math.log10(20_000 / 1_100), math.log10(1_100_000 / 20_000)))


def test_failure_names_exponent_bound_and_every_size() -> None:
    with pytest.raises(AssertionError) as info:
        assert_scaling(lambda n: n**3, [4, 2, 8], max_exponent=2.0, dimension="side")
    text = str(info.value)
    assert "MACs grow faster than allowed with side: fitted exponent 3.000 (max 2" in text
    assert "MACs ~ side^3.00 over side 2..8" in text
    for size, macs in ((2, 8), (4, 64), (8, 512)):
        assert f"{size}  {macs:>22,}" in text


def test_min_exponent_catches_sublinear_growth() -> None:
    with pytest.raises(AssertionError, match="grow slower than allowed with batch: fitted exponent 0.000 \\(min 0.99"):
        assert_scaling(lambda b: 1000, [1, 2, 4], max_exponent=1.01, min_exponent=0.99, dimension="batch")


def test_metric_picks_a_category_of_a_flop_result() -> None:
    def result(n: int) -> FlopResult:
        return FlopResult(macs=n * n + 10 * n, by_operator={"aten::scaled_dot_product_attention": n * n, "aten::linear": 10 * n})

    assert assert_scaling(result, [8, 16, 32], max_exponent=2.0, metric="attention").exponent == pytest.approx(2.0)
    assert assert_scaling(result, [8, 16, 32], max_exponent=1.0, metric="matmul").exponent == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown metric 'flops'"):
        assert_scaling(result, [8, 16, 32], max_exponent=2.0, metric="flops")


def test_bad_arguments_are_usage_errors() -> None:
    with pytest.raises(ValueError, match="at least 3 different sizes"):
        assert_scaling(lambda n: n, [1, 2], max_exponent=1.0)
    with pytest.raises(ValueError, match="min_exponent 2 is above max_exponent 1"):
        assert_scaling(lambda n: n, [1, 2, 4], max_exponent=1.0, min_exponent=2.0)
    with pytest.raises(TypeError, match="must return MACs"):
        assert_scaling(lambda n: "many", [1, 2, 4], max_exponent=1.0)
    with pytest.raises(AssertionError, match="are 0 at size \\[1, 2, 4\\]"):
        assert_scaling(lambda n: 0, [1, 2, 4], max_exponent=1.0)


LINEAR_ATTENTION = textwrap.dedent(
    """
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    from pytest_flopbudget import assert_scaling

    FULL = False


    class LinearAttention(nn.Module):
        '''Kernelised attention: phi(Q) (phi(K)^T V) costs n d^2, never n^2 d.'''

        def __init__(self, d=64):
            super().__init__()
            self.qkv = nn.Linear(d, 3 * d)
            self.proj = nn.Linear(d, d)

        def forward(self, x):
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            q, k = F.elu(q) + 1, F.elu(k) + 1
            if FULL:
                out = (q @ k.transpose(-2, -1)).softmax(dim=-1) @ v
            else:
                out = q @ (k.transpose(-2, -1) @ v)
            return self.proj(out)


    def test_attention_stays_linear_in_sequence_length():
        model = LinearAttention()
        assert_scaling(
            lambda n: (model, torch.zeros(1, n, 64)),
            sizes=[256, 512, 1024, 2048, 4096],
            max_exponent=1.1,
            dimension="tokens",
        )
    """
)


def test_linear_attention_passes_and_full_attention_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_attention=LINEAR_ATTENTION)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)

    pytester.makepyfile(test_attention=LINEAR_ATTENTION.replace("FULL = False", "FULL = True"))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    # qkv + proj: 4 n d^2 = 16,384 n; Q K^T and A V: 2 n^2 d = 128 n^2 (d = 64)
    result.stdout.fnmatch_lines(
        [
            "*MACs grow faster than allowed with tokens: fitted exponent 1.8* (max 1.1; MACs ~ tokens^1.87 *",
            "*tokens*MACs*local exponent*",
            f"*256*{16_384 * 256 + 128 * 256**2:,}*-*",
            f"*4,096*{16_384 * 4096 + 128 * 4096**2:,}*",
        ]
    )
