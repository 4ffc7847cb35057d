"""Per-operator MAC formulas for traced graphs.

The registry maps a lower-case operator name as it appears in a TorchScript
trace (``"aten::linear"``, ``"mylib::fused_mlp"``) to a *rule*: a function
that takes a :class:`torchprofile.ir.Node` and returns the multiply-accumulate
count (MACs, 1 MAC = 2 FLOPs) of that one call, or ``None`` for an operator
known to cost nothing (views, reshapes, activations, ...).

It starts from torchprofile's ``HANDLER_MAP`` and overrides or adds the rules
below. An operator with no entry is *unpriced*: the counter reports it in
``FlopResult.unpriced`` instead of silently counting it as zero.

A ``Node`` has ``operator`` (str), ``inputs`` and ``outputs`` (lists of
``Variable``). A tensor ``Variable`` has ``shape`` (list of ints, or ``None``
when unknown); a constant argument has ``value`` (a scalar, a string, or for
a list argument a list whose tensor items are shapes and other items values).
"""

from __future__ import annotations

from collections.abc import Callable
from math import isqrt, prod
from typing import Optional

from torchprofile.handlers import HANDLER_MAP
from torchprofile.ir import Node, Variable

Rule = Callable[[Node], int]

# operator -> rule; None means "known and free".
RULES: dict[str, Optional[Rule]] = dict(HANDLER_MAP)


def _key(operator: str) -> str:
    return operator.lower()


def register_rule(operator: str, fn: Optional[Rule] = None) -> Callable:
    """Price ``operator`` with ``fn(node) -> int`` (MACs), replacing any earlier rule.

    Use it as a call, ``register_rule("mylib::gemm", my_fn)``, or as a
    decorator, ``@register_rule("mylib::gemm")``. It returns ``fn``. The
    operator name is the trace's (e.g. ``"aten::mm"``, ``"torchvision::roi_align"``)
    and is matched case-insensitively. For an operator that costs nothing,
    use :func:`zero_cost`.
    """

    def add(rule_fn: Rule) -> Rule:
        if not callable(rule_fn):
            raise TypeError(f"a rule must be callable (node -> int), got {rule_fn!r}")
        RULES[_key(operator)] = rule_fn
        return rule_fn

    return add if fn is None else add(fn)


def rule(*operators: str) -> Callable[[Rule], Rule]:
    """Decorator: register one function as the rule of several operators."""

    def add(fn: Rule) -> Rule:
        for op in operators:
            register_rule(op, fn)
        return fn

    return add


def zero_cost(*operators: str) -> None:
    """Mark ``operators`` as known and free (priced at 0 MACs, never unpriced)."""
    for op in operators:
        RULES[_key(op)] = None


def unregister_rule(operator: str) -> None:
    """Forget ``operator``: later traces report it as unpriced."""
    RULES.pop(_key(operator), None)


def resolve(operator: str) -> Optional[str]:
    """The registry key that prices ``operator``: its own, else (for an in-place ``aten::leaky_relu_``)
    that of its out-of-place form, which computes the same; ``None`` when no rule applies."""
    key = _key(operator)
    if key in RULES:
        return key
    if key.endswith("_") and not key.endswith("__") and key[:-1] in RULES:
        return key[:-1]
    return None


def has_rule(operator: str) -> bool:
    """Whether ``operator`` is priced (including known-free operators and in-place forms of priced ones)."""
    return resolve(operator) is not None


def is_free(operator: str) -> bool:
    """Whether ``operator`` is known to cost nothing (so no node needs to be built to price it)."""
    key = resolve(operator)
    return key is not None and RULES[key] is None


def price(node: Node) -> Optional[int]:
    """MACs of ``node``, or ``None`` when no rule applies or the rule fails."""
    key = resolve(node.operator)
    if key is None:
        return None
    fn = RULES[key]
    if fn is None:
        return 0
    try:
        return int(fn(node))
    except Exception:
        return None


# ---- helpers ---------------------------------------------------------------


def _shape(v: Variable) -> list[int]:
    if v.shape is None:
        raise ValueError(f"unknown shape for {v!r}")
    return list(v.shape)


def _numel(v: Variable) -> int:
    return prod(_shape(v))


# ---- matrix products -------------------------------------------------------


@rule("aten::matmul", "aten::mm", "aten::bmm", "aten::dot", "aten::vdot", "aten::inner", "aten::mv", "aten::_scaled_mm", "aten::_int_mm")
def _matmul(node: Node) -> int:
    """One MAC per output element per step of the contracted (last) dimension of the first input."""
    return _numel(node.outputs[0]) * _shape(node.inputs[0])[-1]


@rule("aten::linear")
def _linear(node: Node) -> int:
    """``x[..., in] @ W[out, in]^T`` (or ``W[in]``): prod(x.shape[:-1]) * numel(W); bias not counted."""
    return prod(_shape(node.inputs[0])[:-1]) * _numel(node.inputs[1])


@rule("aten::addmm", "aten::addmv", "aten::baddbmm", "aten::_addmm_activation")
def _add_matmul(node: Node) -> int:
    """``bias + a @ b``: the product only, numel(out) * a.shape[-1]."""
    return _numel(node.outputs[0]) * _shape(node.inputs[1])[-1]


@rule("aten::addbmm")
def _addbmm(node: Node) -> int:
    """``bias + sum_b a[b] @ b[b]``: b * n * m * p."""
    b, _, m = _shape(node.inputs[1])
    return b * _numel(node.outputs[0]) * m


@rule("aten::outer", "aten::ger", "aten::addr", "aten::kron")
def _outer(node: Node) -> int:
    """One multiply per output element."""
    return _numel(node.outputs[0])


@rule("aten::tensordot")
def _tensordot(node: Node) -> int:
    """numel(out) * C, where C (the contracted size) = sqrt(numel(a) * numel(b) / numel(out))."""
    out = _numel(node.outputs[0])
    if out == 0:
        return 0
    return out * isqrt(_numel(node.inputs[0]) * _numel(node.inputs[1]) // out)


@rule("aten::cdist")
def _cdist(node: Node) -> int:
    """One MAC per output distance per feature: B * P * R * M."""
    return _numel(node.outputs[0]) * _shape(node.inputs[0])[-1]


@rule("aten::bilinear")
def _bilinear(node: Node) -> int:
    """``x1^T W_k x2`` for each output k, computed as (x1 W) then with x2: N*out*in2*(in1 + 1)."""
    n = prod(_shape(node.inputs[0])[:-1])
    out, in1, in2 = _shape(node.inputs[2])
    return n * out * in2 * (in1 + 1)


def _chain_cost(dims: list[int]) -> int:
    """Cheapest multiplication order of matrices dims[i] x dims[i+1] (what linalg.multi_dot uses)."""
    n = len(dims) - 1
    best = [[0] * n for _ in range(n)]
    for span in range(1, n):
        for i in range(n - span):
            j = i + span
            best[i][j] = min(best[i][k] + best[k + 1][j] + dims[i] * dims[k + 1] * dims[j + 1] for k in range(i, j))
    return best[0][n - 1]


@rule("aten::linalg_multi_dot", "aten::chain_matmul")
def _multi_dot(node: Node) -> int:
    """Chain product in the cheapest order; a 1-D first/last operand is a row/column vector."""
    shapes = [list(s) for s in node.inputs[0].value]
    if len(shapes[0]) == 1:
        shapes[0] = [1, shapes[0][0]]
    if len(shapes[-1]) == 1:
        shapes[-1] = [shapes[-1][0], 1]
    dims = [shapes[0][0]] + [s[1] for s in shapes]
    return _chain_cost(dims)


@rule("aten::_grouped_mm", "aten::grouped_mm", "aten::_scaled_grouped_mm")
def _grouped_mm(node: Node) -> int:
    """Grouped GEMM (mixture-of-experts experts): every output element is one row-by-column product over K.

    ``a[M, K] x b[G, K, N]`` (rows split among groups by ``offs``): M*K*N; ``a[G, M, K] x b[G, K, N]``:
    G*M*K*N; ``a[G?, M, K] x b[K, N]`` (columns split): M*K*N; ``a[M, K] x b[K, N]`` split along K
    into G groups, out [G, M, N]: M*K*N. Rows past ``offs[-1]`` (padding) are counted: shapes only.
    """
    a, b, out = _shape(node.inputs[0]), _shape(node.inputs[1]), _shape(node.outputs[0])
    if len(a) == 2 and len(b) == 2:
        return prod(out[1:]) * a[-1]
    return prod(out) * a[-1]


# ---- einsum ----------------------------------------------------------------


def _einsum_terms(equation: str, shapes: list[list[int]]) -> tuple[list[str], str, dict[str, int]]:
    """Split an equation into per-operand index strings (``...`` expanded) and the output, with sizes."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    ell = max((len(s) - (len(t) - 3) for t, s in zip(terms, shapes) if "..." in t), default=0)
    ell_names = [chr(0x2460 + i) for i in range(ell)]  # labels that cannot clash with letters
    sizes: dict[str, int] = {}
    expanded = []
    for term, shape in zip(terms, shapes):
        if "..." in term:
            k = len(shape) - (len(term) - 3)
            term = term.replace("...", "".join(ell_names[ell - k:]))
        for label, size in zip(term, shape):
            sizes[label] = max(sizes.get(label, 1), size)
        expanded.append(term)
    if arrow:
        out = rhs.replace("...", "".join(ell_names))
    else:
        counts = {c: sum(t.count(c) for t in expanded) for c in sizes}
        out = "".join(ell_names) + "".join(sorted(c for c in sizes if counts[c] == 1 and c not in ell_names))
    return expanded, out, sizes


@rule("aten::einsum")
def _einsum(node: Node) -> int:
    """Left-to-right pairwise contraction (torch's order without opt_einsum).

    Each step costs the product of the sizes of all indices of the two operands;
    ``...`` is expanded from the shapes. A single operand (transpose, trace,
    sum) costs 0.
    """
    equation = node.inputs[0].value
    shapes = [list(s) for s in node.inputs[1].value]
    terms, out, sizes = _einsum_terms(equation, shapes)
    total = 0
    current = terms[0]
    for i in range(1, len(terms)):
        both = set(current) | set(terms[i])
        total += prod(sizes[c] for c in both)
        later = set(out).union(*terms[i + 1:])
        current = "".join(c for c in sorted(both) if c in later)
    return total


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


# ---- elementwise and normalisation (torchprofile's conventions) ------------


@rule("aten::mul", "aten::mul_", "aten::addcmul", "aten::addcmul_")
def _mul(node: Node) -> int:
    """One MAC per output element; 0 for 0-d results (shape arithmetic recorded by the tracer)."""
    out = _shape(node.outputs[0])
    return prod(out) if out else 0


@rule("aten::rms_norm")
def _rms_norm(node: Node) -> int:
    """numel(out) when a weight is given (like torchprofile's layer_norm), else 0."""
    return _numel(node.outputs[0]) if node.inputs[2].shape is not None else 0


@rule("aten::upsample_linear1d")
def _upsample_linear(node: Node) -> int:
    return 2 * _numel(node.outputs[0])


@rule("aten::upsample_trilinear3d")
def _upsample_trilinear(node: Node) -> int:
    return 8 * _numel(node.outputs[0])


@rule("aten::upsample_bicubic2d")
def _upsample_bicubic(node: Node) -> int:
    return 16 * _numel(node.outputs[0])


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


@rule("aten::_adaptive_avg_pool2d", "aten::_adaptive_avg_pool3d")
def _adaptive_avg_pool(node: Node) -> int:
    """adaptive_avg_pool2d/3d as dispatched: one MAC per output element (torchprofile's pooling convention)."""
    return _numel(node.outputs[0])


register_rule("aten::grid_sampler_2d", HANDLER_MAP["aten::grid_sampler"])
register_rule("aten::grid_sampler_3d", HANDLER_MAP["aten::grid_sampler"])

@rule("torchvision::roi_align")
def _roi_align(node: Node) -> int:
    """Bilinear sampling (4 MACs per sample, as grid_sampler), sampling_ratio^2 samples per output bin.

    With an adaptive ``sampling_ratio`` (<= 0) the sample count depends on each box's size (values, not
    shapes): counted as one sample per bin, a lower bound.
    """
    ratio = node.inputs[5].value
    samples = ratio * ratio if isinstance(ratio, int) and ratio > 0 else 1
    return 4 * samples * _numel(node.outputs[0])


zero_cost(
    # data movement: patches out of and back into images (F.unfold / F.fold)
    "aten::im2col", "aten::col2im",
    "torchvision::nms", "torchvision::roi_pool",
)

zero_cost(
    "aten::_softmax", "aten::_log_softmax", "aten::_safe_softmax", "aten::_to_copy", "aten::_local_scalar_dense",
    "aten::empty_strided", "aten::new_empty_strided", "aten::_reshape_alias", "aten::lift_fresh_copy",
    "aten::split_with_sizes_copy", "aten::unbind_copy", "aten::slice_copy", "aten::select_copy",
    "aten::transpose_copy", "aten::t_copy", "aten::unsqueeze_copy", "aten::squeeze_copy", "aten::alias_copy",
    "aten::detach_copy", "aten::_fused_sdp_choice", "aten::sym_size", "aten::sym_numel", "aten::sym_stride",
    "aten::is_same_size", "aten::_has_compatible_shallow_copy_type", "aten::set_", "aten::resize_",
    "aten::as_strided_", "aten::_unsafe_index", "aten::_unsafe_index_put", "aten::index_copy",
    "aten::index_copy_", "aten::index_add", "aten::index_add_", "aten::index_fill", "aten::index_fill_",
    "aten::gather", "aten::masked_fill", "aten::where", "aten::_assert_async", "aten::_assert_tensor_metadata",
    "aten::_functional_sym_constrain_range", "aten::sym_constrain_range_for_size",
    "aten::_embedding_bag", "aten::embedding_dense_backward", "aten::histc", "aten::bincount", "aten::isin", "aten::_shape_as_tensor", "aten::__and__", "aten::__or__",
    # profiler markers (optimizers record their step)
    "profiler::_record_function_enter", "profiler::_record_function_enter_new", "profiler::_record_function_exit",
)

zero_cost(
    # views, copies and shape plumbing
    "aten::unbind", "aten::expand_as", "aten::view_as", "aten::reshape_as", "aten::narrow",
    "aten::roll", "aten::flip", "aten::repeat", "aten::tile", "aten::repeat_interleave",
    "aten::tensor_split", "aten::movedim", "aten::moveaxis", "aten::swapaxes", "aten::swapdims",
    "aten::numpy_t", "aten::mt", "aten::mh", "aten::adjoint", "aten::_unsafe_view", "aten::as_strided",
    "aten::alias", "aten::resolve_conj", "aten::resolve_neg", "aten::type_as", "aten::view_as_real",
    "aten::view_as_complex", "aten::lift_fresh", "aten::scalar_tensor", "aten::detach_", "aten::squeeze_",
    "aten::unsqueeze_", "aten::t_", "aten::transpose_", "aten::index_select", "aten::index_put_",
    "aten::index_put", "aten::scatter", "aten::scatter_", "aten::scatter_add", "aten::scatter_add_",
    "aten::masked_select", "aten::masked_scatter", "aten::take_along_dim", "aten::nonzero", "aten::one_hot",
    "aten::pixel_shuffle", "aten::pixel_unshuffle", "aten::channel_shuffle", "aten::pad",
    "aten::upsample_nearest1d", "aten::upsample_nearest3d", "aten::_upsample_nearest_exact2d",
    "aten::embedding_bag", "aten::native_dropout", "aten::dropout_", "aten::feature_alpha_dropout",
    # factories
    "aten::zeros_like", "aten::ones_like", "aten::full", "aten::full_like", "aten::empty",
    "aten::empty_like", "aten::new_zeros", "aten::new_ones", "aten::new_empty", "aten::new_full",
    "aten::new_tensor", "aten::ones", "aten::randn", "aten::rand", "aten::randint", "aten::randn_like",
    "aten::rand_like", "aten::normal", "aten::bernoulli", "aten::linspace", "aten::fill_", "aten::zero_",
    "aten::tensor", "aten::triu_indices", "aten::tril_indices",
    # sampling: picks indices, no multiply-accumulate
    "aten::multinomial", "aten::normal_", "aten::uniform_", "aten::bernoulli_", "aten::exponential_",
    "aten::random_", "aten::randperm", "aten::poisson",
    # elementwise, comparisons, reductions (free by torchprofile's convention; mul is not)
    "aten::masked_fill", "aten::masked_fill_", "aten::where", "aten::exp", "aten::exp_", "aten::log",
    "aten::log1p", "aten::erf", "aten::tril", "aten::triu", "aten::tril_", "aten::triu_", "aten::argmax",
    "aten::argmin", "aten::topk", "aten::sort", "aten::argsort", "aten::cumsum", "aten::softplus",
    "aten::hardswish", "aten::hardswish_", "aten::hardsigmoid", "aten::hardsigmoid_", "aten::mish",
    "aten::elu", "aten::selu", "aten::celu", "aten::glu", "aten::prelu", "aten::relu6", "aten::gelu_",
    "aten::silu_", "aten::sigmoid_", "aten::tanh_", "aten::neg_", "aten::sub_", "aten::clamp_",
    "aten::clamp_min", "aten::clamp_max", "aten::clamp_min_", "aten::clamp_max_", "aten::minimum",
    "aten::maximum", "aten::min", "aten::amax", "aten::amin", "aten::any", "aten::all", "aten::isnan",
    "aten::isinf", "aten::isfinite", "aten::logical_not", "aten::logical_and", "aten::logical_or",
    "aten::bitwise_not", "aten::bitwise_and", "aten::bitwise_or", "aten::bitwise_xor", "aten::square",
    "aten::abs_", "aten::pow_", "aten::std", "aten::var", "aten::norm", "aten::linalg_vector_norm",
    "aten::frobenius_norm", "aten::logsumexp", "aten::prod", "aten::remainder", "aten::fmod",
    "aten::atan2", "aten::sign_", "aten::round", "aten::ceil", "aten::trunc", "aten::lerp",
    "aten::logical_xor", "aten::sgn", "aten::tan", "aten::asin", "aten::acos", "aten::atan",
    "aten::sinh", "aten::cosh", "aten::erfinv", "aten::expm1", "aten::log10", "aten::softmin",
    "aten::nan_to_num", "aten::normalize", "aten::cosine_similarity", "aten::unique_dim",
    "aten::_unique2", "aten::bucketize", "aten::searchsorted", "aten::complex", "aten::polar",
    "aten::cumprod", "aten::diff", "aten::diag", "aten::diagonal", "aten::diag_embed", "aten::eye",
    "aten::meshgrid", "aten::broadcast_tensors", "aten::dstack", "aten::hstack", "aten::vstack",
    "aten::unflatten", "aten::select_scatter", "aten::slice_scatter",
    # structural nodes of the TorchScript graph
    "prim::tupleunpack", "prim::dictconstruct", "prim::getattr", "prim::device", "prim::dtype",
    "prim::tolist", "prim::listindex", "prim::dictindex", "aten::__getitem__", "prim::min", "prim::max",
    "aten::floordiv", "aten::item", "aten::dim", "aten::len", "aten::numel", "aten::eq_", "aten::ne_",
    "aten::contiguous_", "aten::expand_copy", "aten::view_copy", "aten::permute_copy",
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


@rule(
    "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
    "aten::_scaled_dot_product_flash_attention_backward",
    "aten::_scaled_dot_product_efficient_attention_backward",
    "aten::_scaled_dot_product_cudnn_attention_backward",
)
def _sdpa_backward(node: Node) -> int:
    """dP = dO V^T, dV = P^T dO, dQ = dS K, dK = dS^T Q: B * Hq * Sq * Skv * 2 (Dqk + Dv), twice the forward.
    Inputs: grad_out, query, key, value, ..."""
    q, k, v = (_shape(node.inputs[i]) for i in (1, 2, 3))
    return 2 * prod(q[:-2]) * q[-2] * k[-2] * (q[-1] + v[-1])


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
