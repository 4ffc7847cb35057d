"""Shape functions of the in-place fills that initialise weights and of the factories
(randn, randint, arange, linspace, eye) on meta."""

from __future__ import annotations

import math
from typing import Any

import torch

from .layout import (
    _contiguous,
    _meta,
)
from .mode import (
    _COMPARABLE,
    _FLOATS,
    _NUMBERS,
    aten,
    shape_fn,
)

# ---- in-place fills (initialising weights on meta) ----------------------------------------
# On meta there is nothing to fill: these return ``self`` after torch's own argument checks.


def _fillable(t: Any) -> bool:
    return _meta(t) and t.dtype in _FLOATS


@shape_fn(aten.uniform_.default)
def _uniform(self: Any, low: float = 0.0, high: float = 1.0, *, generator: Any = None) -> torch.Tensor | None:
    return self if _fillable(self) and low <= high else None


@shape_fn(aten.normal_.default)
def _normal(self: Any, mean: float = 0.0, std: float = 1.0, *, generator: Any = None) -> torch.Tensor | None:
    return self if _fillable(self) and std >= 0 else None


@shape_fn(aten.fill_.Scalar)
def _fill(self: Any, value: Any) -> torch.Tensor | None:
    return self if _fillable(self) and isinstance(value, _NUMBERS) else None


@shape_fn(aten.zero_.default)
def _zero(self: Any) -> torch.Tensor | None:
    return self if _fillable(self) else None


# ---- factories (tensors made from sizes, on meta) ------------------------------------------
# On meta, torch makes these with Python reference kernels whose argument checks import sympy (about
# 0.3 s), and ``randn`` with a generator argument imports torch._dynamo (about 0.9 s): a model that
# draws its position embeddings with ``torch.randn`` paid that when built on meta. The output is a
# contiguous tensor of the given size, in the requested dtype or torch's default.

_META = torch.device("meta")


def _factory(layout: Any, device: Any, pin_memory: Any) -> bool:
    """A plain strided tensor on meta is asked for."""
    return device == _META and layout in (None, torch.strided) and not pin_memory


def _made(size: Any, dtype: torch.dtype) -> torch.Tensor | None:
    """A contiguous meta tensor of ``size``, or ``None`` (torch's kernel) for a size that is not plain
    non-negative integers."""
    sizes = list(size)
    return _contiguous(sizes, dtype) if all(type(s) is int and s >= 0 for s in sizes) else None


@shape_fn(aten.randn.default, aten.randn.generator)
def _randn(size: Any, *, generator: Any = None, dtype: Any = None, layout: Any = None, device: Any = None,
           pin_memory: Any = None) -> torch.Tensor | None:
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not _factory(layout, device, pin_memory) or dtype not in _FLOATS:
        return None
    return _made(size, dtype)


@shape_fn(aten.randint.default, aten.randint.low)
def _randint(*args: Any, generator: Any = None, dtype: Any = None, layout: Any = None, device: Any = None,
             pin_memory: Any = None) -> torch.Tensor | None:
    low, high, size = (0, *args) if len(args) == 2 else args
    dtype = torch.int64 if dtype is None else dtype
    if not _factory(layout, device, pin_memory) or dtype not in (torch.int64, torch.int32):
        return None
    if type(low) is not int or type(high) is not int or low >= high:
        return None
    return _made(size, dtype)


def _number(x: Any) -> bool:
    return type(x) in (int, float) and x == x and abs(x) != float("inf")


@shape_fn(aten.arange.default, aten.arange.start, aten.arange.start_step)
def _arange(*args: Any, dtype: Any = None, layout: Any = None, device: Any = None, pin_memory: Any = None) -> torch.Tensor | None:
    start, end, step = (0, args[0], 1) if len(args) == 1 else (*args, 1) if len(args) == 2 else args
    if not all(_number(x) for x in (start, end, step)) or step == 0:
        return None
    integers = all(type(x) is int for x in (start, end, step))
    if dtype is None:
        dtype = torch.int64 if integers else torch.get_default_dtype()
    if not _factory(layout, device, pin_memory) or not (dtype in _FLOATS or (integers and dtype == torch.int64)):
        return None
    if (end - start) * step < 0:
        return None  # torch refuses a step that points away from the end
    length = -((start - end) // step) if integers else math.ceil((end - start) / step)
    return _contiguous([length], dtype)


@shape_fn(aten.linspace.default)
def _linspace(start: Any, end: Any, steps: int, *, dtype: Any = None, layout: Any = None, device: Any = None,
              pin_memory: Any = None) -> torch.Tensor | None:
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not _factory(layout, device, pin_memory) or dtype not in _FLOATS:
        return None
    if not (_number(start) and _number(end)) or type(steps) is not int or steps < 0:
        return None
    return _contiguous([steps], dtype)


@shape_fn(aten.eye.default, aten.eye.m)
def _eye(n: int, *rest: Any, dtype: Any = None, layout: Any = None, device: Any = None, pin_memory: Any = None) -> torch.Tensor | None:
    m = rest[0] if rest else n
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not _factory(layout, device, pin_memory) or dtype not in _COMPARABLE:
        return None
    return _made([n, m], dtype)
