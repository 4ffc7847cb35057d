"""Rules of the convolutions, direct and transposed."""

from __future__ import annotations

from math import prod

from torchprofile.ir import Node

from .registry import _numel, _shape, rule

# ---- convolution -----------------------------------------------------------


def _conv(node: Node, transposed: bool) -> int:
    weight = _shape(node.inputs[1])
    per_output = weight[1] * prod(weight[2:])
    if transposed:
        # weight [Cin, Cout/groups, *k]: every input element feeds Cout/groups * prod(k) outputs.
        return _numel(node.inputs[0]) * per_output
    # weight [Cout, Cin/groups, *k]
    return _numel(node.outputs[0]) * per_output


@rule("aten::_convolution", "aten::convolution")
def _convolution(node: Node) -> int:
    """Direct conv: numel(out) * Cin/groups * prod(kernel); transposed: numel(in) * Cout/groups * prod(kernel)."""
    flag = node.inputs[6].value
    if flag is None:
        raise ValueError("unknown 'transposed' flag")
    return _conv(node, bool(flag))


@rule("aten::conv1d", "aten::conv2d", "aten::conv3d")
def _conv_nd(node: Node) -> int:
    return _conv(node, False)


@rule("aten::conv_transpose1d", "aten::conv_transpose2d", "aten::conv_transpose3d")
def _conv_transpose_nd(node: Node) -> int:
    return _conv(node, True)


@rule("aten::_convolution_mode")
def _convolution_mode(node: Node) -> int:
    """Conv with ``padding="same"``/``"valid"`` (input, weight, bias, stride, padding, dilation, groups):
    direct, numel(out) * Cin/groups * prod(kernel)."""
    return _conv(node, False)
