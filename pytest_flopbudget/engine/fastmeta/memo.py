"""Outputs of torch's slow meta kernels, remembered by the layout of their inputs.

Where no shape function of this package covers a call (a product of two strided views, ``tril``,
``cumsum``, ``floor_divide``, ...), torch computes its meta output with a Python reference kernel:
about 0.1-0.6 ms a call. A model repeats the same calls layer after layer and step after step, with
inputs of the same shapes, strides and dtypes, and a meta kernel's output depends on nothing else
(there are no values on meta). :func:`run` calls the kernel once per distinct input layout and makes
later outputs with ``torch.empty_strided`` (a few microseconds).

Only calls that return new tensors are remembered (the schema says no output aliases an input and
nothing is written in place), only when every argument is a plain meta tensor (strided, not complex),
a list of them, or a hashable constant, and only for operators whose first call took longer than
:data:`SLOW_S` (torch's C++ meta kernels are faster than the lookup). The key holds the default dtype
too (a Python float promotes an integer tensor to it). ``tests/test_fastmeta.py`` checks that
remembered outputs equal the kernel's.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from pytest_flopbudget.engine.context import CONSTANT_TYPES

__all__ = ["SLOW_S", "clear", "run"]

SLOW_S = 30e-6  # a first call slower than this marks the operator's meta kernel as worth remembering
_LIMIT = 20_000  # entries kept before the memo starts afresh (each a few hundred bytes)
_PLAIN = (torch.Tensor, torch.nn.Parameter)
_CONSTANTS = tuple(CONSTANT_TYPES)

_slow: dict[Any, bool] = {}  # operator -> whether its meta kernel is slow and its outputs fresh
_outputs: dict[tuple[Any, ...], tuple[Any, ...] | None] = {}  # key -> layouts of the outputs (None: not one to remember)


def clear() -> None:
    _slow.clear()
    _outputs.clear()


def _tensor_key(t: torch.Tensor) -> tuple[Any, ...] | None:
    if type(t) not in _PLAIN or not t.is_meta or t.layout is not torch.strided or t.is_complex():
        return None
    return (tuple(t.shape), t.stride(), t.dtype, t.storage_offset())


def _value_key(value: Any) -> Any:
    """A hashable stand-in for one argument, or raises ``TypeError`` where the call is not one to remember."""
    if isinstance(value, torch.Tensor):
        key = _tensor_key(value)
        if key is None:
            raise TypeError
        return key
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, *(_value_key(v) for v in value))
    if isinstance(value, _CONSTANTS):
        return (type(value), value)
    raise TypeError


def _fresh(func: Any) -> bool:
    """Whether ``func``'s schema promises new outputs: no argument written, no output an alias."""
    schema = func._schema
    if any(a.alias_info is not None for a in schema.arguments):
        return False
    return bool(schema.returns) and all(r.alias_info is None for r in schema.returns)


def _layouts(out: Any) -> tuple[Any, ...] | None:
    items = out if isinstance(out, tuple) else (out,)
    layouts = []
    for t in items:
        if not isinstance(t, torch.Tensor) or type(t) not in _PLAIN or not t.is_meta or t.layout is not torch.strided:
            return None
        layouts.append((tuple(t.shape), t.stride(), t.dtype, t.storage_offset()))
    return tuple(layouts)


def _make(layouts: tuple[Any, ...], single: bool) -> Any:
    outs = tuple(
        torch.empty_strided(shape, stride, dtype=dtype, device="meta").as_strided(shape, stride, offset) if offset
        else torch.empty_strided(shape, stride, dtype=dtype, device="meta")
        for shape, stride, dtype, offset in layouts
    )
    return outs[0] if single else outs


def run(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``func(*args, **kwargs)`` on meta, from the memo where this layout of inputs was seen before."""
    slow = _slow.get(func)
    first = args[0] if args else None
    if isinstance(first, (list, tuple)) and first:
        first = first[0]
    if slow is False or not (isinstance(first, torch.Tensor) and first.is_meta):  # factories: the device may vary
        return func(*args, **kwargs)
    try:
        key: tuple[Any, ...] | None = (
            func, torch.get_default_dtype(), _value_key(args), _value_key(tuple(sorted(kwargs.items()))) if kwargs else None,
        )
    except TypeError:
        key = None
    if key is not None and slow:
        layouts = _outputs.get(key)
        if layouts is not None:
            return _make(layouts[1:], layouts[0])
    start = time.perf_counter()
    out = func(*args, **kwargs)
    if slow is None:
        slow = _slow[func] = time.perf_counter() - start > SLOW_S and _fresh(func)
    if slow and key is not None:
        layouts = _layouts(out)
        if layouts is not None:
            if len(_outputs) >= _LIMIT:
                _outputs.clear()
            _outputs[key] = (not isinstance(out, tuple), *layouts)
    return out
