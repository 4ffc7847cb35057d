"""What kind of compute an operator is, and the counting conventions built on that.

Plain data and names: importing this never imports torch, so results, reports
and baselines can use it anywhere.

Every operator name (``"aten::addmm"``, ``"aten::mul_"``, ``"aten.mul.Tensor"``,
``"torchvision::roi_align"``) falls in one *category*:

- ``matmul``: matrix products (``mm``, ``bmm``, ``addmm``, ``linear``, ``einsum``, grouped GEMMs, ...)
- ``conv``: convolutions, direct and transposed
- ``attention``: fused attention kernels (``scaled_dot_product_attention`` and its backends)
- ``recurrent``: fused LSTM/GRU/RNN layers and cells (matrix products inside)
- ``fft``: fast Fourier transforms (``fft_rfft2``, ``_fft_r2c``, ...), priced at 5/2 N log2 N MACs per
  complex transform of N points, half that for a real one
- ``norm``: layer, batch, group, instance and RMS normalisation
- ``elementwise``: everything else (pointwise arithmetic, resampling, data movement)

The first five are *costly*: an operator of those categories that no rule can
price must never pass silently as zero. The *published* convention is what
model cards, papers and most tools print as "FLOPs" (torchvision's GFLOPS,
timm's GMACs, fvcore, the DiT paper): the MACs of matmul, convolution,
attention (and recurrent) operators only, no FFTs, no elementwise terms.

Names are matched exactly first (a table below, plus :func:`set_category`);
an unknown name is classified by its words (``fused_gemm_bias`` -> matmul),
whole words only, so ``upsample_bilinear2d`` is never taken for a matmul.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

__all__ = [
    "CATEGORIES",
    "COSTLY",
    "PUBLISHED",
    "base_name",
    "by_category",
    "category",
    "is_costly",
    "normalize",
    "published_macs",
    "set_category",
]

CATEGORIES = ("matmul", "conv", "attention", "recurrent", "fft", "norm", "elementwise")
COSTLY = frozenset({"matmul", "conv", "attention", "recurrent", "fft"})
PUBLISHED = ("matmul", "conv", "attention", "recurrent")

_TABLE: dict[str, str] = {}


def _add(cat: str, names: str) -> None:
    for name in names.split():
        _TABLE[name] = cat


_add(
    "matmul",
    """mm bmm addmm addmv addbmm baddbmm matmul linear bilinear einsum dot vdot inner mv outer ger addr kron
    tensordot linalg_multi_dot chain_matmul linalg_matmul cdist _grouped_mm grouped_mm _scaled_mm _scaled_grouped_mm
    _int_mm _addmm_activation _weight_int4pack_mm _weight_int8pack_mm mkldnn_linear linear_backward
    mkldnn_linear_backward mkldnn_linear_backward_input mkldnn_linear_backward_weights _trilinear
    fbgemm_linear_fp16_weight fbgemm_linear_int8_weight linear_dynamic linear_dynamic_fp16 linear_relu_dynamic
    linear_relu_dynamic_fp16 linear_relu""",
)
_add(
    "conv",
    """convolution _convolution conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d conv_tbc
    _conv_depthwise2d mkldnn_convolution cudnn_convolution cudnn_convolution_transpose miopen_convolution
    slow_conv2d slow_conv3d slow_conv_dilated2d slow_conv_dilated3d slow_conv_transpose2d slow_conv_transpose3d
    thnn_conv2d convolution_backward _slow_conv2d_forward _slow_conv2d_backward convolution_overrideable
    _convolution_mode""",
)
_add(
    "attention",
    """scaled_dot_product_attention _scaled_dot_product_attention_math _scaled_dot_product_flash_attention
    _scaled_dot_product_flash_attention_for_cpu _scaled_dot_product_efficient_attention
    _scaled_dot_product_cudnn_attention _scaled_dot_product_fused_attention_overrideable
    _scaled_dot_product_attention_math_for_mps _native_multi_head_attention _flash_attention_forward
    _efficient_attention_forward _scaled_dot_product_flash_attention_backward
    _scaled_dot_product_flash_attention_for_cpu_backward _scaled_dot_product_efficient_attention_backward
    _scaled_dot_product_cudnn_attention_backward _flash_attention_backward _efficient_attention_backward
    multi_head_attention_forward _varlen_attn _varlen_attn_out _varlen_attn_backward flex_attention
    flex_attention_backward _flash_attention_forward_no_dropout_inplace _cudnn_attention_forward
    _cudnn_attention_backward""",
)
_add(
    "recurrent",
    """lstm gru rnn_tanh rnn_relu lstm_cell gru_cell rnn_tanh_cell rnn_relu_cell _thnn_fused_lstm_cell
    _thnn_fused_gru_cell mkldnn_rnn_layer _cudnn_rnn miopen_rnn quantized_lstm_cell quantized_gru_cell""",
)
_add(
    "fft",
    """fft_fft fft_ifft fft_rfft fft_irfft fft_hfft fft_ihfft fft_fft2 fft_ifft2 fft_rfft2 fft_irfft2 fft_hfft2
    fft_ihfft2 fft_fftn fft_ifftn fft_rfftn fft_irfftn fft_hfftn fft_ihfftn _fft_r2c _fft_c2r _fft_c2c stft istft""",
)
_add(
    "norm",
    """layer_norm native_layer_norm batch_norm native_batch_norm _native_batch_norm_legit
    _native_batch_norm_legit_no_training _native_batch_norm_legit_functional cudnn_batch_norm
    _batch_norm_impl_index _batch_norm_with_update _batch_norm_no_update group_norm native_group_norm
    instance_norm rms_norm _fused_rms_norm native_layer_norm_backward native_batch_norm_backward
    native_group_norm_backward _fused_rms_norm_backward local_response_norm""",
)
# Whole names that read like a costly category but are not: resampling and data movement.
_add(
    "elementwise",
    """upsample_linear1d upsample_bilinear2d upsample_trilinear3d upsample_bicubic2d _upsample_bilinear2d_aa
    _upsample_bicubic2d_aa grid_sampler grid_sampler_2d grid_sampler_3d affine_grid_generator im2col col2im
    unfold fold""",
)

# Words (split on "_" and digits) that make an unknown operator costly.
_WORDS = {
    "matmul": "matmul",
    "mm": "matmul",
    "bmm": "matmul",
    "gemm": "matmul",
    "gemv": "matmul",
    "linear": "matmul",
    "einsum": "matmul",
    "conv": "conv",
    "convolution": "conv",
    "deconv": "conv",
    "attention": "attention",
    "attn": "attention",
    "sdpa": "attention",
    "lstm": "recurrent",
    "gru": "recurrent",
    "rnn": "recurrent",
    "fft": "fft",
}
_SPLIT = re.compile(r"[_\d]+")


def base_name(operator: str) -> str:
    """``"aten::mul_"`` -> ``"mul"``, ``"aten.mul.Tensor"`` -> ``"mul"``, ``"mylib::gemm"`` -> ``"gemm"``."""
    name = normalize(operator).split("::", 1)[-1]
    if name.endswith("_") and not name.endswith("__"):
        name = name[:-1]
    return name


def normalize(operator: str) -> str:
    """One spelling for the trace's and dispatch's names: ``"aten.addmm.default"`` -> ``"aten::addmm"``.

    Overload names are dropped; the in-place underscore is kept (``aten::mul_``).
    """
    name = operator.strip().lower()
    if "::" in name:
        return name.split(".", 1)[0]
    parts = name.split(".")
    if len(parts) >= 2:
        return f"{parts[0]}::{parts[1]}"
    return name


def set_category(operator: str, cat: str) -> None:
    """Classify ``operator`` (a full name such as ``"mylib::fused_mlp"``) as ``cat``, one of CATEGORIES."""
    if cat not in CATEGORIES:
        raise ValueError(f"unknown category {cat!r}; choose one of {', '.join(CATEGORIES)}")
    _TABLE[normalize(operator)] = cat


def category(operator: str) -> str:
    """The category of ``operator``: its own entry, its base name's, or by its words; else ``elementwise``."""
    full = normalize(operator)
    if full in _TABLE:
        return _TABLE[full]
    name = base_name(operator)
    if name in _TABLE:
        return _TABLE[name]
    if name.endswith("_backward"):
        stem = name[: -len("_backward")]
        if stem in _TABLE:
            return _TABLE[stem]
    for word in _SPLIT.split(name):
        if word in _WORDS:
            return _WORDS[word]
    return "elementwise"


def is_costly(operator: str) -> bool:
    """Whether an unpriced ``operator`` would hide real compute (matmul, conv, attention, recurrent or fft class)."""
    return category(operator) in COSTLY


def by_category(by_operator: Mapping[str, int]) -> dict[str, int]:
    """MACs per category, every category a key, in CATEGORIES order."""
    out = {cat: 0 for cat in CATEGORIES}
    for op, macs in by_operator.items():
        out[category(op)] += macs
    return out


def published_macs(categories: Mapping[str, int], include: Iterable[str] = PUBLISHED) -> int:
    """MACs of the published convention: matmul, convolution, attention and recurrent operators only."""
    return sum(categories.get(cat, 0) for cat in include)
