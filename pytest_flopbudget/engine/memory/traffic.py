"""Bytes moved by one operator call: the bytes of the tensors it reads plus those it writes.

The convention (the unfused lower bound of memory traffic, see docs/memory.md):

- an operator reads each distinct tensor input once, over the elements the tensor spans (a broadcast,
  stride-0 dimension is read once, not per use), and writes each output once;
- views (operators whose outputs alias an input and write nothing: ``view``, ``transpose``,
  ``expand``, ``slice``, ...) move nothing;
- an in-place operator reads its inputs and writes the tensor it changes (``add_(a, b)``: reads
  ``a`` and ``b``, writes ``a``); one that only overwrites (``copy_``, ``fill_``, ``zero_``, the
  random fills) does not read its destination; an ``out=`` tensor is written, not read;
- a lookup reads the rows it gathers, not its whole table (``embedding``, ``index_select``,
  ``gather``, ``take``): the index tensor plus one row of the table per index;
- ``empty`` and its kin allocate without writing: nothing moved.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from math import prod
from typing import Any

import torch

from pytest_flopbudget.results.result import OpCost

# Operators that overwrite their first argument without reading it.
WRITE_ONLY = frozenset(
    f"aten::{name}_"
    for name in ("copy", "fill", "zero", "uniform", "normal", "random", "bernoulli", "exponential", "geometric",
                 "cauchy", "log_normal", "set")
)
# Lookups: the table argument, the index argument; the table is read one output row per index.
LOOKUPS = {"aten::embedding": (0, 1), "aten::index_select": (0, 2), "aten::gather": (0, 2), "aten::take": (0, 1)}
# Metadata only: nothing read.
METADATA = frozenset(f"aten::{name}" for name in (
    "numel", "size", "stride", "dim", "sym_size", "sym_numel", "sym_stride", "sym_storage_offset",
    "storage_offset", "is_contiguous", "is_same_size", "is_complex", "is_floating_point", "is_nonzero_",
))
# Views whose schema does not say so: ``_unsafe_view`` (what ``reshape``/``flatten`` return after the
# copy of a non-contiguous input, or of a matmul's output) aliases its input.
UNANNOTATED_VIEWS = frozenset({"aten::_unsafe_view"})
# Allocation without a write.
ALLOCATES = frozenset({"aten::empty", "aten::empty_like", "aten::empty_strided", "aten::new_empty",
                       "aten::new_empty_strided", "aten::empty_permuted"})


_DTYPE_NAMES: dict[tuple[Any, str], str] = {}


def dtype_name(dtype: Any, prefix: str = "") -> str:
    """``float32`` for ``torch.float32`` (``prefix`` put before it), one ``str`` per dtype and process."""
    try:
        return _DTYPE_NAMES[dtype, prefix]
    except KeyError:
        name = _DTYPE_NAMES[dtype, prefix] = prefix + str(dtype).removeprefix("torch.")
        return name


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes of the elements ``t`` spans: its elements, a stride-0 (broadcast) dimension counted once."""
    n = t.numel()
    if n:
        strides = t.stride()
        if 0 in strides:
            n = prod(size for size, stride in zip(t.shape, strides) if stride)
    return n * t.itemsize


@dataclass(frozen=True)
class _Kind:
    view: bool  # outputs alias inputs, nothing written
    write_args: tuple[int, ...]  # positional arguments the operator writes (in-place self, foreach lists)
    out_names: tuple[str, ...]  # kwarg-only arguments it writes (out=): written, not read
    write_only: bool  # its first written argument is overwritten, not read
    fresh: bool  # its outputs are new tensors (neither views nor written arguments)


_KINDS: dict[Any, _Kind] = {}


def kind_of(func: Any, operator: str) -> _Kind:
    """What an aten overload's schema says about aliasing, cached per overload."""
    try:
        return _KINDS[func]
    except KeyError:
        pass
    schema = func._schema
    write_args = tuple(i for i, a in enumerate(schema.arguments) if a.alias_info is not None and a.alias_info.is_write and not a.kwarg_only)
    out_names = tuple(a.name for a in schema.arguments if a.alias_info is not None and a.alias_info.is_write and a.kwarg_only)
    aliased = [r.alias_info is not None for r in schema.returns]
    view = (bool(aliased) and all(aliased) and not write_args and not out_names) or operator in UNANNOTATED_VIEWS
    fresh = not write_args and not out_names and not any(aliased) and operator not in UNANNOTATED_VIEWS
    kind = _Kind(view, write_args, out_names, operator in WRITE_ONLY, fresh)
    _KINDS[func] = kind
    return kind


def _tensors(value: Any) -> Iterable[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, torch.Tensor):
                yield item


def _first_dtype(inputs: list[torch.Tensor], outputs: list[torch.Tensor]) -> str:
    for t in inputs:
        if t.is_floating_point() or t.is_complex():
            return dtype_name(t.dtype)
    return dtype_name(outputs[0].dtype) if outputs else (dtype_name(inputs[0].dtype) if inputs else "")


def call_bytes(func: Any, operator: str, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any], out: Any) -> tuple[str, int, int] | None:
    """``(dtype, bytes read, bytes written)`` of one dispatched call (``func`` an aten overload, or None for
    a composite seen whole, whose inputs are ``args``); None for a view, which moves nothing."""
    kind = kind_of(func, operator) if func is not None else None
    if (kind is not None and kind.view) or operator in METADATA:
        return None
    skip: set[int] = set()
    out_names: tuple[str, ...] = ()
    if kind is not None:
        out_names = kind.out_names
        for name in out_names:
            for t in _tensors(kwargs.get(name)):
                skip.add(id(t))
        if kind.write_only and kind.write_args and kind.write_args[0] < len(args):
            for t in _tensors(args[kind.write_args[0]]):
                skip.add(id(t))
    lookup = LOOKUPS.get(operator)
    table = lookup[0] if lookup is not None else -1
    values = list(args)
    if kwargs:
        values.extend(v for k, v in kwargs.items() if k not in out_names)
    seen: set[int] = set()
    reads: list[torch.Tensor] = []
    read = 0
    for position, value in enumerate(values):
        if isinstance(value, torch.Tensor):
            items: Any = (value,)
        elif isinstance(value, (list, tuple)):
            items = value
        else:
            continue
        for t in items:
            if not isinstance(t, torch.Tensor):
                continue
            key = id(t)
            if key in seen:
                continue
            seen.add(key)
            if key in skip:
                continue
            reads.append(t)
            if position != table:  # the table of a lookup: priced below from the rows gathered
                read += tensor_bytes(t)
    if isinstance(out, torch.Tensor):
        outputs = [out]
    elif isinstance(out, (list, tuple)):
        outputs = [t for t in out if isinstance(t, torch.Tensor)]
    else:
        outputs = []
    if lookup is not None and outputs and table < len(values) and isinstance(values[table], torch.Tensor):
        read += outputs[0].numel() * values[table].element_size()
    if operator in ALLOCATES:
        return _first_dtype(reads, outputs), 0, 0
    if len(outputs) == 1:
        written = tensor_bytes(outputs[0])
    else:
        written = 0
        counted: set[int] = set()
        for t in outputs:
            if id(t) not in counted:
                counted.add(id(t))
                written += tensor_bytes(t)
        if kind is not None and not outputs:  # a void in-place operator (the _foreach_ family, fused optimizers)
            for i in kind.write_args:
                if i < len(args):
                    for t in _tensors(args[i]):
                        if id(t) not in counted:
                            counted.add(id(t))
                            written += tensor_bytes(t)
    return _first_dtype(reads, outputs), read, written


# ---- the trace's graph nodes ---------------------------------------------------------------------

_VIEWS: dict[str, bool] = {}


def _is_view(kind: str) -> bool:
    """Whether every schema of ``kind`` returns aliases of its inputs and writes nothing."""
    known = _VIEWS.get(kind)
    if known is None:
        try:
            schemas = torch._C._jit_get_schemas_for_operator(kind)
        except Exception:
            schemas = []
        known = bool(schemas) and all(
            s.returns and all(r.alias_info is not None and not r.alias_info.is_write for r in s.returns)
            and not any(a.alias_info is not None and a.alias_info.is_write for a in s.arguments)
            for s in schemas
        )
        _VIEWS[kind] = known
    return known


_ITEM_SIZE: dict[str, int] = {}


def _item_size(scalar: str) -> int:
    size = _ITEM_SIZE.get(scalar)
    if size is None:
        try:
            size = getattr(torch, scalar.lower() if scalar != "Half" else "float16").itemsize
        except Exception:
            size = {"Float": 4, "Double": 8, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Bool": 1, "Byte": 1,
                    "Char": 1, "Short": 2, "ComplexFloat": 8, "ComplexDouble": 16}.get(scalar, 4)
        _ITEM_SIZE[scalar] = size
    return size


_SCALAR = {"Float": "float32", "Double": "float64", "Half": "float16", "BFloat16": "bfloat16", "Long": "int64",
           "Int": "int32", "Bool": "bool", "Byte": "uint8", "Char": "int8", "Short": "int16"}


def _value_bytes(value: Any) -> tuple[int, str] | None:
    kind = value.type()
    if not isinstance(kind, torch._C.TensorType):
        return None
    sizes, scalar = kind.sizes(), kind.scalarType()
    if sizes is None or scalar is None:
        return None
    strides = kind.strides()
    if strides is not None and 0 in strides:
        n = prod(size for size, stride in zip(sizes, strides) if stride)
    else:
        n = prod(sizes)
    return n * _item_size(scalar), scalar


def node_bytes(node: Any, operator: str) -> tuple[str, int, int] | None:
    """``(dtype, bytes read, bytes written)`` of a TorchScript graph node; None for a view, or a ``prim::``
    node (constants, tuple and list construction), which moves nothing."""
    if operator.startswith("prim::") or operator in METADATA or _is_view(node.kind()):
        return None
    inputs = list(node.inputs())
    lookup = LOOKUPS.get(operator)
    read, dtype, first = 0, "", ""
    seen: set[int] = set()
    for position, value in enumerate(inputs):
        if value.unique() in seen:
            continue
        seen.add(value.unique())
        found = _value_bytes(value)
        if found is None:
            if value.type().kind() == "ListType":  # a tensor list (cat, stack)
                for item in value.node().inputs() if value.node().kind() == "prim::ListConstruct" else ():
                    got = _value_bytes(item)
                    if got is not None:
                        read += got[0]
                        first = first or got[1]
                        if not dtype and got[1] in ("Float", "Double", "Half", "BFloat16"):
                            dtype = got[1]
            continue
        nbytes, scalar = found
        first = first or scalar
        if not dtype and scalar in ("Float", "Double", "Half", "BFloat16"):
            dtype = scalar
        if lookup is not None and position == lookup[0]:
            continue
        if position == 0 and operator in WRITE_ONLY:
            continue
        read += nbytes
    written = 0
    out_scalar = ""
    for value in node.outputs():
        found = _value_bytes(value)
        if found is not None:
            written += found[0]
            out_scalar = out_scalar or found[1]
            if lookup is not None and lookup[0] < len(inputs):
                table = _value_bytes(inputs[lookup[0]])
                sizes = value.type().sizes()
                if table is not None and sizes is not None:
                    read += prod(sizes) * _item_size(table[1])
                lookup = None
    if operator in ALLOCATES:
        written = 0
    scalar = dtype or out_scalar or first
    return _SCALAR.get(scalar, scalar.lower()), read, written


# ---- the running record ----------------------------------------------------------------------------


CostKey = tuple[str, str, str, int, int, int]  # operator, module, dtype, MACs, bytes read, bytes written


def record(calls: dict[CostKey, int], operator: str, module: str, dtype: str, macs: int, read: int, written: int) -> None:
    """One more call with these per-call figures (``Tally.costs``: identical calls merged, counted)."""
    key = (operator, module, dtype, macs, read, written)
    calls[key] = calls.get(key, 0) + 1


# Entries made before, by their fields: an OpCost is frozen, so a repeated count (or a layer seen in
# another count) shares the one already made instead of building it again (a frozen dataclass sets
# each field through object.__setattr__: a few microseconds an entry, a tenth of a small CNN's count).
_ENTRIES: dict[tuple[CostKey, str, int], OpCost] = {}
_ENTRIES_LIMIT = 50_000


def op_costs(calls: dict[CostKey, int], phase: str = "") -> tuple[OpCost, ...]:
    """The recorded calls as :class:`OpCost` entries, sorted."""
    entries = []
    for key, n in sorted(calls.items()):
        entry = _ENTRIES.get((key, phase, n))
        if entry is None:
            op, module, dtype, macs, read, written = key
            entry = OpCost(operator=op, module=module, phase=phase, dtype=dtype, macs=macs, bytes_read=read,
                           bytes_written=written, calls=n)
            if len(_ENTRIES) >= _ENTRIES_LIMIT:
                _ENTRIES.clear()
            _ENTRIES[key, phase, n] = entry
        entries.append(entry)
    return tuple(entries)
