"""Rules of the elementwise operators, resampling and pooling (torchprofile's conventions), and
the operators known to cost nothing (views, copies, factories, comparisons, graph plumbing)."""

from __future__ import annotations

from math import prod

from torchprofile.handlers import HANDLER_MAP
from torchprofile.ir import Node

from .registry import _numel, _shape, register_rule, rule, zero_cost

# ---- elementwise and normalisation (torchprofile's conventions) ------------


@rule("aten::mul", "aten::mul_", "aten::addcmul", "aten::addcmul_")
def _mul(node: Node) -> int:
    """One MAC per output element; 0 for 0-d results (shape arithmetic recorded by the tracer)."""
    out = _shape(node.outputs[0])
    return prod(out) if out else 0



@rule("aten::upsample_linear1d")
def _upsample_linear(node: Node) -> int:
    return 2 * _numel(node.outputs[0])


@rule("aten::upsample_trilinear3d")
def _upsample_trilinear(node: Node) -> int:
    return 8 * _numel(node.outputs[0])


@rule("aten::upsample_bicubic2d")
def _upsample_bicubic(node: Node) -> int:
    return 16 * _numel(node.outputs[0])



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
    "aten::_embedding_bag", "aten::embedding_dense_backward", "aten::histc", "aten::bincount", "aten::isin",
    "aten::_shape_as_tensor", "aten::__and__", "aten::__or__", "aten::is_nonzero",
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
