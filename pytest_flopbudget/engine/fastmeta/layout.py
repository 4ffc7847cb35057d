"""Strides, layouts and broadcasting: the output layout torch's kernels give, reproduced."""

from __future__ import annotations

from typing import Any

import torch

from .mode import (
    _FLOATS,
    _LOW,
    _PLAIN,
)

# ---- layouts ----------------------------------------------------------------------------


def _meta(t: Any) -> bool:
    """A plain (no subclass dispatch) strided meta tensor, not complex."""
    return type(t) in _PLAIN and t.is_meta and t.layout == torch.strided


def _contiguous_strides(shape: Any) -> list[int]:
    strides = [1] * len(shape)
    acc = 1
    for i in range(len(shape) - 1, -1, -1):
        strides[i] = acc
        acc *= max(shape[i], 1)
    return strides


def _new(shape: Any, strides: Any, dtype: torch.dtype) -> torch.Tensor:
    return torch.empty_strided(shape, strides, dtype=dtype, device="meta")


def _contiguous(shape: Any, dtype: torch.dtype) -> torch.Tensor:
    return torch.empty_strided(shape, _contiguous_strides(shape), dtype=dtype, device="meta")


def _is_contiguous(shape: Any, strides: Any) -> bool:
    """torch's definition: size-1 dimensions are ignored, an empty tensor is contiguous."""
    if 0 in shape:
        return True
    expected = 1
    for size, stride in zip(reversed(shape), reversed(strides)):
        if size == 1:
            continue
        if stride != expected:
            return False
        expected *= size
    return True


def _is_channels_last(shape: Any, strides: Any) -> bool:
    if len(shape) != 4:
        return False
    expected = 1
    for i in (1, 3, 2, 0):
        if shape[i] == 1:
            continue
        if strides[i] != expected:
            return False
        expected *= shape[i]
    return True


def _plain_contiguous(t: torch.Tensor) -> bool:
    """Contiguous, and not also channels-last (a 4-d tensor can be both; torch then picks by other rules)."""
    return t.is_contiguous() and not (t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last))


def _canonical(t: torch.Tensor) -> bool:
    """Strides exactly those of a new contiguous tensor (size-1 dimensions included), so that
    the rules "preserve the input's strides" and "return a contiguous tensor" agree."""
    return t.stride() == tuple(_contiguous_strides(t.shape))


def _dense(shape: Any, strides: Any) -> bool:
    """Non-overlapping and dense (torch's is_non_overlapping_and_dense)."""
    expected = 1
    for stride, size in sorted((st, sz) for st, sz in zip(strides, shape) if sz > 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _broadcast(shapes: list[Any]) -> list[int] | None:
    ndim = max(len(s) for s in shapes)
    out = [1] * ndim
    for shape in shapes:
        offset = ndim - len(shape)
        for i, size in enumerate(shape):
            j = offset + i
            if size == out[j] or size == 1:
                continue
            if out[j] != 1:
                return None  # not broadcastable: torch raises
            out[j] = size
    return out


def _expanded_strides(shape: Any, strides: Any, out: list[int]) -> list[int]:
    """Strides of ``t.expand(out)`` (torch's inferExpandGeometry)."""
    ndim, offset = len(out), len(out) - len(shape)
    result = [0] * ndim
    for i in range(ndim - 1, -1, -1):
        dim = i - offset
        if dim >= 0:
            size, stride = shape[dim], strides[dim]
        else:
            size, stride = 1, out[i + 1] * result[i + 1] if i + 1 < ndim else 1
        result[i] = 0 if size != out[i] else stride
    return result


def _should_swap(layouts: list[Any], shape: list[int], a: int, b: int) -> int:
    def ge(x: int, y: int) -> bool:
        if y == 0:
            return True
        if x == 0:
            return False
        return x >= y or x % y == 0

    for strides in layouts:
        sa, sb = strides[a], strides[b]
        if sa == 0 or sb == 0:
            continue
        if sa == sb:
            if ge(shape[b], shape[a]):
                continue
            return 1
        if ge(sb, sa):
            return -1
        if ge(sa, sb):
            return 1
    return 0


def _elementwise_strides(shape: list[int], layouts: list[Any]) -> list[int]:
    """Output strides of an elementwise operator over inputs already broadcast to ``shape``.

    torch's ``compute_elementwise_output_logical_to_physical_perm`` followed by
    ``empty_permuted``: contiguous when every input is, channels-last when every input is,
    otherwise the inputs' stride order (an insertion sort, back to front).
    """
    ndim = len(shape)
    if ndim <= 1:
        return [1] * ndim
    contiguous = all(_is_contiguous(shape, s) for s in layouts)
    channels_last = all(_is_channels_last(shape, s) for s in layouts)
    if contiguous and not channels_last:
        return _contiguous_strides(shape)
    if channels_last and not contiguous:
        perm = [0, *range(2, ndim), 1]
    else:
        perm = list(range(ndim - 1, -1, -1))
        for i in range(1, ndim):
            dim1 = i
            for dim0 in range(i - 1, -1, -1):
                comparison = _should_swap(layouts, shape, perm[dim0], perm[dim1])
                if comparison > 0:
                    perm[dim0], perm[dim1] = perm[dim1], perm[dim0]
                    dim1 = dim0
                elif comparison < 0:
                    break
        perm.reverse()
    physical = _contiguous_strides([shape[p] for p in perm])
    strides = [0] * ndim
    for i, p in enumerate(perm):
        strides[p] = physical[i]
    return strides


def _elementwise(tensors: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor | None:
    """A new meta tensor for an elementwise result over ``tensors`` (broadcast together)."""
    if tensors[0].dtype in _LOW and not all(_dense(t.shape, t.stride()) for t in tensors):
        return None  # torch first copies such inputs to float32 in a layout of its own
    shapes = [t.shape for t in tensors]
    first = shapes[0]
    if all(s == first for s in shapes):
        if len(tensors) == 1 or all(t.is_contiguous() for t in tensors):
            if len(first) <= 1 or _plain_contiguous(tensors[0]):
                return _contiguous(first, dtype)
        out = list(first)
        layouts: list[Any] = [t.stride() for t in tensors]
    else:
        wide = _broadcast(shapes)
        if wide is None:
            return None
        out = wide
        # (a torch.Size never equals the list ``out``: every input takes the expanded strides)
        layouts = [_expanded_strides(t.shape, t.stride(), out) for t in tensors]
    return _new(out, _elementwise_strides(out, layouts), dtype)


def _same_float(*tensors: Any) -> torch.dtype | None:
    dtype: torch.dtype = tensors[0].dtype
    if dtype not in _FLOATS or not all(_meta(t) and t.dtype == dtype for t in tensors):
        return None
    return dtype


def _dim(dim: int, ndim: int) -> int | None:
    span = max(ndim, 1)
    if not -span <= dim < span:
        return None
    return dim % span


def _strides_like_channels_last(shape: Any, strides: Any) -> bool:
    """torch's suggest_memory_format() test for a 4-d tensor (NHWC-ordered strides)."""
    if len(shape) != 4 or strides[1] == 0:
        return False
    least = 0
    for d in (1, 3, 2, 0):
        if shape[d] == 0 or strides[d] < least or (d == 0 and least == strides[1]):
            return False
        least = strides[d] * shape[d]
    return True


def _channels_last_strides(shape: Any) -> list[int]:
    n, c, h, w = shape
    return [h * w * c, 1, w * c, c]
