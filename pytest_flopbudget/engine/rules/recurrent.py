"""Rules of the fused recurrent layers (LSTM, GRU, RNN)."""

from __future__ import annotations

from math import prod

from torchprofile.ir import Node

from .registry import _shape, rule

# ---- recurrent -------------------------------------------------------------


def _recurrent(node: Node, gates: int) -> int:
    out, h_n = _shape(node.outputs[0]), _shape(node.outputs[1])
    input_size, hidden = _shape(node.inputs[0])[-1], h_n[-1]
    dirs = out[-1] // hidden
    layers = h_n[0] // dirs
    steps = prod(out[:-1])  # seq * batch
    per_step = 0
    for layer in range(layers):
        width = input_size if layer == 0 else hidden * dirs
        per_step += gates * hidden * (width + hidden)
    return steps * dirs * per_step


@rule("aten::lstm")
def _lstm(node: Node) -> int:
    """4 gates: seq * batch * dirs * sum_layers 4 * H * (in_layer + H)."""
    return _recurrent(node, 4)


@rule("aten::gru")
def _gru(node: Node) -> int:
    """3 gates: seq * batch * dirs * sum_layers 3 * H * (in_layer + H)."""
    return _recurrent(node, 3)


@rule("aten::rnn_tanh", "aten::rnn_relu")
def _rnn(node: Node) -> int:
    """1 gate: seq * batch * dirs * sum_layers H * (in_layer + H)."""
    return _recurrent(node, 1)
