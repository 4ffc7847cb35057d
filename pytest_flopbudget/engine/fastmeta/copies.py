"""Shape functions of copies, concatenation and the ``*_like`` / ``new_*`` factories."""

from __future__ import annotations

from typing import Any

import torch

from .layout import (
    _canonical,
    _channels_last_strides,
    _contiguous,
    _dim,
    _meta,
    _new,
    _strides_like_channels_last,
)
from .mode import (
    _COMPARABLE,
    _NUMBERS,
    aten,
    shape_fn,
)

# ---- copies and concatenation -----------------------------------------------------------


@shape_fn(aten.clone.default)
def _clone(x: Any, *, memory_format: Any = None) -> torch.Tensor | None:
    if memory_format not in (None, torch.preserve_format) or not _meta(x) or not _canonical(x):
        return None
    return _contiguous(x.shape, x.dtype)


@shape_fn(aten.cat.default)
def _cat(tensors: Any, dim: int = 0) -> torch.Tensor | None:
    """torch concatenates, then copies to channels-last when every input's strides suggest it, else contiguous."""
    if not tensors or tensors[0].dtype not in _COMPARABLE or not all(_meta(t) and t.dtype == tensors[0].dtype for t in tensors):
        return None  # one dtype (torch promotes mixed ones)
    first = tensors[0]
    ndim = first.dim()
    axis = _dim(dim, ndim)
    if axis is None or ndim == 0 or (ndim == 5 and not all(_canonical(t) for t in tensors)):
        return None  # 5-d: channels_last_3d is torch's to pick
    rest = [s for i, s in enumerate(first.shape) if i != axis]
    for t in tensors:
        if t.dim() != ndim or 0 in t.shape or [s for i, s in enumerate(t.shape) if i != axis] != rest:
            return None
    shape = list(first.shape)
    shape[axis] = sum(t.shape[axis] for t in tensors)
    if all(_strides_like_channels_last(t.shape, t.stride()) for t in tensors):
        return _new(shape, _channels_last_strides(shape), first.dtype)
    return _contiguous(shape, first.dtype)


@shape_fn(aten.full_like.default, aten.zeros_like.default, aten.ones_like.default, aten.empty_like.default)
def _like(self: Any, *value: Any, dtype: Any = None, layout: Any = None, device: Any = None,
          pin_memory: Any = None, memory_format: Any = None) -> torch.Tensor | None:
    """A new tensor shaped like ``self`` (canonical contiguous ``self`` only: then every memory format agrees)."""
    if not _meta(self) or not _canonical(self) or layout not in (None, torch.strided) or pin_memory:
        return None
    if device is not None and torch.device(device).type != "meta":
        return None
    if memory_format not in (None, torch.preserve_format, torch.contiguous_format):
        return None
    if value and not isinstance(value[0], _NUMBERS):
        return None
    return _contiguous(self.shape, self.dtype if dtype is None else dtype)


@shape_fn(aten.new_zeros.default, aten.new_ones.default, aten.new_empty.default, aten.new_full.default)
def _new_like(self: Any, size: Any, *value: Any, dtype: Any = None, layout: Any = None, device: Any = None,
              pin_memory: Any = None) -> torch.Tensor | None:
    if not _meta(self) or layout not in (None, torch.strided) or pin_memory or any(s < 0 for s in size):
        return None
    if device is not None and torch.device(device).type != "meta":
        return None
    if value and not isinstance(value[0], _NUMBERS):
        return None
    return _contiguous(list(size), self.dtype if dtype is None else dtype)
