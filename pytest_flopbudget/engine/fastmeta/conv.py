"""Shape functions of convolutions and resizing (upsampling)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import _disable_current_modes

from .layout import (
    _channels_last_strides,
    _contiguous,
    _new,
    _plain_contiguous,
    _same_float,
    _strides_like_channels_last,
)
from .mode import (
    aten,
    shape_fn,
)

# ---- convolution and resizing ------------------------------------------------------------


_always_contiguous: bool | None = None


def _output_always_contiguous() -> bool:
    """Whether torch's meta convolution makes a contiguous output whatever the layouts of its input and
    weight (torch 2.13 does; torch 2.9 makes a channels-last output for a channels-last input or weight).
    Asked of torch's own kernel, once, the first time a convolution's input or weight is not plainly contiguous."""
    global _always_contiguous
    if _always_contiguous is None:
        def meta(*shape: int, last: bool = False) -> torch.Tensor:
            return torch.empty(shape, device="meta", memory_format=torch.channels_last if last else torch.contiguous_format)

        with _disable_current_modes():
            outs = [aten.convolution.default(x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)
                    for x, w in [(meta(1, 2, 2, 2, last=True), meta(2, 2, 1, 1)), (meta(1, 2, 3, 3), meta(2, 2, 2, 2, last=True))]]
        _always_contiguous = all(out.is_contiguous() for out in outs)
    return _always_contiguous


def _conv_shape(x: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any, transposed: bool,
                output_padding: Any, groups: int) -> list[int] | None:
    params = [t for t in (weight, bias) if t is not None]
    if _same_float(x, *params) is None or 0 in x.shape:
        return None
    if not (_plain_contiguous(x) and _plain_contiguous(weight)) and not _output_always_contiguous():
        return None  # torch's kernel picks the output's layout from the input's and the weight's
    spatial = x.dim() - 2
    if spatial < 1 or weight.dim() != x.dim() or groups < 1:
        return None
    if not all(len(v) == spatial for v in (stride, padding, dilation)) or (transposed and len(output_padding) != spatial):
        return None
    kernel = weight.shape[2:]
    if transposed:
        if x.shape[1] != weight.shape[0]:
            return None
        channels = weight.shape[1] * groups
        sizes = [(x.shape[i + 2] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (kernel[i] - 1) + output_padding[i] + 1
                 for i in range(spatial)]
    else:
        if x.shape[1] != weight.shape[1] * groups or weight.shape[0] % groups:
            return None
        channels = weight.shape[0]
        sizes = [(x.shape[i + 2] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
                 for i in range(spatial)]
    if bias is not None and list(bias.shape) != [channels]:
        return None
    if any(s <= 0 for s in sizes) or min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        return None
    return [x.shape[0], channels, *sizes]


@shape_fn(aten.convolution.default)
def _convolution(x: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any, transposed: bool,
                 output_padding: Any, groups: int) -> torch.Tensor | None:
    if torch._C._get_tracing_state() is not None:
        return None  # re-issued as aten::_convolution for the tracer (FastMeta.__torch_dispatch__)
    shape = _conv_shape(x, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    return None if shape is None else _contiguous(shape, x.dtype)


@shape_fn(aten._convolution.default)
def _convolution_traced(x: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any, transposed: bool,
                        output_padding: Any, groups: int, *flags: Any) -> torch.Tensor | None:
    shape = _conv_shape(x, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    return None if shape is None else _contiguous(shape, x.dtype)






def _resize(x: Any, output_size: Any) -> torch.Tensor | None:
    """Interpolation to ``output_size``: contiguous, or channels-last when the input's strides are NHWC-ordered."""
    if _same_float(x) is None or x.dim() != 4 or len(output_size) != 2:
        return None
    if 0 in x.shape or any(s <= 0 for s in output_size):
        return None
    shape = [*x.shape[:2], *output_size]
    if _strides_like_channels_last(x.shape, x.stride()):
        return _new(shape, _channels_last_strides(shape), x.dtype)
    return _contiguous(shape, x.dtype)


@shape_fn(aten.upsample_bicubic2d.default, aten.upsample_bilinear2d.default)
def _upsample_interp(x: Any, output_size: Any, align_corners: bool, *scales: Any) -> torch.Tensor | None:
    return _resize(x, output_size)


@shape_fn(aten.upsample_nearest2d.default)
def _upsample_nearest(x: Any, output_size: Any, *scales: Any) -> torch.Tensor | None:
    return _resize(x, output_size)


# ---- pooling ------------------------------------------------------------------------------


def _pair(value: Any, default: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """A pooling parameter of one or two ints (``stride=[]``: ``default``)."""
    if not value and default is not None:
        return default
    if not isinstance(value, (list, tuple)) or len(value) not in (1, 2) or not all(type(v) is int for v in value):
        return None
    return (value[0], value[0]) if len(value) == 1 else (value[0], value[1])


def _pooled(size: int, kernel: int, pad: int, stride: int, dilation: int, ceil_mode: bool) -> int:
    """torch's pooling output size (``pooling_output_shape``)."""
    out = (size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


@shape_fn(aten.max_pool2d_with_indices.default)
def _max_pool2d_with_indices(x: Any, kernel_size: Any, stride: Any = (), padding: Any = (0,), dilation: Any = (1,),
                             ceil_mode: bool = False) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The pooled values and their int64 indices: contiguous, or channels-last for an NHWC-strided input."""
    if _same_float(x) is None or x.dim() not in (3, 4) or 0 in x.shape:
        return None
    kernel = _pair(kernel_size)
    steps = _pair(stride, kernel)
    pads = _pair(padding)
    dilations = _pair(dilation)
    if kernel is None or steps is None or pads is None or dilations is None:
        return None
    sizes = []
    for i in range(2):
        k, s, p, d = kernel[i], steps[i], pads[i], dilations[i]
        if k < 1 or s < 1 or d < 1 or p < 0 or p > k // 2 or p > ((k - 1) * d + 1) // 2:
            return None  # torch refuses (or a version of it may): its kernel says why
        sizes.append(_pooled(x.shape[-2 + i], k, p, s, d, bool(ceil_mode)))
    if min(sizes) < 1:
        return None
    shape = [*x.shape[:-2], *sizes]
    if x.dim() == 4 and _strides_like_channels_last(x.shape, x.stride()):
        strides = _channels_last_strides(shape)
        return _new(shape, strides, x.dtype), _new(shape, strides, torch.int64)
    return _contiguous(shape, x.dtype), _contiguous(shape, torch.int64)
