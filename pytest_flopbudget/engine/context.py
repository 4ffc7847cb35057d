"""Torch settings and model facts shared by every capture."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
import torch.nn as nn
from torch.nn.parameter import UninitializedTensorMixin  # type: ignore[attr-defined]  # torch's stubs omit it
from torch.utils._python_dispatch import TorchDispatchMode


@contextmanager
def _no_mha_fastpath() -> Iterator[None]:
    """nn.MultiheadAttention/TransformerEncoderLayer: take the regular path (the fused one hides the matmuls)."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None:
        yield
        return
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


# Values of these types are immutable constants: they hash, compare by value and hold no tensor (the state
# guard skips them, the dispatch capture and the meta-kernel memo key calls by them).
CONSTANT_TYPES: frozenset[type] = frozenset({
    int, float, bool, complex, str, type(None), torch.dtype, torch.device, torch.layout, torch.memory_format,
})


_WALK: ContextVar[tuple[nn.Module, list[tuple[str, nn.Module]]] | None] = ContextVar("flopbudget_walk", default=None)


def named_modules(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """``list(module.named_modules())``; inside :func:`one_walk` of ``module``, the list it walked."""
    held = _WALK.get()
    if held is not None and held[0] is module:
        return held[1]
    return list(module.named_modules())


def compiled_module(module: nn.Module) -> str | None:
    """The name of a ``torch.compile``d module in ``module`` (itself, or a submodule), or None."""
    for name, sub in named_modules(module):
        if sub._compiled_call_impl is not None or type(sub).__name__ == "OptimizedModule":
            return name or type(sub).__name__
    return None


def compiled_function(fn: Any) -> bool:
    """Whether ``fn`` is a ``torch.compile``d function."""
    return getattr(fn, "_torchdynamo_orig_callable", None) is not None


@contextmanager
def run_eagerly(fn: Any, module: nn.Module | None) -> Iterator[None]:
    """Compiled code (``torch.compile``) runs eagerly inside: a capture's own Python frames would
    otherwise be compiled by dynamo, graph after graph (seconds), where the eager call runs the
    operators the compiled one stands for. Only where something is compiled (dynamo is then
    imported already). Both captures and the training step count under it."""
    if not (compiled_function(fn) or (module is not None and compiled_module(module) is not None)):
        yield
        return
    with torch.compiler.set_stance("force_eager"):
        yield


@contextmanager
def one_walk(module: nn.Module | None) -> Iterator[None]:
    """Walk ``module``'s tree once for the block: the steps that prepare a count (the state guard, the
    weight swap, the meta check, the module hooks, the compiled-module check) each read it, before the model
    runs (a model of 700 modules: ~1 ms a walk). Nothing that runs after the model may use it (a pass may
    add modules)."""
    held = _WALK.get()
    if module is None or (held is not None and held[0] is module):  # (inside a walk of it already)
        yield
        return
    token = _WALK.set((module, list(module.named_modules())))
    try:
        yield
    finally:
        _WALK.reset(token)


def module_tensors(module: nn.Module) -> list[torch.Tensor]:
    """The parameters and buffers of ``module`` and its submodules (a shared one once per module)."""
    tensors: list[torch.Tensor | None] = []
    for _, sub in named_modules(module):
        if sub._parameters:
            tensors.extend(sub._parameters.values())
        if sub._buffers:
            tensors.extend(sub._buffers.values())
    return [t for t in tensors if t is not None]


def parameter_count(module: nn.Module | None) -> int:
    """Elements of the module's parameters (uninitialized lazy ones not counted)."""
    if module is None:
        return 0
    # module.parameters() summed (each module once, each parameter once: tied weights), read from the
    # modules' own stores: torch's generator builds a name for every parameter (0.2 ms on a small CNN)
    total = 0
    seen: set[int] = set()
    reached, stack = {id(module)}, [module]
    while stack:
        sub = stack.pop()
        for p in sub._parameters.values():
            if p is not None and id(p) not in seen:
                seen.add(id(p))
                if not isinstance(p, UninitializedTensorMixin):
                    total += p.numel()
        for child in sub._modules.values():
            if child is not None and id(child) not in reached:
                reached.add(id(child))
                stack.append(child)
    return total


class PlainMode(TorchDispatchMode):
    """Base of the engine's own dispatch modes: typed, and never wrapped in ``torch._dynamo.disable``
    (torch's default, whose first call imports torch._dynamo: about 1 s on a process's first count)."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # torch's base class is unannotated

