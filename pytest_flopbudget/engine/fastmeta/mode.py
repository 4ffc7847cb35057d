"""Output shapes of the common operators on the ``meta`` device, without torch's Python meta kernels.

On meta, torch computes the output of almost every operator with a Python kernel
(``torch._meta_registrations``, ``torch._refs``, decompositions): about 0.1-1 ms an
operator, and the first one imports ``torch._dynamo`` (about 1 s). A count only needs
each output's shape, strides and dtype. :class:`FastMeta` is a dispatch mode that makes
the outputs of the operators that dominate transformer and convolution traces (elementwise
arithmetic with broadcasting and type promotion, matrix products, norms, softmax,
reductions, concatenation, convolutions, resizing, and the factories ``randn``, ``randint``,
``arange``, ``linspace`` and ``eye``) directly with
``torch.empty_strided(..., device="meta")`` from a shape function here, and hands every
other operator, and every case a shape function does not cover exactly (unusual strides,
mixed dtypes, integer arithmetic, non-meta tensors, ``out=``), to torch's own kernel.

Each shape function reproduces torch's meta kernel exactly (shape, strides, dtype), or
returns ``None`` to fall back; ``tests/test_fastmeta.py`` compares them with torch's
kernels over many shapes, layouts and dtypes. Views and in-place operators always take
torch's path (their outputs alias their inputs), except the in-place fills that initialise
weights (``uniform_``, ``normal_``, ``fill_``, ``zero_``), which on meta change nothing.

:func:`building` is the same mode for user code: ``with building(), torch.device("meta"):``
builds a model on meta without torch's Python kernels for its initialisation.

Under the TorchScript tracer the mode also makes meta convolutions traceable (what
:class:`~pytest_flopbudget.metadevice.MetaTraceFix` does). ``FLOPBUDGET_FAST_META=0`` in
the environment, or :func:`plain`, turns the fast path off (counts must not change:
``tests/test_fastmeta.py`` checks both paths agree on the VAR models and the layer tests).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from pytest_flopbudget.engine.fastmeta import memo
from pytest_flopbudget.engine.meta import MetaTraceFix, meta_output, traced_convolution
from pytest_flopbudget.engine.meta import meta_init as _meta_init

__all__ = [
    "FastMeta", "SHAPES", "building", "collector_paused", "enabled", "meta_init", "meta_mode", "on_meta", "plain", "shape_fn",
]

aten = torch.ops.aten

_FLOATS = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})
_LOW = frozenset({torch.float16, torch.bfloat16})  # computed in float32 by torch's kernels
_NUMBERS = (bool, int, float)
_COMPARABLE = _FLOATS | {torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool}
_PLAIN = {torch.Tensor, torch.nn.Parameter}
_off = False

ShapeFn = Callable[..., Any]
SHAPES: dict[Any, ShapeFn] = {}


def enabled() -> bool:
    """Whether meta-device counts use the fast shape functions (``FLOPBUDGET_FAST_META=0`` turns them off)."""
    return not _off and os.environ.get("FLOPBUDGET_FAST_META", "1") != "0"


@contextmanager
def plain() -> Iterator[None]:
    """Count with torch's own meta kernels only, inside this block (for cross-checks)."""
    global _off
    before, _off = _off, True
    try:
        yield
    finally:
        _off = before


@contextmanager
def meta_mode(trace_fix: bool = True) -> Iterator[None]:
    """Run a meta-device count under :class:`FastMeta`; without the fast path, under
    :class:`MetaTraceFix` (``trace_fix``) or as is."""
    if not enabled():
        with MetaTraceFix() if trace_fix else nullcontext():
            yield
        return
    with FastMeta():
        yield


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused for the block: a count allocates many small
    objects (graph nodes, their Python views), and each full collection walks torch's whole
    heap (5-7% of a count). Nothing is lost: collection resumes afterwards."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


@contextmanager
def building() -> Iterator[None]:
    """Run a block (e.g. building a model on meta) under :class:`FastMeta`; a no-op when the fast path is off."""
    with FastMeta() if enabled() else nullcontext():
        yield


@contextmanager
def on_meta() -> Iterator[None]:
    """``with on_meta(): model = Net()``: build on the ``meta`` device with the fast path on, the one
    line that replaces ``with torch.device("meta"):`` (whose weight init, e.g. ``normal_``, runs torch's
    Python meta kernels: seconds for a GPT-2 on their first use)."""
    with building(), torch.device("meta"):
        yield


@contextmanager
def meta_init() -> Iterator[None]:
    """:func:`pytest_flopbudget.engine.meta.meta_init` with the fast path on: parameters and buffers
    land on meta as they are registered, and the weight init that then runs on them is fast."""
    with building(), _meta_init():
        yield


class FastMeta(TorchDispatchMode):
    """Dispatch mode: outputs of common operators on meta tensors from the shape functions in :data:`SHAPES`."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps a mode's __torch_dispatch__ in torch._dynamo.disable by default, which
        # imports torch._dynamo on the first operator; nothing here is compiled.
        return False

    def __init__(self, budget: Any = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # torch's base class is unannotated
        self.budget = budget  # an OpBudget ticked for every operator (the trace's loop guard), or None

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        if self.budget is not None:
            self.budget.tick()
        shape_fn = SHAPES.get(func)
        if shape_fn is not None:
            out = shape_fn(*args, **kwargs) if kwargs else shape_fn(*args)
            if out is not None:
                return out
        if func is aten.convolution.default and torch._C._get_tracing_state() is not None:
            with self:  # the re-issued aten::_convolution comes back here for its shape
                return traced_convolution(args)
        kwargs = kwargs or {}
        out = meta_output(func, args, kwargs)  # operators whose meta kernel refuses valid inputs
        return memo.run(func, args, kwargs) if out is None else out


def shape_fn(*ops: Any) -> Callable[[ShapeFn], ShapeFn]:
    def add(fn: ShapeFn) -> ShapeFn:
        for op in ops:
            SHAPES[op] = fn
        return fn

    return add
