"""Rules of training steps: scaled adds, optimizer updates (foreach and fused), backward kernels."""

from __future__ import annotations

from math import prod

from torchprofile.ir import Node, Variable

from .registry import (
    Rule,
    _numel,
    _shape,
    has_rule,
    price,
    register_rule,
    rule,
    zero_cost,
)

# ---- training steps: scaled adds, optimizer updates, backward kernels --------
#
# The elementwise convention of the forward, applied to the backward and the
# optimizer: every multiply per element costs one MAC (mul, addcmul, addcdiv,
# lerp, and an add/sub scaled by an alpha other than +-1, as in
# ``p.add_(g, alpha=-lr)``); plain adds, divisions, square roots, maxima and
# activations are free. A ``_foreach_*`` operator costs what its one-tensor twin
# costs on each tensor of the list, and a fused optimizer kernel what the
# one-tensor (for-loop) implementation of the same step costs, so the for-loop,
# foreach and fused implementations of an optimizer count the same.
# A fused backward kernel costs its forward once per gradient it computes
# (input, weight): a convolution's or a norm's backward is 1x its forward per
# gradient; an attention's four gradient matmuls (dQ, dK, dV, dP) are 2x its
# forward; an activation's, softmax's or loss's backward is free like its forward.


def _value(v: Variable) -> object:
    return v.value if v.shape is None else "tensor"


def _is_scaled(alpha: object) -> bool:
    """An add's ``alpha`` that multiplies: anything but 1 and -1 (a tensor alpha multiplies)."""
    if alpha is None or isinstance(alpha, bool):
        return False
    if isinstance(alpha, (int, float)):
        return alpha not in (1, -1)
    return True


@rule("aten::add", "aten::add_", "aten::sub", "aten::sub_")
def _add(node: Node) -> int:
    """Free (torchprofile), except a scaled add ``self + alpha * other``: numel(out) for alpha not +-1."""
    out = node.outputs[0].shape if node.outputs else None
    if not out or len(node.inputs) < 3 or not _is_scaled(_value(node.inputs[2])):
        return 0
    return prod(out)


@rule("aten::lerp", "aten::lerp_", "aten::addcdiv", "aten::addcdiv_")
def _one_multiply(node: Node) -> int:
    """``a + w * (b - a)``, ``a + v * b / c``: one multiply per output element (like addcmul)."""
    out = node.outputs[0].shape if node.outputs and node.outputs[0].shape is not None else _shape(node.inputs[0])
    return prod(out) if out else 0


def _is_tensor_list(v: Variable) -> bool:
    return v.shape is None and isinstance(v.value, list) and bool(v.value) and all(isinstance(s, list) for s in v.value)


def _per_tensor(base: str) -> Rule:
    """The rule of ``_foreach_<op>``: ``base``'s rule on each tensor of the lists, summed."""

    def foreach(node: Node) -> int:
        lists = [v for v in node.inputs if _is_tensor_list(v)]
        if not lists:
            raise ValueError(f"{node.operator}: no tensor list")
        n = len(lists[0].value)
        total = 0
        for k in range(n):
            inputs = []
            for v in node.inputs:
                if _is_tensor_list(v):
                    inputs.append(Variable(name=v.name, dtype="tensor", shape=list(v.value[k])))
                elif v.shape is None and isinstance(v.value, list) and len(v.value) == n:
                    inputs.append(Variable(name=v.name, dtype="scalar", value=v.value[k]))  # a ScalarList
                else:
                    inputs.append(v)
            outs = [o for o in node.outputs if o.shape is not None]
            out = outs[k].shape if len(outs) == n else inputs[0].shape
            one = Node(operator=base, attributes={}, inputs=inputs, outputs=[Variable(name="out", dtype="tensor", shape=out)], scope="")
            macs = price(one)
            if macs is None:
                raise ValueError(f"{base} cannot be priced")
            total += macs
        return total

    return foreach


for _op in (
    "add", "sub", "mul", "div", "addcmul", "addcdiv", "lerp", "sqrt", "rsqrt", "neg", "abs", "exp", "sign",
    "reciprocal", "maximum", "minimum", "clamp_min", "clamp_max", "pow", "sigmoid", "zero", "copy", "norm",
):
    _base = f"aten::{_op}" if has_rule(f"aten::{_op}") else f"aten::{_op}_"
    register_rule(f"aten::_foreach_{_op}", _per_tensor(_base))
    register_rule(f"aten::_foreach_{_op}_", _per_tensor(_base))


def _list_numel(v: Variable) -> int:
    return sum(prod(s) for s in v.value) if _is_tensor_list(v) else 0


@rule("aten::_fused_adam_", "aten::_fused_adamw_")
def _fused_adam(node: Node) -> int:
    """Per parameter element, as the for-loop Adam/AdamW: lerp (exp_avg), mul + addcmul (exp_avg_sq),
    addcdiv (the update): 4; with weight decay one more (AdamW's ``p *= 1 - lr wd``, Adam's scaled add).
    Inputs: params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, lr, beta1, beta2, weight_decay, ..."""
    decay = _value(node.inputs[9])
    return _list_numel(node.inputs[0]) * (4 + (decay not in (0, 0.0)))


@rule("aten::_fused_sgd_")
def _fused_sgd(node: Node) -> int:
    """Per parameter element, as the for-loop SGD: weight decay (scaled add) 1; momentum: buf * momentum 1
    and the scaled add of the gradient when dampening is not 0 (none on the first step, which copies);
    nesterov 1; the update ``p += -lr * g`` 1 unless lr is +-1.
    Inputs: params, grads, momentum_buffers, weight_decay, momentum, lr, dampening, nesterov, maximize, is_first_step, ..."""
    decay, momentum, lr, dampening, nesterov, _, first = (_value(node.inputs[i]) for i in range(3, 10))
    per = int(decay not in (0, 0.0))
    if momentum not in (0, 0.0):
        if not first:
            per += 1 + _is_scaled(1 - dampening if isinstance(dampening, (int, float)) else dampening)
        per += bool(nesterov)
    per += _is_scaled(-lr if isinstance(lr, (int, float)) else lr)
    return _list_numel(node.inputs[0]) * per


def _mask(v: Variable, n: int) -> list[bool]:
    value = v.value if isinstance(v.value, list) else [True] * n
    return [bool(x) for x in value]


@rule("aten::convolution_backward")
def _convolution_backward(node: Node) -> int:
    """The forward conv's MACs once per gradient computed (input, weight; the bias gradient is a sum).
    Inputs: grad_output, input, weight, bias_sizes, stride, padding, dilation, transposed, output_padding, groups, mask."""
    weight = _shape(node.inputs[2])
    per_output = weight[1] * prod(weight[2:])
    transposed = bool(_value(node.inputs[7]))
    forward = (_numel(node.inputs[1]) if transposed else _numel(node.inputs[0])) * per_output
    mask = _mask(node.inputs[10], 3)
    return forward * (int(mask[0]) + int(mask[1]))


def _norm_backward(node: Node, weight_at: int, mask_at: int) -> int:
    """numel(input) per gradient that multiplies by the affine weight (input) or by x-hat (weight); 0 without weight."""
    if node.inputs[weight_at].shape is None:
        return 0
    mask = _mask(node.inputs[mask_at], 3)
    return _numel(node.inputs[1]) * (int(mask[0]) + int(mask[1]))


@rule("aten::native_layer_norm_backward")
def _layer_norm_backward(node: Node) -> int:
    """grad_out, input, normalized_shape, mean, rstd, weight, bias, mask: numel per gradient (see _norm_backward)."""
    return _norm_backward(node, 5, 7)


@rule("aten::native_group_norm_backward")
def _group_norm_backward(node: Node) -> int:
    """grad_out, input, mean, rstd, weight, N, C, HxW, group, mask."""
    return _norm_backward(node, 4, 9)


@rule("aten::native_batch_norm_backward")
def _batch_norm_backward(node: Node) -> int:
    """grad_out, input, weight, running_mean, running_var, save_mean, save_invstd, train, eps, mask."""
    return _norm_backward(node, 2, 9)


@rule("aten::avg_pool2d_backward", "aten::avg_pool3d_backward", "aten::_adaptive_avg_pool2d_backward", "aten::_adaptive_avg_pool3d_backward")
def _avg_pool_backward(node: Node) -> int:
    """The forward's one MAC per pooled output, once: numel(grad_output)."""
    return _numel(node.inputs[0])


zero_cost(
    # backward kernels of free forward operators
    "aten::threshold_backward", "aten::gelu_backward", "aten::silu_backward", "aten::sigmoid_backward",
    "aten::tanh_backward", "aten::hardtanh_backward", "aten::elu_backward", "aten::hardswish_backward",
    "aten::hardsigmoid_backward", "aten::softplus_backward", "aten::mish_backward", "aten::leaky_relu_backward",
    "aten::_softmax_backward_data", "aten::_log_softmax_backward_data", "aten::nll_loss_forward",
    "aten::nll_loss_backward", "aten::nll_loss2d_forward", "aten::nll_loss2d_backward", "aten::nll_loss",
    "aten::cross_entropy_loss", "aten::native_dropout_backward", "aten::embedding_dense_backward",
    "aten::embedding_backward", "aten::max_pool2d_with_indices_backward", "aten::max_pool3d_with_indices_backward",
    "aten::select_backward", "aten::slice_backward", "aten::index_select_backward", "aten::unfold_backward",
    "aten::_unsafe_view", "aten::new_empty_strided", "aten::new_zeros", "aten::zeros_like", "aten::sqrt_",
    "aten::_local_scalar_dense",
    # optimizer plumbing
    "profiler::_record_function_enter_new", "profiler::_record_function_exit", "aten::_to_copy",
)
