"""Effective attention: the (query, key) pairs a masked attention kernel actually computes.

The budgets count attention as the full matrix (``B * H * Sq * Skv * (Dqk + Dv)`` MACs), as torch
and torchprofile do, whatever the mask. Kernels that skip masked work (flash attention with
``is_causal``, sliding-window kernels, flex attention's block masks) do less. This module counts
that work as a stated convention, for time estimates only (see docs/deployment.md):

- **full**: ``Sq * Skv`` pairs.
- **causal**: query ``i`` (0-based) sits at key position ``p = i + d`` and sees keys ``0..p``:
  ``sum_i clamp(p + 1, 0, Skv)`` pairs. ``align="top_left"`` (``d = 0``) is
  ``scaled_dot_product_attention(is_causal=True)``'s mask (``tril`` of the ``Sq x Skv`` matrix);
  ``align="bottom_right"`` (``d = Skv - Sq``) is the KV-cache convention (flash-attn, transformers'
  decode): the last query sees every key. For ``Sq = Skv = n`` both give ``n (n + 1) / 2``.
- **sliding window** ``w`` (Mistral, Gemma's local layers): query at ``p`` sees keys ``p - w + 1 .. p``:
  ``sum_i clamp(p + 1, 0, Skv) - clamp(p + 1 - w, 0, Skv)`` pairs.
- **boolean mask**: the number of ``True`` entries; **additive mask**: the entries above the dtype's
  most negative value (``-inf`` and ``finfo.min`` are masked, as transformers builds them).
- **flex-attention block mask**: every block the mask keeps (full or partial) is computed whole,
  so the pairs are the areas of the kept blocks (the last row and column of blocks clipped to the
  sequence lengths).

Every count is exact (closed forms, no loops over positions for the causal and window cases).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from math import prod
from typing import Any

__all__ = [
    "AttentionPattern",
    "attention_macs",
    "block_mask_pairs",
    "causal",
    "from_block_mask",
    "from_mask",
    "full",
    "sliding_window",
    "unmasked_pairs",
]

ALIGNS = ("top_left", "bottom_right")


def _sum_clamp(a: int, n: int, lo: int, hi: int) -> int:
    """``sum(clamp(a + i, lo, hi) for i in range(n))`` in closed form (``lo <= hi``)."""
    if n <= 0:
        return 0
    b = a + n - 1
    total = max(0, min(b, lo - 1) - a + 1) * lo  # values below lo
    total += max(0, b - max(a, hi + 1) + 1) * hi  # values above hi
    s, e = max(a, lo), min(b, hi)
    if e >= s:
        total += (s + e) * (e - s + 1) // 2
    return total


def _offset(q_len: int, kv_len: int, align: str) -> int:
    if align not in ALIGNS:
        raise ValueError(f"align must be one of {', '.join(ALIGNS)}, got {align!r}")
    return 0 if align == "top_left" else kv_len - q_len


def _lengths(q_len: int, kv_len: int) -> None:
    for name, value in (("q_len", q_len), ("kv_len", kv_len)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def unmasked_pairs(
    q_len: int, kv_len: int, kind: str = "full", *, window: int | None = None, align: str = "top_left"
) -> int:
    """The (query, key) pairs one head computes: ``kind`` is ``"full"``, ``"causal"`` or ``"sliding"``
    (with ``window``, causal inside the window). See the module docstring for the formulas."""
    _lengths(q_len, kv_len)
    if kind == "full":
        if window is not None:
            raise ValueError("window= goes with kind='sliding'")
        return q_len * kv_len
    d = _offset(q_len, kv_len, align)
    seen = _sum_clamp(d + 1, q_len, 0, kv_len)
    if kind == "causal":
        if window is not None:
            raise ValueError("window= goes with kind='sliding'")
        return seen
    if kind == "sliding":
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise ValueError(f"kind='sliding' needs window= a positive integer, got {window!r}")
        return seen - _sum_clamp(d + 1 - window, q_len, 0, kv_len)
    raise ValueError(f"unknown attention kind {kind!r}; choose full, causal or sliding")


@dataclass(frozen=True)
class AttentionPattern:
    """The pairs an attention computes, against the full matrix: ``fraction = kept / total``."""

    kind: str
    kept: int
    total: int

    def __post_init__(self) -> None:
        if self.total < 0 or not 0 <= self.kept <= self.total:
            raise ValueError(f"kept pairs must be within 0..{self.total}, got {self.kept}")

    @property
    def fraction(self) -> float:
        """The share of the full matrix computed (1.0 for an empty attention)."""
        return self.kept / self.total if self.total else 1.0

    def __str__(self) -> str:
        return f"{self.kind} ({100 * self.fraction:.1f}% of the full matrix)"


def full(q_len: int, kv_len: int) -> AttentionPattern:
    return AttentionPattern("full", q_len * kv_len, q_len * kv_len)


def causal(q_len: int, kv_len: int | None = None, *, align: str = "top_left") -> AttentionPattern:
    """Causal attention of ``q_len`` queries over ``kv_len`` keys (default ``q_len``)."""
    kv = q_len if kv_len is None else kv_len
    return AttentionPattern("causal", unmasked_pairs(q_len, kv, "causal", align=align), q_len * kv)


def sliding_window(q_len: int, kv_len: int | None = None, *, window: int, align: str = "top_left") -> AttentionPattern:
    """Causal attention inside a window of ``window`` keys (the query's own position included)."""
    kv = q_len if kv_len is None else kv_len
    return AttentionPattern(f"sliding window {window}", unmasked_pairs(q_len, kv, "sliding", window=window, align=align), q_len * kv)


def attention_macs(
    q_shape: Sequence[int], k_shape: Sequence[int], v_shape: Sequence[int] | None = None,
    kind: str = "full", *, window: int | None = None, align: str = "top_left",
) -> int:
    """``QK^T + AV`` MACs over the pairs computed: ``prod(batch dims) * pairs * (Dqk + Dv)``; with
    ``kind="full"`` this is the budgets' count of scaled_dot_product_attention."""
    v = k_shape if v_shape is None else v_shape
    if len(q_shape) < 2 or len(k_shape) < 2 or len(v) < 2:
        raise ValueError("q, k and v shapes need at least (sequence, head_dim)")
    pairs = unmasked_pairs(int(q_shape[-2]), int(k_shape[-2]), kind, window=window, align=align)
    return prod(int(s) for s in q_shape[:-2]) * pairs * (int(q_shape[-1]) + int(v[-1]))


def _flatten(values: Any) -> Iterable[Any]:
    if isinstance(values, (list, tuple)):
        for v in values:
            yield from _flatten(v)
    else:
        yield values


def from_mask(mask: Any) -> AttentionPattern:
    """The pattern of an explicit mask: a boolean tensor (True = attend), an additive float tensor
    (``-inf`` or the dtype's minimum = masked), or nested lists of either. A mask broadcast over
    batch and heads gives the same fraction as its full expansion."""
    dtype = getattr(mask, "dtype", None)
    if dtype is not None:  # a torch tensor (imported only when given one)
        import torch

        total = int(mask.numel())
        if mask.dtype == torch.bool:
            kept = int(mask.sum())
            return AttentionPattern("boolean mask", kept, total)
        if not mask.dtype.is_floating_point:
            raise ValueError(f"an attention mask must be boolean or floating point, got {mask.dtype}")
        kept = int((mask > torch.finfo(mask.dtype).min).sum())
        return AttentionPattern("additive mask", kept, total)
    flat = list(_flatten(mask))
    if all(isinstance(v, bool) for v in flat):
        return AttentionPattern("boolean mask", sum(flat), len(flat))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
        return AttentionPattern("additive mask", sum(v != float("-inf") for v in flat), len(flat))
    raise ValueError("a mask must hold only booleans or only numbers")


def block_mask_pairs(blocks: Any, q_len: int, kv_len: int, q_block: int, kv_block: int) -> int:
    """Pairs computed under a block mask: ``blocks[i][j]`` true when query block ``i`` computes key
    block ``j`` (nested lists or a tensor, any leading batch/head dims summed), each kept block
    counted whole, clipped to the sequence lengths."""
    _lengths(q_len, kv_len)
    if q_block < 1 or kv_block < 1:
        raise ValueError("block sizes must be positive")
    rows = _rows(blocks)
    pairs = 0
    for row_index, row in rows:
        q_size = min(q_block, q_len - row_index * q_block)
        if q_size <= 0:
            continue
        for col_index, kept in enumerate(row):
            kv_size = min(kv_block, kv_len - col_index * kv_block)
            if kept and kv_size > 0:
                pairs += q_size * kv_size
    return pairs


def _rows(blocks: Any) -> list[tuple[int, list[bool]]]:
    """(query block index, row of key-block flags) of a 2-d or deeper grid."""
    if hasattr(blocks, "tolist"):
        blocks = blocks.tolist()
    out: list[tuple[int, list[bool]]] = []

    def walk(node: Any) -> None:
        if node and isinstance(node[0], (list, tuple)) and node[0] and isinstance(node[0][0], (list, tuple)):
            for child in node:
                walk(child)
        else:
            out.extend((i, [bool(v) for v in row]) for i, row in enumerate(node))

    walk(blocks)
    return out


def from_block_mask(block_mask: Any) -> AttentionPattern:
    """The pattern of a flex-attention ``BlockMask`` (``torch.nn.attention.flex_attention``)."""
    if not (hasattr(block_mask, "to_dense") and hasattr(block_mask, "BLOCK_SIZE") and hasattr(block_mask, "seq_lengths")):
        raise ValueError("from_block_mask needs a flex-attention BlockMask (to_dense, BLOCK_SIZE, seq_lengths)")
    dense = block_mask.to_dense()
    q_len, kv_len = (int(n) for n in block_mask.seq_lengths)
    q_block, kv_block = (int(n) for n in block_mask.BLOCK_SIZE)
    shape = tuple(int(s) for s in dense.shape)
    heads = prod(shape[:-2])
    kept = block_mask_pairs(dense, q_len, kv_len, q_block, kv_block)
    return AttentionPattern("flex-attention block mask", kept, heads * q_len * kv_len)
