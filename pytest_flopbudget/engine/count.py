"""Counting the MACs of one call: the mode and fallback policy over two captures priced by one registry.

``dispatch`` sees every aten operator that runs (the default counter,
``"torchprofile"``, and ``"flop_counter"``; ``dispatch.capture`` around any
code); ``trace`` is the TorchScript capture torchprofile itself uses (the
``"trace"`` counter, the default before 0.2). Both price with
:mod:`pytest_flopbudget.rules`, so the default counter's MACs are
torchprofile's where torchprofile runs (cross-checked on the example suites,
the layer tests and the zoo); the dispatch capture costs less than a bare meta
pass where the trace cost up to 3x (benchmarks/bench_default_path.py).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import torch
import torch.nn as nn

from pytest_flopbudget.engine import fastmeta
from pytest_flopbudget.engine.capture import dispatch
from pytest_flopbudget.engine.capture.callables import resolve
from pytest_flopbudget.engine.capture.checks import AnsweredChecks
from pytest_flopbudget.engine.capture.tally import Tally
from pytest_flopbudget.engine.capture.trace import (
    NoTensorOutput,
    OpBudget,
    TraceTooLong,
    trace,
)
from pytest_flopbudget.engine.context import (
    _no_mha_fastpath,
    compiled_function,
    compiled_module,
    module_tensors,
    named_modules,
    one_walk,
    parameter_count,
    run_eagerly,
)
from pytest_flopbudget.engine.errors import (
    UNPRICED,
    MetaCountError,
    NeedsValuesError,
    UnpricedOperatorError,
    check_unpriced,
    needs_values,
)
from pytest_flopbudget.engine.memory import liveness_pass, op_costs
from pytest_flopbudget.engine.meta import all_meta, meta_init, to_meta, weights_on_meta
from pytest_flopbudget.engine.options import OPTIONS
from pytest_flopbudget.engine.recall import keep, recall
from pytest_flopbudget.engine.state import guard
from pytest_flopbudget.results.result import FlopResult

__all__ = ["COUNTERS", "MODES", "UNPRICED", "MetaCountError", "Tally", "UnpricedOperatorError", "count", "meta_init", "warm_up"]

COUNTERS = OPTIONS["counter"]
MODES = OPTIONS["mode"]


# ---- shared context -----------------------------------------------------------


TRACE_OP_LIMIT = 50_000
TRACE_CALL_LIMIT = 2_000
"""Operators a trace may run (in all; in one module call itself, not counting its submodules) before the
default counter hands the call to the dispatch capture.

A trace records one graph node per operator that runs, so a per-step loop is unrolled into a graph
whose building costs far more than running the operators: a Mamba scan (transformers'
MambaForCausalLM, 130m shape, 512 tokens: 24 layers x 512 steps) took 39x the time of a plain meta
forward. A loop shows as one module call running many operators itself: each step of the scan runs
in the mixer's own forward, so the trace stops within the first layer. No layer of the VAR suite
runs more than a few hundred itself, nor do transformers' dense, MoE and generation models in the
tests (``OpBudget.most`` gives the figure); VAR d36-s generation, the largest run, dispatches 25,128
operators in all. Both limits count operators, not time: a model always takes the same path.
"""


# Trace nodes that stand for code the trace cannot see into: a custom ``torch.autograd.Function``
# (``prim::PythonOp``), a call of a ``torch.jit.script`` function or method (``prim::CallFunction``,
# ``prim::CallMethod``). No rule can price them from shapes; the dispatch capture sees every operator
# they run.
OPAQUE = {
    "prim::pythonop": "a custom torch.autograd.Function",
    "prim::callfunction": "a torch.jit.script function",
    "prim::callmethod": "a torch.jit.script module or method",
}


def _traced(fn: Callable[..., Any], module: nn.Module | None, args: tuple[Any, ...], kwargs: dict[str, Any], meta: bool) -> Tally:
    """The ``"trace"`` counter: the trace, and the dispatch capture (with a note) where a trace cannot go
    or holds calls it cannot see into; where that is known before tracing (:func:`_no_trace`), the
    dispatch capture alone."""
    known = _no_trace(fn, module)
    if known is None and dispatch.has_nested(args, kwargs):
        known = "a nested tensor among the inputs, whose shape a trace does not record"
    if known is not None:
        tally = dispatch.run(fn, module, args, kwargs, meta)
        tally.notes.append(f"counted by the dispatch capture (every operator that runs, priced by the same rules): {known}")
        return tally
    try:
        tally = trace(fn, module, args, kwargs, meta, OpBudget(TRACE_OP_LIMIT, TRACE_CALL_LIMIT))
    except NoTensorOutput:
        raise
    except TraceTooLong as exc:
        reason = f"{exc}, a loop the trace would unroll into a graph node per operator of every step"
    except Exception as exc:
        reason = f"the trace failed ({_first_line(exc)})"
    else:
        opaque = {op: n for op, n in tally.unpriced.items() if op in OPAQUE}
        if not opaque:
            return tally
        return _through_opaque(fn, module, args, kwargs, meta, tally, opaque)
    tally = dispatch.run(fn, module, args, kwargs, meta)  # the model's own errors surface here
    tally.notes.append(
        f"counted by the dispatch capture (every operator that runs, priced by the same rules): {reason}"
    )
    return tally


def _no_trace(fn: Callable[..., Any], module: nn.Module | None) -> str | None:
    """Why the trace would fail, see nothing or cost more than the operators, known before tracing
    (the dispatch capture counts the call then), or None.

    - a scripted module (``torch.jit.script``): the tracer refuses it, or sees one opaque call;
    - a compiled module or function (``torch.compile``): tracing it has dynamo compile new graphs,
      seconds per count, where the dispatch capture runs it as it is;
    - a call that runs the model several times (:func:`.generation.prefill_and_decode`, a model's
      bound ``generate`` method such as transformers' ``GenerationMixin.generate``): each decode step
      adds its operators to one ever longer trace, a graph node per operator, where the dispatch
      capture prices each as it runs (and a generation that needs real values, an end-of-sequence
      check, then takes two passes, meta and real, not three).
    """
    if compiled_function(fn):
        return "a torch.compile'd function (run eagerly: the trace cannot go through dynamo)"
    forwards = getattr(fn, "forwards", None)
    if isinstance(forwards, int) and forwards > 1:
        return f"a generation of {forwards} forwards, which one trace would hold node by node"
    if inspect.ismethod(fn) and fn.__name__ == "generate":
        return "a generate method (a decoding loop: a forward per new token, which one trace would hold node by node)"
    if module is None:
        return None
    for name, sub in named_modules(module):
        if isinstance(sub, torch.jit.ScriptModule):
            where = f"holds a scripted module ({name})" if name else "is a scripted module"
            return f"the model {where}, whose operators the trace cannot see"
    compiled = compiled_module(module)
    if compiled is not None:
        return f"the model holds a torch.compile'd module ({compiled}; run eagerly: the trace cannot go through dynamo)"
    return None


def _through_opaque(
    fn: Callable[..., Any], module: nn.Module | None, args: tuple[Any, ...], kwargs: dict[str, Any], meta: bool, traced: Tally, opaque: dict[str, int]
) -> Tally:
    """The count of a call whose trace holds opaque calls: the dispatch capture's, which sees inside them.

    Where the dispatch capture fails too, the trace's count stands with a note naming what it missed
    (the opaque calls stay listed in ``unpriced``): never a silent zero."""
    listed = ", ".join(f"{op} ({OPAQUE[op]}, {n} call{'s' if n != 1 else ''})" for op, n in sorted(opaque.items()))
    try:
        tally = dispatch.run(fn, module, args, kwargs, meta)
    except Exception as exc:
        traced.notes.append(
            f"not counted: the operators inside {listed}, which the trace cannot see into; the dispatch "
            f"capture, which can, failed ({_first_line(exc)})"
        )
        return traced
    tally.notes.append(
        "counted by the dispatch capture (every operator that runs, priced by the same rules): the trace "
        f"holds {listed}, whose operators it cannot see"
    )
    return tally


# The default counter, "torchprofile", prices torchprofile's view of the operators from the dispatch
# capture: the same MACs as the trace wherever both run, at less than a bare meta pass.
_BACKENDS: dict[str, Callable[..., Tally]] = {"torchprofile": dispatch.run, "flop_counter": dispatch.run, "trace": _traced}


def _with_memory(backend: Callable[..., Tally]) -> Callable[..., Tally]:
    """``backend`` that also measures peak memory: inline in the dispatch capture; after a trace (which
    keeps tensors alive for its graph, so cannot see frees) by one more pass that only watches liveness."""

    def run(fn: Callable[..., Any], module: nn.Module | None, args: tuple[Any, ...], kwargs: dict[str, Any], meta: bool,
            checks: AnsweredChecks | None = None) -> Tally:
        if backend is dispatch.run:
            return dispatch.run(fn, module, args, kwargs, meta, memory=True, checks=checks)
        tally = backend(fn, module, args, kwargs, meta)
        if tally.memory is None:
            tally.memory = liveness_pass(fn, module, args, kwargs, meta)
        return tally

    run.dispatches = backend is dispatch.run  # type: ignore[attr-defined]  # read by _dispatches
    return run


def _dispatches(backend: Callable[..., Tally]) -> bool:
    """Whether ``backend`` is the dispatch capture (alone, or with peak memory)."""
    return backend is dispatch.run or bool(getattr(backend, "dispatches", False))


# ---- entry point ----------------------------------------------------------------


# The tracer's error for an output no traced operator made prints the tensor inside it, over many lines.
_UNTRACED_OUTPUT = re.compile(r"output (\d+) \(.*\) of traced region", re.DOTALL)


def _first_line(exc: BaseException) -> str:
    """``Type: first line`` of an error, never a tensor's printout, at most 200 characters."""
    text = _UNTRACED_OUTPUT.sub(r"output \1 of traced region", str(exc)).strip().splitlines()
    line = text[0] if text else ""
    if "tensor(" in line or "Parameter containing" in line:
        line = line.split("tensor(")[0].split("Parameter containing")[0].rstrip(" :,(") + " ..."
    if len(line) > 200:
        line = line[:197] + "..."
    return f"{type(exc).__name__}: {line}".rstrip(": ")


def _meta_first(
    backend: Callable[..., Tally],
    fn: Callable[..., Any],
    module: nn.Module | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    fall_back: bool,
    notes: list[str],
) -> tuple[Tally, str]:
    """Count on meta (weights swapped, inputs converted); on failure run for real if allowed and possible."""
    # (count() holds one walk of the module tree for the meta check, the guard and the weight swap)
    weights = module_tensors(module) if module is not None else []
    weights_on = all(t.is_meta for t in weights)  # on meta already: nothing to swap
    nothing_real = (weights_on and all_meta(None, (args, kwargs))) or any(t.is_meta for t in weights)
    try:
        # The dispatch capture answers transformers' known input checks on meta (the trace never reads them),
        # in its own mode.
        checks = AnsweredChecks() if _dispatches(backend) else None
        with ExitStack() as stack:
            lost = stack.enter_context(guard(module))
            if not weights_on:
                stack.enter_context(weights_on_meta(module))
            margs, mkwargs = to_meta((args, kwargs))
            tally = backend(fn, module, margs, mkwargs, True, checks=checks) if checks is not None else backend(fn, module, margs, mkwargs, True)
        notes.extend(lost + (checks.notes() if checks is not None else []))
        return tally, "meta"
    except Exception as exc:
        if nothing_real and not isinstance(exc, NoTensorOutput) and needs_values(exc):
            raise _no_real_values(exc, fall_back) from exc
        if nothing_real or isinstance(exc, NoTensorOutput):  # the model's own error: a real pass fails alike
            raise
        if not fall_back:
            hint = "use mode='auto' or mode='real' to allow a real forward pass"
            raise MetaCountError(f"cannot count on the meta device ({_first_line(exc)}); {hint}") from exc
        if module is None and _mixes_devices(exc):  # a callable over weights this cannot find or swap
            raise MetaCountError(
                f"cannot count {_callable_name(fn)} on the meta device ({_first_line(exc)}) and it reaches no "
                "torch.nn.Module whose weights could be swapped; pass the module itself (measure(model, x)), "
                "a bound method (model.generate) or a closure over it, or count it for real with mode='real'"
            ) from None
        notes.append(f"counted with a real forward pass: the meta-device pass failed ({_first_line(exc)})")
    return _real(backend, fn, module, args, kwargs, False, notes), "real"


def _no_real_values(exc: BaseException, fall_back: bool) -> NeedsValuesError:
    """The one-line error of a model built on meta whose forward needs real values (``.item()``, a
    data-dependent branch, ``torch.nonzero`` in a detector's box selection): no real pass can stand in."""
    if fall_back:
        fix = "build the model and its inputs on the CPU (with random weights) and mode='auto' counts them with a real forward pass"
    else:
        fix = "build the model and its inputs on the CPU (with random weights) and count with mode='auto' or mode='real'"
    text = str(exc)
    if "nonzero" in text:
        why = "torch.nonzero, whose output's shape depends on the values"
    elif "item()" in text:
        why = "Tensor.item() on a meta tensor"
    else:
        why = _first_line(exc)
    return NeedsValuesError(
        f"cannot count on the meta device: the forward needs real values ({why}), and the model and its "
        f"inputs are all on meta, so no real forward pass can stand in; {fix}"
    )


def _mixes_devices(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "meta" in text and "device" in text


def _callable_name(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    return f"the callable {name!r}"


def _real(
    backend: Callable[..., Tally],
    fn: Callable[..., Any],
    module: nn.Module | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    meta: bool,
    notes: list[str],
) -> Tally:
    """A pass on the model's own tensors; buffers and cached tensors are copied first and put back after."""
    with guard(module, copy_values=not meta) as lost:
        tally = backend(fn, module, args, kwargs, meta)
    notes.extend(lost)
    return tally


def count(
    model: Any,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    counter: str = "torchprofile",
    mode: str = "auto",
    unpriced: str = "fail",
    memory: bool = False,
) -> FlopResult:
    """MACs of one call ``model(*args, **kwargs)``: a module's forward, or any callable over modules.

    ``counter``: ``"torchprofile"`` (default: torchprofile's numbers, from the
    dispatch capture, which sees every aten operator that runs), ``"flop_counter"``
    (the same capture: the name kept for settings that chose it) or ``"trace"``
    (the TorchScript trace torchprofile itself runs; where a trace cannot go, a
    tracer error or a loop of more than :data:`TRACE_OP_LIMIT` operators, the
    dispatch capture counts, with a note); all priced by :mod:`pytest_flopbudget.rules`.
    ``mode``: ``"auto"`` counts on the meta device and falls back to a real
    pass (with a note) when the model needs real values; ``"meta"`` never
    falls back (raises :class:`MetaCountError`); ``"real"`` runs on the
    model's own device and tensors. The model's weights are never copied:
    on meta they are swapped for meta tensors and restored afterwards; the
    model's whole state is put back (see :mod:`.state`).
    ``unpriced``: ``"fail"`` (default) raises :class:`UnpricedOperatorError`
    when a matmul/conv/attention/recurrent-class operator has no rule;
    ``"warn"`` counts without it and says so in ``notes``.
    A callable is counted with the weights of the modules it reaches
    (closures, bound methods, ``functools.partial``, attributes).
    ``memory=True`` also measures peak memory (``FlopResult.peak_bytes`` and its split, see
    docs/memory.md); bytes moved (``FlopResult.costs``) are always recorded.
    Counting runs under ``torch.no_grad()`` and leaves train/eval state alone.
    """
    if counter not in _BACKENDS:
        raise ValueError(f"unknown counter {counter!r}; choose one of {', '.join(COUNTERS)}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if unpriced not in UNPRICED:
        raise ValueError(f"unknown unpriced policy {unpriced!r}; choose one of {', '.join(UNPRICED)}")
    if not isinstance(args, tuple):
        args = tuple(args) if isinstance(args, list) else (args,)
    kwargs = dict(kwargs or {})
    # A compiled module counted again where torch would run the same compiled graph: the count made then.
    token, remembered = recall(model, args, kwargs, (counter, mode, unpriced, memory))
    if remembered is not None:
        return remembered
    fn, module = resolve(model)
    backend = _BACKENDS[counter]
    if memory:
        backend = _with_memory(backend)
    notes: list[str] = []

    # One walk of the module tree serves every step before the model runs (see context.one_walk).
    with one_walk(module), torch.no_grad(), _no_mha_fastpath(), fastmeta.collector_paused(), run_eagerly(fn, module):
        if mode == "real":
            on_meta = all_meta(module, (args, kwargs))
            tally = _real(backend, fn, module, args, kwargs, on_meta, notes)
            used = "meta" if on_meta else "real"
        else:
            tally, used = _meta_first(backend, fn, module, args, kwargs, mode == "auto", notes)
    notes.extend(tally.notes)
    check_unpriced(tally.unpriced, unpriced, notes)

    params = parameter_count(module)  # after the pass, so lazy modules are materialized
    result = FlopResult(
        macs=tally.macs,
        params=params,
        by_module=tally.by_module,
        by_operator=tally.by_operator,
        unpriced=tally.unpriced,
        counter=counter,
        mode=used,
        notes=tuple(notes),
        capture=tally.capture,
        costs=op_costs(tally.costs),
        **(tally.memory or {}),
    )
    keep(token, model, result)
    return result


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
    """Count a tiny model once with each counter, on meta and for real, and one training step of it.

    torch imports a lot lazily on the first meta or dispatch-mode call
    (torch._dynamo, sympy, the dispatch-mode machinery, ...). Call this once
    where that must not happen later, e.g. in a conftest before pytester's
    in-process runs, which drop modules first imported inside them (and
    re-importing those crashes the process).
    """
    model, x = _WarmUp(), torch.zeros(1, 2, 3)
    for counter in COUNTERS:
        for mode in ("meta", "real"):
            count(model, (x,), {}, counter=counter, mode=mode)
    from pytest_flopbudget.engine.capture.training import count_train_step

    count_train_step(model, (x,), optimizer=lambda params: torch.optim.AdamW(params, fused=True))
