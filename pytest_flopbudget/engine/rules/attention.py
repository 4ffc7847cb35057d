"""Rules of the fused attention kernels (scaled_dot_product_attention and its backends)."""

from __future__ import annotations

from math import prod

from torchprofile.ir import Node

from .registry import _shape, rule

# ---- attention -------------------------------------------------------------


@rule(
    "aten::scaled_dot_product_attention",
    "aten::_scaled_dot_product_attention_math",
    "aten::_scaled_dot_product_flash_attention",
    "aten::_scaled_dot_product_flash_attention_for_cpu",
    "aten::_scaled_dot_product_efficient_attention",
    "aten::_scaled_dot_product_cudnn_attention",
)
def _sdpa(node: Node) -> int:
    """QK^T + AV: B * Hq * Sq * Skv * (Dqk + Dv). Grouped-query (fewer kv heads) allowed; mask/causal ignored."""
    q, k, v = (_shape(node.inputs[i]) for i in range(3))
    return prod(q[:-2]) * q[-2] * k[-2] * (q[-1] + v[-1])


@rule("aten::_native_multi_head_attention")
def _native_mha(node: Node) -> int:
    """nn.MultiheadAttention fast path: q/k/v projections, QK^T + AV, output projection."""
    q, k = _shape(node.inputs[0]), _shape(node.inputs[1])
    e = q[-1]
    b, sq, skv = prod(q[:-2]), q[-2], k[-2]
    return b * (sq * e * e + 2 * skv * e * e + 2 * sq * skv * e + sq * e * e)
