"""Rules of the fused attention kernels: scaled_dot_product_attention and its backends, the flash and
memory-efficient kernels below them (dense and variable-length), ``torch.nn.attention.varlen``'s
custom operators and ``flex_attention``, forward and backward.

Forward: ``QK^T`` and ``PV``, B * Hq * Sq * Skv * (Dqk + Dv) (grouped-query: fewer kv heads cost the
same; masks, causality, windows and dropout are not subtracted). Variable-length batches sum
Lq_i * Lk_i over their sequences where the offsets have values (a real pass); on meta, where they
have none, the bound min(Tq * max_k, Tk * max_q) (every query row against at most the longest key
sequence, and the reverse).

Backward (the convention of :func:`attention_backward`): ``"math"`` (default), what the math path
computes from the saved probabilities: dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q, that is
B * Hq * Sq * Skv * 2 (Dqk + Dv), twice the forward; ``"recompute"``, what the fused kernels (flash,
memory-efficient, cuDNN, flex) run: they keep no P and recompute QK^T first, B * Hq * Sq * Skv *
(3 Dqk + 2 Dv), 2.5x the forward when Dqk = Dv (torch's FlopCounterMode's figure).
"""

from __future__ import annotations

from math import prod

from torchprofile.ir import Node, Variable

from .registry import _shape, rule

__all__ = ["BACKWARD_CONVENTIONS", "READS_OFFSETS", "attention_backward", "backward_macs", "forward_macs"]

BACKWARD_CONVENTIONS = ("math", "recompute")

READS_OFFSETS = frozenset({
    "aten::_flash_attention_forward", "aten::_flash_attention_backward", "aten::_efficient_attention_forward",
    "aten::_efficient_attention_backward", "aten::_flash_attention_forward_no_dropout_inplace",
    "torch_attn::_varlen_attn", "torch_attn::_varlen_attn_out", "torch_attn::_varlen_attn_backward",
})
"""Operators whose rules read the values of their offsets tensors: the dispatch capture hands them
the values of small integer tensors (shapes alone everywhere else)."""
_convention = ["math"]


def attention_backward(convention: str | None = None) -> str:
    """The SDPA backward convention in force, after setting it to ``convention`` when given:
    ``"math"`` (2x the forward, the default) or ``"recompute"`` (the fused kernels' recomputation of
    QK^T: 2.5x for equal head dims). Call it once in a conftest.py to match the hardware that runs
    the model: ``from pytest_flopbudget.engine.rules import attention_backward; attention_backward("recompute")``.
    """
    if convention is not None:
        if convention not in BACKWARD_CONVENTIONS:
            raise ValueError(f"unknown attention backward convention {convention!r}; choose one of {', '.join(BACKWARD_CONVENTIONS)}")
        _convention[0] = convention
    return _convention[0]


def forward_macs(pairs: int, heads: int, dqk: int, dv: int) -> int:
    """``pairs`` (query, key) pairs per head: QK^T and PV."""
    return pairs * heads * (dqk + dv)


def backward_macs(pairs: int, heads: int, dqk: int, dv: int) -> int:
    """The backward of :func:`forward_macs` under the convention in force."""
    per = 2 * (dqk + dv) if _convention[0] == "math" else 3 * dqk + 2 * dv
    return pairs * heads * per


# ---- layouts ------------------------------------------------------------------------------


def _offsets(v: Variable) -> list[int] | None:
    """The values of an offsets tensor (cumulative sequence lengths) where the capture has them."""
    value = v.value
    if isinstance(value, list) and value and all(isinstance(x, int) for x in value):
        return value
    return None


def _int(v: Variable) -> int:
    if not isinstance(v.value, int):
        raise ValueError(f"expected an int, got {v.value!r}")
    return v.value


def varlen_pairs(q_offsets: Variable, k_offsets: Variable, total_q: int, total_k: int, max_q: int, max_k: int) -> int:
    """(query, key) pairs of a variable-length batch: sum Lq_i * Lk_i from the offsets' values, else
    the bound min(Tq * max_k, Tk * max_q)."""
    cq, ck = _offsets(q_offsets), _offsets(k_offsets)
    if cq is not None and ck is not None and len(cq) == len(ck):
        return sum((cq[i + 1] - cq[i]) * (ck[i + 1] - ck[i]) for i in range(len(cq) - 1))
    return min(total_q * max_k, total_k * max_q)


def _bhsd(node: Node, at: int) -> tuple[int, int, int, int]:
    """(pairs, heads, Dqk, Dv) of q, k, v at inputs at, at+1, at+2 laid out [..., H, S, D]."""
    q, k, v = (_shape(node.inputs[at + i]) for i in range(3))
    return prod(q[:-3]) * q[-2] * k[-2], q[-3] if len(q) >= 3 else 1, q[-1], v[-1]


def _bshd(node: Node, at: int, offsets_at: int, varlen: bool) -> tuple[int, int, int, int]:
    """(pairs, heads, Dqk, Dv) of the kernels below SDPA: q, k, v at inputs at.., laid out
    [B, S, H, D], or variable-length ([T, H, D], or [1, T, H, D] with offsets) with the offsets and
    the two maximum lengths at inputs offsets_at..offsets_at+3."""
    q, k, v = (_shape(node.inputs[at + i]) for i in range(3))
    if not varlen:
        return q[0] * q[1] * k[1], q[2], q[-1], v[-1]
    k_offsets = node.inputs[offsets_at + 1]
    if k_offsets.shape is None:  # varlen_attn's cu_seq_k=None: the query's offsets
        k_offsets = node.inputs[offsets_at]
    total_q, total_k = prod(q[:-2]), prod(k[:-2])
    max_q, max_k = _int(node.inputs[offsets_at + 2]), _int(node.inputs[offsets_at + 3])
    return varlen_pairs(node.inputs[offsets_at], k_offsets, total_q, total_k, max_q, max_k), q[-2], q[-1], v[-1]


# ---- forward -------------------------------------------------------------------------------


@rule(
    "aten::scaled_dot_product_attention",
    "aten::_scaled_dot_product_attention_math",
    "aten::_scaled_dot_product_flash_attention",
    "aten::_scaled_dot_product_flash_attention_for_cpu",
    "aten::_scaled_dot_product_efficient_attention",
    "aten::_scaled_dot_product_cudnn_attention",
    "aten::_scaled_dot_product_fused_attention_overrideable",
    "higher_order::flex_attention",
)
def _sdpa(node: Node) -> int:
    """QK^T + AV: B * Hq * Sq * Skv * (Dqk + Dv). Grouped-query (fewer kv heads) allowed; mask/causal ignored.

    ``flex_attention`` (query, key, value, score_mod, block_mask, ...) is priced so too: dense, the
    score_mod/mask_mod (elementwise, per score) free, a block mask's skipped blocks not subtracted."""
    return forward_macs(*_bhsd(node, 0))


@rule("aten::_flash_attention_forward")
def _flash_forward(node: Node) -> int:
    """query, key, value [B, S, H, D] (or [T, H, D] with cum_seq_q, cum_seq_k, max_q, max_k)."""
    return forward_macs(*_bshd(node, 0, 3, len(_shape(node.inputs[0])) == 3))


@rule("aten::_flash_attention_forward_no_dropout_inplace", "torch_attn::_varlen_attn_out")
def _flash_forward_into(node: Node) -> int:
    """As _flash_attention_forward, written into ``out`` (the first input)."""
    return forward_macs(*_bshd(node, 1, 4, len(_shape(node.inputs[1])) == 3))


@rule("torch_attn::_varlen_attn")
def _varlen_forward(node: Node) -> int:
    """torch.nn.attention.varlen.varlen_attn: query, key, value [T, H, D], cu_seq_q, cu_seq_k, max_q, max_k."""
    return forward_macs(*_bshd(node, 0, 3, True))


@rule("aten::_efficient_attention_forward")
def _efficient_forward(node: Node) -> int:
    """query, key, value [B, S, H, D], bias, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k."""
    return forward_macs(*_bshd(node, 0, 4, node.inputs[4].shape is not None))


@rule("aten::_native_multi_head_attention")
def _native_mha(node: Node) -> int:
    """nn.MultiheadAttention fast path: q/k/v projections, QK^T + AV, output projection."""
    q, k = _shape(node.inputs[0]), _shape(node.inputs[1])
    e = q[-1]
    b, sq, skv = prod(q[:-2]), q[-2], k[-2]
    return b * (sq * e * e + 2 * skv * e * e + 2 * sq * skv * e + sq * e * e)


# ---- backward (the convention of attention_backward) ----------------------------------------


@rule(
    "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
    "aten::_scaled_dot_product_flash_attention_backward",
    "aten::_scaled_dot_product_efficient_attention_backward",
    "aten::_scaled_dot_product_cudnn_attention_backward",
)
def _sdpa_backward(node: Node) -> int:
    """grad_out, query, key, value [B, H, S, D], ...: see :func:`backward_macs`."""
    return backward_macs(*_bhsd(node, 1))


@rule("higher_order::flex_attention_backward")
def _flex_backward(node: Node) -> int:
    """query, key, value, out, logsumexp, grad_out, ...: see :func:`backward_macs`."""
    return backward_macs(*_bhsd(node, 0))


@rule("aten::_flash_attention_backward")
def _flash_backward(node: Node) -> int:
    """grad_out, query, key, value [B, S, H, D] (or [T, H, D]), out, logsumexp, cum_seq_q, cum_seq_k, max_q, max_k."""
    return backward_macs(*_bshd(node, 1, 6, len(_shape(node.inputs[1])) == 3))


@rule("torch_attn::_varlen_attn_backward")
def _varlen_backward(node: Node) -> int:
    """grad_out, query, key, value [T, H, D], out, lse, cu_seq_q, cu_seq_k, max_q, max_k, ..."""
    return backward_macs(*_bshd(node, 1, 6, True))


@rule("aten::_efficient_attention_backward")
def _efficient_backward(node: Node) -> int:
    """grad_out, query, key, value [B, S, H, D], bias, out, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, ..."""
    return backward_macs(*_bshd(node, 1, 6, node.inputs[6].shape is not None))
