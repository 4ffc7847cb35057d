"""The TorchScript capture torchprofile uses: trace one call, then price each graph node with rules.py."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, Optional

import torch
import torch.nn as nn
import torch.utils._pytree as pytree
from torchprofile.ir import Node, Variable

from .. import fastmeta, rules
from .tally import Tally, module_hooks


class NoTensorOutput(TypeError):
    """The torchprofile counter traced a model that returned no tensor: its ops would be dropped, so no count."""


def output_tensors(out: Any) -> list[torch.Tensor]:
    """Every tensor in a model's output: nested tuples, lists, dicts (HF ModelOutput) and dataclasses."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        items: Any = out.values()
    elif isinstance(out, (list, tuple)):
        items = out
    elif dataclasses.is_dataclass(out) and not isinstance(out, type):
        items = [getattr(out, f.name) for f in dataclasses.fields(out)]
    else:
        return []
    return [t for item in items for t in output_tensors(item)]


class _Bound(nn.Module):
    """``fn(*args, **kwargs)`` with the non-tensor arguments bound, taking only the tensors positionally.

    torchprofile and ``torch.jit._get_trace_graph`` refuse keyword arguments and
    nested inputs; this wrapper feeds them the flat tensors and rebuilds the call.
    """

    def __init__(self, fn: Callable[..., Any], owner: Optional[nn.Module], args: tuple, kwargs: dict) -> None:
        super().__init__()
        self.owner = owner
        self.call = fn
        leaves, self.spec = pytree.tree_flatten((args, kwargs))
        self.slots = [i for i, x in enumerate(leaves) if isinstance(x, torch.Tensor)]
        self.leaves = leaves
        self.tensors = tuple(leaves[i] for i in self.slots)
        self.kept: list[torch.Tensor] = []
        self.returned: Any = None  # type of the model's output when it held no tensor

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        leaves = list(self.leaves)
        for slot, t in zip(self.slots, tensors):
            leaves[slot] = t
        args, kwargs = pytree.tree_unflatten(leaves, self.spec)
        output = self.call(*args, **kwargs)
        out = output_tensors(output)
        if not out:
            self.returned = type(output)
        return tuple(out + self.kept)


def _constant(value: Any) -> Any:
    node = value.node()
    kind = node.kind()
    try:
        if kind == "prim::Constant":
            return value.toIValue()
        if kind == "prim::ListConstruct":
            return [_shape_of(v) if isinstance(v.type(), torch._C.TensorType) else v.toIValue() for v in node.inputs()]
    except Exception:
        return None
    return None


def _shape_of(value: Any) -> Optional[list[int]]:
    try:
        return value.type().sizes()
    except Exception:
        return None


def _variable(value: Any) -> Variable:
    kind = value.type()
    if isinstance(kind, torch._C.TensorType):
        return Variable(name=value.debugName(), dtype=str(kind.scalarType() or "undefined"), shape=_shape_of(value))
    return Variable(name=value.debugName(), dtype=str(kind), value=_constant(value))


def _has_conv(module: Optional[nn.Module]) -> bool:
    return module is None or any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules())


@contextmanager
def _no_tracer_warnings() -> Iterator[None]:
    """TracerWarnings (and any other warning) are not shown; the tracer does not even make them."""
    before = torch._C._jit_get_tracer_state_warn()
    torch._C._jit_set_tracer_state_warn(False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch._C._jit_set_tracer_state_warn(before)


def trace_graph(fn: Callable[..., Any], module: Optional[nn.Module], args: tuple, kwargs: dict, meta: bool) -> tuple[Any, list[str]]:
    """The TorchScript graph of ``fn(*args, **kwargs)`` with scopes ``m<i>`` naming the i-th submodule."""
    bound = _Bound(fn, module, args, kwargs)

    def enter(i: int) -> None:
        state = torch._C._get_tracing_state()
        if state is not None:
            state.push_scope(f"m{i}")

    def leave(output: Any) -> None:
        # Submodule outputs become graph outputs too, so the trace keeps modules whose result is unused.
        bound.kept.extend(output_tensors(output))
        state = torch._C._get_tracing_state()
        if state is not None:
            state.pop_scope()

    with module_hooks(module, enter, leave) as names, _no_tracer_warnings():
        # On meta: fast output shapes and traceable convolutions (fastmeta.meta_mode).
        fix = meta and _has_conv(module)
        try:
            with fastmeta.meta_mode(fix) if meta else nullcontext():
                graph, _ = torch.jit._get_trace_graph(bound, bound.tensors)
        except Exception:
            if not meta or fix:
                raise
            bound.kept.clear()
            with fastmeta.meta_mode(True):
                graph, _ = torch.jit._get_trace_graph(bound, bound.tensors)
    if bound.returned is not None and not bound.kept:
        # The trace keeps only the ops an output depends on: a count now would silently be zero.
        raise NoTensorOutput(
            f"the model returned {bound.returned.__name__}, not tensors, so the torchprofile counter (a trace) "
            "cannot see its operations; return the output tensor(s) from forward (a tensor, or a tuple, list or "
            "dict of them), or count with --flop-counter=flop_counter, which counts every operation that runs"
        )
    return graph, names


def trace(fn: Callable[..., Any], module: Optional[nn.Module], args: tuple, kwargs: dict, meta: bool) -> Tally:
    """Trace one call of ``fn`` and price every node with the registry."""
    graph, names = trace_graph(fn, module, args, kwargs, meta)
    tally = Tally()
    status: dict[str, Optional[bool]] = {}  # operator -> free (True), priced (False), unpriced (None)
    for jit_node in graph.nodes():
        operator = jit_node.kind().lower()
        if operator not in status:
            status[operator] = rules.is_free(operator) if rules.has_rule(operator) else None
        free = status[operator]
        if free is None:
            tally.miss(operator)
            continue
        if free:
            continue
        node = Node(
            operator=operator,
            attributes={},
            inputs=[_variable(v) for v in jit_node.inputs()],
            outputs=[_variable(v) for v in jit_node.outputs()],
            scope=jit_node.scopeName(),
        )
        macs = rules.price(node)
        if macs is None:
            tally.miss(operator)
            continue
        scope = node.scope.rsplit("/", 1)[-1]
        tally.add(names[int(scope[1:])] if scope.startswith("m") else "", operator, macs)
    return tally
