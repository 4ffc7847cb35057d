"""Shape functions of normalisation, softmax and reductions."""

from __future__ import annotations

from typing import Any

import torch

from .layout import (
    _canonical,
    _contiguous,
    _dense,
    _dim,
    _meta,
    _new,
    _same_float,
)
from .mode import (
    aten,
    shape_fn,
)

# ---- normalisation, softmax, reductions -------------------------------------------------


@shape_fn(aten.native_layer_norm.default)
def _layer_norm(x: Any, normalized_shape: Any, weight: Any, bias: Any, eps: float) -> tuple[Any, ...] | None:
    params = [t for t in (weight, bias) if t is not None]
    # torch's kernel makes its input contiguous first: any layout gives contiguous outputs (a permuted
    # channels-last input, ConvNeXt's; its Python kernel's first call imports torch._dynamo, 1.5 s),
    # except a contiguous input whose size-1 dimensions have other strides, which it keeps
    if _same_float(x, *params) is None or (not _canonical(x) and x.is_contiguous()):
        return None
    axis = x.dim() - len(normalized_shape)
    if axis < 0 or list(x.shape[axis:]) != list(normalized_shape):
        return None
    if any(list(t.shape) != list(normalized_shape) for t in params):
        return None
    stat_shape = [*x.shape[:axis], *([1] * len(normalized_shape))]
    stat_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    return _contiguous(x.shape, x.dtype), _contiguous(stat_shape, stat_dtype), _contiguous(stat_shape, stat_dtype)


@shape_fn(aten.native_layer_norm_backward.default)
def _layer_norm_backward(grad: Any, x: Any, normalized_shape: Any, mean: Any, rstd: Any, weight: Any, bias: Any,
                         mask: Any) -> tuple[Any, ...] | None:
    """Gradients of input, weight and bias (each where ``mask`` asks and the tensor exists), new and contiguous."""
    params = [t for t in (weight, bias) if t is not None]
    if _same_float(grad, x, *params) is None or not (_canonical(grad) and _canonical(x)) or grad.shape != x.shape:
        return None
    axis = x.dim() - len(normalized_shape)
    if axis < 0 or list(x.shape[axis:]) != list(normalized_shape) or len(mask) != 3:
        return None
    if any(list(t.shape) != list(normalized_shape) for t in params) or not (_meta(mean) and _meta(rstd)):
        return None
    return (
        _contiguous(x.shape, x.dtype) if mask[0] else None,
        _contiguous(weight.shape, weight.dtype) if mask[1] and weight is not None else None,
        _contiguous(bias.shape, bias.dtype) if mask[2] and bias is not None else None,
    )


@shape_fn(aten.native_group_norm.default)
def _group_norm(x: Any, weight: Any, bias: Any, n: int, c: int, hw: int, group: int, eps: float) -> tuple[Any, ...] | None:
    params = [t for t in (weight, bias) if t is not None]
    if _same_float(x, *params) is None or not _canonical(x) or x.dim() < 2:
        return None
    if x.shape[0] != n or x.shape[1] != c or x.numel() != n * c * hw or group <= 0 or c % group:
        return None
    if any(list(t.shape) != [c] for t in params):
        return None
    return _contiguous(x.shape, x.dtype), _contiguous((n, group), x.dtype), _contiguous((n, group), x.dtype)




@shape_fn(aten.native_batch_norm.default)
def _batch_norm(x: Any, weight: Any, bias: Any, running_mean: Any, running_var: Any, training: bool, momentum: float,
                eps: float) -> tuple[Any, ...] | None:
    """Output laid out as the input (contiguous, or dense without size-1 dimensions), saved mean and inverse deviation of shape (C,) in the
    accumulation dtype; the running statistics' in-place update holds no data on meta. (torch's meta
    path here is a Python decomposition whose first call imports torch._dynamo, about a second.)"""
    params = [t for t in (weight, bias, running_mean, running_var) if t is not None]
    if _same_float(x, *params) is None or x.dim() < 2:
        return None
    if not (_canonical(x) or (1 not in x.shape and _dense(x.shape, x.stride()))):  # size-1 dims: torch's order differs
        return None
    c = x.shape[1]
    if any(list(t.shape) != [c] for t in params) or (training and x.numel() <= c):  # one value per channel: torch raises
        return None
    stat_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    return _new(x.shape, x.stride(), x.dtype), _contiguous((c,), stat_dtype), _contiguous((c,), stat_dtype)


@shape_fn(aten._softmax.default, aten._log_softmax.default)
def _softmax(x: Any, dim: int, half_to_float: bool) -> torch.Tensor | None:
    if half_to_float or _same_float(x) is None or not _canonical(x) or _dim(dim, x.dim()) is None:
        return None
    return _contiguous(x.shape, x.dtype)


@shape_fn(aten._safe_softmax.default)
def _safe_softmax(x: Any, dim: int, dtype: Any = None) -> torch.Tensor | None:
    if dtype is not None:
        return None
    out: torch.Tensor | None = _softmax(x, dim, False)
    return out


def _reduced(x: Any, dims: Any, keepdim: bool) -> list[int] | None:
    """Shape of ``x`` reduced over ``dims`` (None or [] meaning every dimension)."""
    ndim = x.dim()
    if dims is None or len(dims) == 0:
        axes = set(range(ndim))
    else:
        axes = set()
        for d in dims:
            axis = _dim(d, ndim)
            if axis is None or axis in axes:
                return None
            axes.add(axis)
    if ndim == 0:
        return []
    return [1 if i in axes else s for i, s in enumerate(x.shape) if keepdim or i not in axes]


def _reduction(x: Any, dims: Any, keepdim: bool, dtype: Any = None) -> torch.Tensor | None:
    # torch reduces into a new contiguous tensor whatever the input's layout
    if dtype is not None or _same_float(x) is None or 0 in x.shape:
        return None
    shape = _reduced(x, dims, keepdim)
    return None if shape is None else _contiguous(shape, x.dtype)


@shape_fn(aten.sum.dim_IntList, aten.mean.dim)
def _sum(x: Any, dim: Any, keepdim: bool = False, *, dtype: Any = None) -> torch.Tensor | None:
    return _reduction(x, dim, keepdim, dtype)


@shape_fn(aten.sum.default)
def _sum_all(x: Any, *, dtype: Any = None) -> torch.Tensor | None:
    return _reduction(x, None, False, dtype)


@shape_fn(aten.amax.default, aten.amin.default)
def _amax(x: Any, dim: Any = (), keepdim: bool = False) -> torch.Tensor | None:
    return _reduction(x, dim, keepdim)


@shape_fn(aten.linalg_vector_norm.default)
def _vector_norm(x: Any, ord: Any = 2, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> torch.Tensor | None:
    if not isinstance(ord, (int, float)) or ord != ord:
        return None
    return _reduction(x, dim, keepdim, dtype)


@shape_fn(aten.argmin.default, aten.argmax.default)
def _argmin(x: Any, dim: Any = None, keepdim: bool = False) -> torch.Tensor | None:
    if dim is None or _same_float(x) is None or 0 in x.shape:
        return None
    shape = _reduced(x, [dim], keepdim)
    return None if shape is None else _contiguous(shape, torch.int64)


@shape_fn(aten.cumsum.default)
def _cumsum(x: Any, dim: int, *, dtype: Any = None) -> torch.Tensor | None:
    if dtype is not None or _same_float(x) is None or not _canonical(x) or _dim(dim, x.dim()) is None:
        return None
    return _contiguous(x.shape, x.dtype)
