"""Effective attention: pairs counted against hand counts and against enumerating every (q, k) pair."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from pytest_flopbudget import measure
from pytest_flopbudget.deploy import attention
from pytest_flopbudget.deploy.attention import (
    attention_macs,
    block_mask_pairs,
    causal,
    from_block_mask,
    from_mask,
    sliding_window,
    unmasked_pairs,
)


def _enumerate(q_len: int, kv_len: int, kind: str, window: int | None, align: str) -> int:
    """Count by visiting every pair: query i sits at key position i + d."""
    d = 0 if align == "top_left" else kv_len - q_len
    count = 0
    for i, j in itertools.product(range(q_len), range(kv_len)):
        p = i + d
        if kind == "full" or (kind == "causal" and j <= p) or (kind == "sliding" and p - window < j <= p):  # type: ignore[operator]
            count += 1
    return count


def test_hand_counts() -> None:
    assert unmasked_pairs(4, 4, "causal") == 1 + 2 + 3 + 4
    assert unmasked_pairs(2, 4, "causal") == 1 + 2  # top-left: query 0 sees key 0, query 1 keys 0..1
    assert unmasked_pairs(2, 4, "causal", align="bottom_right") == 3 + 4
    assert unmasked_pairs(1, 9, "causal", align="bottom_right") == 9  # a decode step sees the whole cache
    assert unmasked_pairs(4, 2, "causal") == 1 + 2 + 2 + 2
    assert unmasked_pairs(4, 2, "causal", align="bottom_right") == 0 + 0 + 1 + 2
    assert unmasked_pairs(5, 5, "sliding", window=2) == 1 + 2 + 2 + 2 + 2
    assert unmasked_pairs(5, 5, "sliding", window=9) == 15  # a window wider than the sequence is causal
    assert unmasked_pairs(3, 7, "full") == 21
    assert unmasked_pairs(0, 7, "causal") == 0


@pytest.mark.parametrize("align", ["top_left", "bottom_right"])
def test_closed_forms_equal_enumeration(align: str) -> None:
    for q_len, kv_len in itertools.product(range(0, 9), range(0, 9)):
        assert unmasked_pairs(q_len, kv_len, "causal", align=align) == _enumerate(q_len, kv_len, "causal", None, align)
        for window in range(1, 10):
            got = unmasked_pairs(q_len, kv_len, "sliding", window=window, align=align)
            assert got == _enumerate(q_len, kv_len, "sliding", window, align), (q_len, kv_len, window)


def test_causal_is_about_half_and_exact() -> None:
    n = 4096
    assert causal(n).kept == n * (n + 1) // 2
    assert causal(n).fraction == pytest.approx((n + 1) / (2 * n))
    # Mistral's 4096-token window over 32k tokens: the first 4096 queries see 1..4096 keys, the rest 4096 each
    w, n = 4096, 32768
    assert sliding_window(n, window=w).kept == w * (w + 1) // 2 + (n - w) * w


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="needs window= a positive integer"):
        unmasked_pairs(4, 4, "sliding")
    with pytest.raises(ValueError, match="window= goes with kind='sliding'"):
        unmasked_pairs(4, 4, "causal", window=3)
    with pytest.raises(ValueError, match="unknown attention kind 'banded'"):
        unmasked_pairs(4, 4, "banded")
    with pytest.raises(ValueError, match="align must be one of"):
        unmasked_pairs(4, 4, "causal", align="centre")
    with pytest.raises(ValueError, match="q_len must be a non-negative integer"):
        unmasked_pairs(-1, 4)


def test_boolean_and_additive_masks() -> None:
    tril = torch.ones(4, 4, dtype=torch.bool).tril()
    assert from_mask(tril).kept == 10 and from_mask(tril).total == 16
    assert from_mask(tril[None, None].expand(2, 3, 4, 4)).fraction == pytest.approx(10 / 16)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        additive = torch.zeros(4, 4, dtype=dtype).masked_fill(~tril, torch.finfo(dtype).min)
        assert from_mask(additive).kept == 10
        assert from_mask(torch.zeros(4, 4, dtype=dtype).masked_fill(~tril, float("-inf"))).kept == 10
    assert from_mask([[True, False], [True, True]]).kept == 3
    assert from_mask([[0.0, float("-inf")], [0.5, 0.0]]).kept == 3
    with pytest.raises(ValueError, match="boolean or floating point"):
        from_mask(torch.ones(2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="only booleans or only numbers"):
        from_mask([[True, 0.0]])


def test_var_block_causal_mask_counts_its_visible_pairs() -> None:
    """VAR's additive mask: a token sees every token of its own and earlier scales."""
    from examples.var.model import block_causal_mask

    patch_nums = (1, 2, 3)
    sizes = [p * p for p in patch_nums]  # 1, 4, 9 tokens
    kept = sum(size * sum(sizes[: i + 1]) for i, size in enumerate(sizes))  # 1*1 + 4*5 + 9*14
    pattern = from_mask(block_causal_mask(patch_nums))
    assert pattern.kept == kept == 147 and pattern.total == 14 * 14


def test_block_grid_counts_kept_blocks_whole_clipped_at_the_edges() -> None:
    grid = [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    # 300 tokens in blocks of 128: block sizes 128, 128, 44
    expected = 128 * 128 + 2 * 128 * 128 + 2 * 44 * 128 + 44 * 44
    assert block_mask_pairs(grid, 300, 300, 128, 128) == expected


def test_flex_attention_block_mask() -> None:
    flex = pytest.importorskip("torch.nn.attention.flex_attention")
    block_mask = flex.create_block_mask(lambda b, h, q, k: q >= k, None, None, 300, 300, device="cpu")
    pattern = from_block_mask(block_mask)
    assert pattern.kept == 128 * 128 + 2 * 128 * 128 + 2 * 44 * 128 + 44 * 44
    assert pattern.total == 300 * 300
    with pytest.raises(ValueError, match="needs a flex-attention BlockMask"):
        from_block_mask(object())


def test_attention_macs_full_is_the_budget_count() -> None:
    """kind="full" is what the counter prices scaled_dot_product_attention at; causal scales the pairs."""
    q = torch.zeros(2, 4, 16, 8, device="meta")
    k = torch.zeros(2, 4, 24, 8, device="meta")
    v = torch.zeros(2, 4, 24, 6, device="meta")

    class Attend(torch.nn.Module):
        def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return F.scaled_dot_product_attention(q, k, v)

    counted = measure(Attend(), q, k, v).macs
    assert attention_macs(q.shape, k.shape, v.shape) == counted == 2 * 4 * 16 * 24 * (8 + 6)
    assert attention_macs(q.shape, k.shape, v.shape, "causal") == 2 * 4 * unmasked_pairs(16, 24, "causal") * 14


def test_patterns_describe_themselves() -> None:
    assert str(causal(2)) == "causal (75.0% of the full matrix)"
    assert attention.full(3, 3).fraction == 1.0
    assert attention.AttentionPattern("empty", 0, 0).fraction == 1.0
    with pytest.raises(ValueError, match="kept pairs must be within"):
        attention.AttentionPattern("x", 5, 4)
