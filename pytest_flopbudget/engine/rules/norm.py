"""Rules of the normalisations (layer, RMS, batch, group, instance), as traced and as dispatched."""

from __future__ import annotations

from torchprofile.ir import Node

from .registry import _numel, rule


@rule("aten::rms_norm")
def _rms_norm(node: Node) -> int:
    """numel(out) when a weight is given (like torchprofile's layer_norm), else 0."""
    return _numel(node.outputs[0]) if node.inputs[2].shape is not None else 0



# ---- dispatch-level names (what composite operators decompose into) ----------


@rule("aten::native_layer_norm")
def _native_layer_norm(node: Node) -> int:
    """layer_norm as dispatched: numel(out) when a weight is given (inputs: x, shape, weight, bias, eps)."""
    return _numel(node.outputs[0]) if node.inputs[2].shape is not None else 0


@rule(
    "aten::native_batch_norm",
    "aten::_native_batch_norm_legit",
    "aten::_native_batch_norm_legit_no_training",
    "aten::_native_batch_norm_legit_functional",
    "aten::_batch_norm_with_update",
    "aten::_batch_norm_no_update",
    "aten::cudnn_batch_norm",
    "aten::native_group_norm",
)
def _dispatched_norm(node: Node) -> int:
    """batch/instance/group norm as dispatched: numel(out) when a weight (input 1) is given, like the trace's."""
    return _numel(node.outputs[0]) if node.inputs[1].shape is not None else 0
