"""Shape functions of the matrix products (mm, addmm, bmm) and the embedding lookup."""

from __future__ import annotations

from typing import Any

import torch

from .layout import (
    _broadcast,
    _contiguous,
    _meta,
    _same_float,
)
from .mode import (
    aten,
    shape_fn,
)

# ---- matrix products --------------------------------------------------------------------




@shape_fn(aten.mm.default)
def _mm(a: Any, b: Any) -> torch.Tensor | None:
    if _same_float(a, b) is None or a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        return None
    return _contiguous((a.shape[0], b.shape[1]), a.dtype)


@shape_fn(aten.addmm.default)
def _addmm(bias: Any, a: Any, b: Any, *, beta: Any = 1, alpha: Any = 1) -> torch.Tensor | None:
    out: torch.Tensor | None = _mm(a, b)
    if out is None or _same_float(bias, a) is None or _broadcast([bias.shape, out.shape]) != list(out.shape):
        return None
    return out


@shape_fn(aten.bmm.default)
def _bmm(a: Any, b: Any) -> torch.Tensor | None:
    if _same_float(a, b) is None or a.dim() != 3 or b.dim() != 3:
        return None
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        return None
    return _contiguous((a.shape[0], a.shape[1], b.shape[2]), a.dtype)


@shape_fn(aten.embedding.default)
def _embedding(weight: Any, indices: Any, padding_idx: int = -1, scale_grad_by_freq: bool = False,
               sparse: bool = False) -> torch.Tensor | None:
    """Rows of ``weight`` gathered by integer ``indices``: a new contiguous ``indices.shape + (dim,)``.

    (torch's meta kernel checks its arguments with ``torch._check``, whose first call imports sympy.)"""
    if _same_float(weight) is None or weight.dim() != 2 or not _meta(indices) or indices.dim() < 1:
        return None
    if indices.dtype not in (torch.int64, torch.int32):
        return None
    return _contiguous((*indices.shape, weight.shape[1]), weight.dtype)
