"""Counting the MACs of one forward pass: torchprofile's tracer priced by our rules, or torch's FlopCounterMode."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, Optional

import torch
import torch.nn as nn
import torch.utils._pytree as pytree
from torch.nn.parameter import UninitializedTensorMixin
from torchprofile.ir import Node, Variable

from . import fastmeta, rules
from .metadevice import all_meta, meta_init, to_meta, weights_on_meta
from .result import FlopResult

__all__ = ["COUNTERS", "MODES", "MetaCountError", "count", "meta_init", "warm_up"]

COUNTERS = ("torchprofile", "flop_counter")
MODES = ("auto", "meta", "real")


class MetaCountError(RuntimeError):
    """The model could not be counted on the meta device (and no fallback was allowed or possible)."""


class NoTensorOutput(TypeError):
    """The torchprofile counter traced a model that returned no tensor: its ops would be dropped, so no count."""


@dataclasses.dataclass
class _Tally:
    macs: int = 0
    by_module: dict[str, int] = dataclasses.field(default_factory=dict)
    by_operator: dict[str, int] = dataclasses.field(default_factory=dict)
    unpriced: dict[str, int] = dataclasses.field(default_factory=dict)

    def add(self, module: str, operator: str, macs: int) -> None:
        if macs:
            self.macs += macs
            self.by_module[module] = self.by_module.get(module, 0) + macs
            self.by_operator[operator] = self.by_operator.get(operator, 0) + macs

    def miss(self, operator: str) -> None:
        self.unpriced[operator] = self.unpriced.get(operator, 0) + 1


# ---- model, inputs and outputs ----------------------------------------------


def _resolve(model: Any) -> tuple[Callable[..., Any], Optional[nn.Module]]:
    """The callable to run and the module owning its weights (a bound method's module counts)."""
    if isinstance(model, nn.Module):
        return model, model
    if callable(model):
        owner = getattr(model, "__self__", None)
        return model, owner if isinstance(owner, nn.Module) else None
    raise TypeError(f"cannot count {type(model).__name__!r}: expected a torch.nn.Module or a callable")


def _output_tensors(out: Any) -> list[torch.Tensor]:
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
    return [t for item in items for t in _output_tensors(item)]


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
        out = _output_tensors(output)
        if not out:
            self.returned = type(output)
        return tuple(out + self.kept)


# ---- shared context -----------------------------------------------------------


def _pre_hook(enter: Callable[[int], None], index: int) -> Callable[..., None]:
    def hook(module: nn.Module, args: Any) -> None:
        enter(index)

    return hook


def _post_hook(leave: Callable[[Any], None]) -> Callable[..., None]:
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        leave(output)

    return hook


@contextmanager
def _module_hooks(module: Optional[nn.Module], enter: Callable[[int], None], leave: Callable[[Any], None]) -> Iterator[list[str]]:
    """Call ``enter(i)``/``leave(output)`` around the forward of the i-th named submodule; yields the names."""
    names: list[str] = []
    handles = []
    try:
        if module is not None:
            for name, sub in module.named_modules():
                if not name:
                    continue
                index = len(names)
                names.append(name)
                handles.append(sub.register_forward_pre_hook(_pre_hook(enter, index)))
                handles.append(sub.register_forward_hook(_post_hook(leave), always_call=True))
        yield names
    finally:
        for handle in handles:
            handle.remove()


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


# ---- torchprofile: trace, then price each node with rules.py ------------------


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


def _trace(fn: Callable[..., Any], module: Optional[nn.Module], args: tuple, kwargs: dict, meta: bool) -> _Tally:
    bound = _Bound(fn, module, args, kwargs)

    def enter(i: int) -> None:
        state = torch._C._get_tracing_state()
        if state is not None:
            state.push_scope(f"m{i}")

    def leave(output: Any) -> None:
        # Submodule outputs become graph outputs too, so the trace keeps modules whose result is unused.
        bound.kept.extend(_output_tensors(output))
        state = torch._C._get_tracing_state()
        if state is not None:
            state.pop_scope()

    with _module_hooks(module, enter, leave) as names, warnings.catch_warnings():
        warnings.simplefilter("ignore")
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

    tally = _Tally()
    for jit_node in graph.nodes():
        operator = jit_node.kind().lower()
        if operator not in rules.RULES:
            tally.miss(operator)
            continue
        if rules.RULES[operator] is None:
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


# ---- torch.utils.flop_counter -------------------------------------------------

_COSTLY = ("mm", "matmul", "linear", "conv", "attention", "einsum", "dot", "lstm", "gru", "rnn")


def _cpu_sdpa_flops(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query, key, value)


def _flop_counter(fn: Callable[..., Any], module: Optional[nn.Module], args: tuple, kwargs: dict, meta: bool) -> _Tally:
    from torch.utils.flop_counter import FlopCounterMode

    tally = _Tally()
    stack: list[int] = []
    names: list[str] = []

    class Counter(FlopCounterMode):
        def _count_flops(self, func_packet: Any, out: Any, args: Any, kwargs: Any) -> Any:
            operator = str(func_packet).replace(".", "::", 1)
            if func_packet not in self.flop_registry:
                if any(word in operator for word in _COSTLY):
                    tally.miss(operator)
                return out
            before = self.flop_counts["Global"][func_packet]
            result = super()._count_flops(func_packet, out, args, kwargs)
            flops = self.flop_counts["Global"][func_packet] - before
            tally.add(names[stack[-1]] if stack else "", operator, flops // 2)
            return result

    mapping = {}
    cpu_sdpa = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_sdpa is not None:
        mapping[cpu_sdpa] = _cpu_sdpa_flops
    with _module_hooks(module, stack.append, lambda output: _pop(stack)) as found:
        names.extend(found)
        with fastmeta.meta_mode(False) if meta else nullcontext(), Counter(display=False, custom_mapping=mapping):
            fn(*args, **kwargs)
    return tally


def _pop(stack: list[int], output: Any = None) -> None:
    if stack:
        stack.pop()


_BACKENDS: dict[str, Callable[..., _Tally]] = {"torchprofile": _trace, "flop_counter": _flop_counter}


# ---- entry point ----------------------------------------------------------------


def _state(module: nn.Module) -> Iterator[torch.Tensor]:
    yield from module.parameters()
    yield from module.buffers()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _meta_first(
    backend: Callable[..., _Tally],
    fn: Callable[..., Any],
    module: Optional[nn.Module],
    args: tuple,
    kwargs: dict,
    fall_back: bool,
    notes: list[str],
) -> tuple[_Tally, str]:
    """Count on meta (weights swapped, inputs converted); on failure run for real if allowed and possible."""
    nothing_real = all_meta(module, (args, kwargs)) or (module is not None and any(t.is_meta for t in _state(module)))
    try:
        with weights_on_meta(module):
            margs, mkwargs = to_meta((args, kwargs))
            return backend(fn, module, margs, mkwargs, True), "meta"
    except Exception as exc:
        if nothing_real or isinstance(exc, NoTensorOutput):  # the model's own error: a real pass fails alike
            raise
        if not fall_back:
            hint = "use mode='auto' or mode='real' to allow a real forward pass"
            raise MetaCountError(f"cannot count on the meta device ({_first_line(exc)}); {hint}") from exc
        notes.append(f"counted with a real forward pass: the meta-device pass failed ({_first_line(exc)})")
    return backend(fn, module, args, kwargs, False), "real"


def count(
    model: Any,
    args: tuple = (),
    kwargs: Optional[dict] = None,
    *,
    counter: str = "torchprofile",
    mode: str = "auto",
) -> FlopResult:
    """MACs of one forward pass ``model(*args, **kwargs)``.

    ``counter``: ``"torchprofile"`` (TorchScript trace, priced by
    :mod:`pytest_flopbudget.rules`) or ``"flop_counter"``
    (``torch.utils.flop_counter.FlopCounterMode``, FLOPs / 2).
    ``mode``: ``"auto"`` counts on the meta device and falls back to a real
    forward pass (with a note) when the model needs real values; ``"meta"``
    never falls back (raises :class:`MetaCountError`); ``"real"`` runs on the
    model's own device and tensors. The model's weights are never copied:
    on meta they are swapped for meta tensors and restored afterwards.
    Counting runs under ``torch.no_grad()`` and leaves train/eval state alone.
    """
    if counter not in _BACKENDS:
        raise ValueError(f"unknown counter {counter!r}; choose one of {', '.join(COUNTERS)}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if not isinstance(args, tuple):
        args = tuple(args) if isinstance(args, list) else (args,)
    kwargs = dict(kwargs or {})
    fn, module = _resolve(model)
    backend = _BACKENDS[counter]
    notes: list[str] = []

    with torch.no_grad(), _no_mha_fastpath():
        if mode == "real":
            on_meta = all_meta(module, (args, kwargs))
            tally = backend(fn, module, args, kwargs, on_meta)
            used = "meta" if on_meta else "real"
        else:
            tally, used = _meta_first(backend, fn, module, args, kwargs, mode == "auto", notes)

    params = 0
    if module is not None:  # after the pass, so lazy modules are materialized
        params = sum(p.numel() for p in module.parameters() if not isinstance(p, UninitializedTensorMixin))
    return FlopResult(
        macs=tally.macs,
        params=params,
        by_module=tally.by_module,
        by_operator=tally.by_operator,
        unpriced=tally.unpriced,
        counter=counter,
        mode=used,
        notes=tuple(notes),
    )


class _WarmUp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 2, 1)
        self.norm = nn.LayerNorm(2)
        self.lin = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(self.norm(self.conv(x).transpose(1, 2)))
        return torch.nn.functional.scaled_dot_product_attention(y[None], y[None], y[None])


def warm_up() -> None:
    """Count a tiny model once with each counter, on meta and for real.

    torch imports a lot lazily on the first meta or dispatch-mode call
    (torch._dynamo, sympy, torch.utils.flop_counter, ...). Call this once
    where that must not happen later, e.g. in a conftest before pytester's
    in-process runs, which drop modules first imported inside them (and
    re-importing those crashes the process).
    """
    model, x = _WarmUp(), torch.zeros(1, 2, 3)
    for counter in COUNTERS:
        for mode in ("meta", "real"):
            count(model, (x,), {}, counter=counter, mode=mode)
