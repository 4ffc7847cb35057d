"""The TorchScript capture torchprofile uses: trace one call, then price each graph node with rules.py."""

from __future__ import annotations

import contextvars
import dataclasses
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch.nn as nn
import torch.utils._pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode
from torchprofile.ir import Node, Variable

from pytest_flopbudget.engine import fastmeta, rules
from pytest_flopbudget.engine.capture.calls import module_calls
from pytest_flopbudget.engine.capture.tally import Tally, submodules
from pytest_flopbudget.engine.memory import node_bytes, record
from pytest_flopbudget.engine.meta import MetaTraceFix


class TraceTooLong(RuntimeError):
    """The traced call ran more operators than a trace can hold cheaply (a per-step loop being unrolled)."""


class OpBudget(TorchDispatchMode):
    """Stop a trace that unrolls a loop: past ``total`` operators in all, or past ``per_call`` operators run
    by one module call itself (not by its submodules), where a per-step loop such as a scan runs.

    Each operator that runs while tracing becomes a graph node, and building the graph grows costlier than
    running the operators (a Mamba scan of 512 steps: 39x a plain meta forward). ``most`` is the largest
    number of operators one module call ran itself (the figure the limits are chosen from).
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # torch would wrap __torch_dispatch__ in torch._dynamo.disable: an import of ~1 s, and a cost per call

    def __init__(self, total: int, per_call: int) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # torch's base class is unannotated
        self.total, self.per_call = total, per_call
        self.most = 0
        self.reset()

    def reset(self) -> None:
        self.ops = 0
        self.own = [0]  # operators of the running module call itself, innermost last

    def enter(self) -> None:
        self.own.append(0)

    def leave(self) -> None:
        if len(self.own) > 1:
            self.most = max(self.most, self.own.pop())

    def tick(self) -> None:
        """One operator ran: raise :class:`TraceTooLong` past a limit."""
        self.ops += 1
        self.own[-1] += 1
        if self.ops > self.total:
            raise TraceTooLong(f"more than {self.total:,} operators ran while tracing")
        if self.own[-1] > self.per_call:
            raise TraceTooLong(f"one module call ran more than {self.per_call:,} operators itself while tracing")

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        self.tick()
        return func(*args, **(kwargs or {}))


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

    The tracer takes flat tensors, not keyword arguments or nested inputs: :meth:`arguments` rebuilds
    the call from them and :meth:`results` flattens what it returned. The owner is a submodule, so its
    parameters and buffers are the state the trace takes as inputs.
    """

    def __init__(self, fn: Callable[..., Any], owner: nn.Module | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.owner = owner
        self.call = fn
        leaves, self.spec = pytree.tree_flatten((args, kwargs))
        self.slots = [i for i, x in enumerate(leaves) if isinstance(x, torch.Tensor)]
        self.leaves = leaves
        self.tensors = tuple(leaves[i] for i in self.slots)
        self.kept: list[torch.Tensor] = []
        self.returned: Any = None  # type of the model's output when it held no tensor

    def arguments(self, tensors: Sequence[torch.Tensor]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        leaves = list(self.leaves)
        for slot, t in zip(self.slots, tensors):
            leaves[slot] = t
        call: tuple[tuple[Any, ...], dict[str, Any]] = pytree.tree_unflatten(leaves, self.spec)
        return call

    def results(self, output: Any) -> list[torch.Tensor]:
        """The output's tensors, then the submodule outputs kept."""
        out = output_tensors(output)
        if not out:
            self.returned = type(output)
        return out + self.kept


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


def _shape_of(value: Any) -> list[int] | None:
    try:
        sizes: list[int] | None = value.type().sizes()
        return sizes
    except Exception:
        return None


def _variable(value: Any) -> Variable:
    kind = value.type()
    if isinstance(kind, torch._C.TensorType):
        return Variable(name=value.debugName(), dtype=str(kind.scalarType() or "undefined"), shape=_shape_of(value))
    return Variable(name=value.debugName(), dtype=str(kind), value=_constant(value))


class _Values(Sequence[Any]):
    """A graph node's inputs or outputs as torchprofile Variables, each made when a rule first reads it
    (most rules read one or two of them: making them all was a fifth of a trace's time)."""

    __slots__ = ("_size", "_at", "_made")

    def __init__(self, size: int, at: Callable[[int], Any]) -> None:
        self._size, self._at = size, at
        self._made: dict[int, Variable] = {}

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._size))]
        i = index + self._size if index < 0 else index
        if not 0 <= i < self._size:
            raise IndexError(index)
        made = self._made.get(i)
        if made is None:
            made = self._made[i] = _variable(self._at(i))
        return made


@contextmanager
def _no_tracer_warnings() -> Iterator[None]:
    """TracerWarnings (and any other warning) are not shown; the tracer does not even make them."""
    before = torch._C._jit_get_tracer_state_warn()  # type: ignore[attr-defined]  # torch's stubs omit it
    torch._C._jit_set_tracer_state_warn(False)  # type: ignore[attr-defined]  # torch's stubs omit it
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch._C._jit_set_tracer_state_warn(before)  # type: ignore[attr-defined]  # torch's stubs omit it


@contextmanager
def _stacked(outer: Any, inner: Any) -> Iterator[None]:
    with outer, inner:
        yield


def _no_name(value: Any) -> str:
    return ""


# Nodes after which the tracer's closing passes do more than dead-code elimination: scope blocks and
# forks (restructured), calls into scripted code (inlined), tuples (lowered). A graph holding one of them
# is closed by the tracer itself.
_RESTRUCTURED = (
    "prim::TracedModuleForward", "prim::TracedFork", "prim::CallFunction", "prim::CallMethod",
    "prim::TupleConstruct", "prim::If", "prim::Loop",
)


def _close_here(graph: Any, outputs: list[torch.Tensor]) -> bool:
    """Close the trace as the tracer would, while it still runs, where that is dead-code elimination alone.

    The tracer ends a trace by registering the outputs as one tuple and running its closing passes:
    scope-block and fork fix-ups, inlining, tuple lowering, dead-code elimination (with alias analysis)
    and a lint, each a walk over the whole graph. On a flat graph without calls or tuples, every pass
    but dead-code elimination changes nothing, so this registers the same tuple and runs that same
    pass (``EliminateDeadCode`` on the graph), and the priced graph is the one the tracer would return.
    Returns ``False`` (the graph untouched) where a pass would do
    more; raises the tracer's own error for an output that no traced operation made.
    """
    if any(graph.findNode(kind) is not None for kind in _RESTRUCTURED):
        return False
    end = graph.return_node()
    values = []
    for i, tensor in enumerate(outputs):
        before = end.prev()
        value = torch._C._get_value_trace(tensor)  # type: ignore[attr-defined]  # an untraced tensor becomes a new constant node
        after = end.prev()
        if after.kind() == "prim::Constant" and after.isAfter(before):
            raise RuntimeError(
                f"output {i} of traced region did not have observable data dependence with trace inputs; "
                "this probably indicates your program cannot be understood by the tracer."
            )
        values.append(value)
    closing = graph.create("prim::TupleConstruct", values, 1)
    closing.output().setType(torch._C.TupleType([v.type() for v in values]))
    graph.insertNode(closing)
    graph.registerOutput(closing.output())
    torch._C._jit_pass_dce_graph(graph)
    return True


def _untouched_input(graph: Any, traced: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """An input of the trace that the tracer still maps to its graph input, or None when there is none.

    The traced function returns it once the graph is emptied, so the tracer closes a graph that returns
    one of its own inputs. An input written in place (``x.add_(1)``, ``ReLU(inplace=True)``) or passed
    through an operator that returns it (``dropout`` in eval mode) is mapped to that operator's node
    instead: after emptying, that node is gone, and returning the tensor had the tracer read a
    destroyed node (a segmentation fault). Parameters and buffers are inputs too, so one is usually
    left; where none is, the tracer closes the graph itself.
    """
    for tensor, value in zip(traced, graph.inputs()):
        if torch._C._get_value_trace(tensor).unique() == value.unique():  # type: ignore[attr-defined]  # torch's stubs omit it
            return tensor
    return None


def _empty(graph: Any) -> None:
    """Remove every node and output of ``graph`` (its inputs stay), last node first."""
    for _ in range(graph.return_node().inputsSize()):
        graph.eraseOutput(0)
    torch._C._jit_pass_dce_allow_deleting_nodes_with_side_effects(graph)  # dead now: all, in one pass
    for node in reversed(list(graph.nodes())):  # anything that pass keeps
        node.destroy()


def _graph(bound: _Bound, modes: Any, price: Callable[[Any], Tally]) -> Tally:
    """``price`` of the TorchScript graph of ``bound``'s call, traced under ``modes`` on a thread of
    its own (see :func:`shallow`).

    As ``torch.jit._get_trace_graph(bound, bound.tensors)``, less its Python lookup of a variable name
    for every value (a walk over the caller's frame locals, a few percent of a trace) and its
    Module-call frames: graph values keep the tracer's numbered names, and parameters and buffers are
    inputs of the graph, as there. The traced function is the model call's only frame below the
    thread's own (the tracer records every frame for every node). Where :func:`_close_here` can close
    the trace, the graph is priced before the traced function returns, and emptied: the tracer then
    closes a graph that returns its first input, and its passes cost nothing.
    """
    inputs = list(bound.tensors) + list(torch.jit._trace._unique_state_dict(bound, keep_vars=True).values())
    size = len(bound.tensors)
    priced: list[Tally] = []

    def run(*traced: torch.Tensor) -> Any:
        with modes:
            args, kwargs = bound.arguments(traced[:size])
            out = bound.results(bound.call(*args, **kwargs))
        tracing = torch._C._get_tracing_state()
        graph = tracing.graph()
        keep = _untouched_input(graph, traced)
        if keep is not None and _close_here(graph, out):
            # Rules run as after a trace (``modes`` are left already): nothing they do is recorded.
            torch._C._set_tracing_state(None)  # type: ignore[attr-defined]  # torch's stubs omit it
            try:
                priced.append(price(graph))
                _empty(graph)
            finally:
                torch._C._set_tracing_state(tracing)  # type: ignore[attr-defined]  # torch's stubs omit it
            return keep  # traced as an input of the graph, which emptying keeps
        return out[0] if len(out) == 1 else tuple(out)

    graph, _ = shallow(torch._C._create_graph_by_tracing, run, inputs, _no_name, True, False)
    return priced[0] if priced else price(graph)


def _thread_may_run() -> bool:
    """Whether a trace can move to a thread of its own and see what it would see here: no torch
    function or dispatch mode (``with torch.device(...)``, a user's mode), no autocast, inference
    mode, functorch transform or enclosing trace, all of which are this thread's own state."""
    return not (
        torch._C._len_torch_function_stack()
        or torch._C._len_torch_dispatch_stack()
        or torch._C._is_any_autocast_enabled()
        or torch.is_inference_mode_enabled()
        or torch._C._are_functorch_transforms_active()
        or torch._C._get_tracing_state() is not None
    )


class _TraceThread(threading.Thread):
    """Runs ``fn(*args)`` in ``run`` itself (no target frame), with the caller's grad mode and context."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        super().__init__(name="flopbudget-trace", daemon=True)
        self.fn, self.fn_args = fn, args
        self.grad = torch.is_grad_enabled()
        self.context = contextvars.copy_context()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            torch._C._set_grad_enabled(self.grad)  # the thread's own flag, gone with it
            self.result = self.context.run(self.fn, *self.fn_args)
        except BaseException as exc:  # raised again in the caller's thread
            self.error = exc


def shallow(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` on a new thread, whose Python stack starts empty; the caller waits for it.

    The tracer records the whole Python call stack of every graph node it makes, one entry per frame
    (file, line, function): under pytest the caller's stack is 60-90 frames deep, and walking it for
    each of a generation's 20,000 nodes was most of the trace. The thread gets the caller's grad mode
    and context variables (and is a ``threading`` thread, so that tools hooking thread starts, such
    as coverage, see it); errors are raised here. An interrupt of the wait (Ctrl-C) is raised once
    the thread has finished, so nothing runs on the model after the count has put it back. Where the
    caller's thread has state a new thread would not share (see :func:`_thread_may_run`), ``fn`` runs
    here.
    """
    if not _thread_may_run():
        return fn(*args)
    thread = _TraceThread(fn, args)
    thread.start()
    try:
        thread.join()
    except BaseException:
        # Interrupted (Ctrl-C): the trace cannot be stopped, so wait for it before the count puts the
        # model back (a second interrupt stops the wait too).
        thread.join()
        raise
    error, thread.error = thread.error, None
    if error is not None:
        try:
            raise error
        finally:
            del error
    return thread.result


def trace(
    fn: Callable[..., Any], module: nn.Module | None, args: tuple[Any, ...], kwargs: dict[str, Any], meta: bool, budget: OpBudget | None = None
) -> Tally:
    """Trace one call of ``fn`` and price every node of its TorchScript graph with the registry (scopes
    ``m<i>`` in the graph name the i-th submodule).

    With a ``budget``, raises :class:`TraceTooLong` where it says the trace unrolls a loop."""
    bound = _Bound(fn, module, args, kwargs)
    guard: Any = budget if budget is not None else nullcontext()

    opened: list[Any] = []  # the scope-block node of each running module call, innermost last

    def enter(i: int) -> None:
        # A scope names the module of every node made inside it. The graph's push_scope also opens a block
        # (a prim::TracedModuleForward node) and inserts into it, and the tracer's closing passes would
        # copy each node out of every enclosing block again; here nodes go before the block instead, so
        # the graph stays flat and the block empty (removed on leaving).
        state = torch._C._get_tracing_state()
        if state is not None:
            state.push_scope(f"m{i}")
            graph = state.graph()
            block_node: torch._C.Node | None = graph.insertPoint().owningBlock().owningNode()
            if block_node is not None and block_node.kind() == "prim::TracedModuleForward":
                graph.setInsertPoint(block_node)
            else:  # no block was opened: nothing to keep flat
                block_node = None
            opened.append(block_node)
        if budget is not None:
            budget.enter()

    def leave(output: Any) -> None:
        # Submodule outputs become graph outputs too, so the trace keeps modules whose result is unused.
        bound.kept.extend(output_tensors(output))
        if budget is not None:
            budget.leave()
        state = torch._C._get_tracing_state()
        if state is not None and opened:
            block_node = opened.pop()
            if block_node is None:
                state.pop_scope()
                return
            state.graph().setInsertPoint(next(block_node.blocks()))  # where pop_scope expects to be
            state.pop_scope()  # insertion continues after the block node, as the tracer would
            block_node.destroy()

    named = submodules(module)
    names, index = [name for name, _ in named], {id(sub): i for i, (_, sub) in enumerate(named)}
    with _no_tracer_warnings():
        # The tracer records a convolution only where it reaches aten::_convolution with tracing on: not on
        # meta, and not once a dispatch mode (the operator budget) has taken the call below the tracer; a
        # convolution missing from the trace would be a silent zero. The fix re-issues it so it is recorded.
        # On meta, fastmeta's mode does that too, and makes the outputs of common operators from shapes.
        # On the fast path the budget counts inside FastMeta's own dispatch (one Python mode per operator, not two).
        if meta and fastmeta.enabled():
            modes: Any = fastmeta.FastMeta(budget)
        else:
            modes = _stacked(fastmeta.meta_mode() if meta else MetaTraceFix(), guard)
        # Module calls are followed where the model runs (the trace's thread), see calls.py.
        tally = _graph(bound, _stacked(module_calls(module, index, enter, leave), modes), lambda graph: _price(graph, names))
    if bound.returned is not None and not bound.kept:
        # The trace keeps only the ops an output depends on: a count now would silently be zero.
        raise NoTensorOutput(
            f"the model returned {bound.returned.__name__}, not tensors, so the trace counter "
            "cannot see its operations; return the output tensor(s) from forward (a tensor, or a tuple, list or "
            "dict of them), or count with the default counter (--flop-counter=torchprofile), which counts every "
            "operation that runs"
        )
    return tally


def _price(graph: Any, names: list[str]) -> Tally:
    """Every node of a traced graph priced with the registry; ``names[i]`` is the module of scope ``m<i>``."""
    tally = Tally(capture="trace")
    # node kind -> (operator, free: True, priced: False, unpriced: None); scope -> module name
    status: dict[str, tuple[str, bool | None]] = {}
    modules: dict[str, str] = {}
    for jit_node in graph.nodes():
        kind = jit_node.kind()
        known = status.get(kind)
        if known is None:
            operator = kind.lower()
            known = status[kind] = (operator, rules.is_free(operator) if rules.has_rule(operator) else None)
        operator, free = known
        if free or free is None:
            if free is None:
                if kind == "prim::PythonOp" and jit_node.pyname() == "_NoopSaveInputs":
                    continue  # torch 2.9's non-reentrant checkpoint bookkeeping: an autograd function that does nothing
                tally.miss(operator)
            moved = node_bytes(jit_node, operator)  # bytes moved (engine/memory/traffic.py); None: a view
            if moved is not None:
                record(tally.costs, operator, _module_of(jit_node.scopeName(), modules, names), moved[0], 0, moved[1], moved[2])
            continue
        node = Node(
            operator=operator,
            attributes={},
            inputs=_Values(jit_node.inputsSize(), jit_node.inputsAt),  # type: ignore[arg-type]
            outputs=_Values(jit_node.outputsSize(), jit_node.outputsAt),  # type: ignore[arg-type]
            scope=jit_node.scopeName(),
        )
        macs = rules.price(node)
        module_name = _module_of(node.scope, modules, names)
        moved = node_bytes(jit_node, operator)
        dtype, read, written = moved if moved is not None else ("", 0, 0)
        record(tally.costs, operator, module_name, dtype, macs or 0, read, written)
        if macs is None:
            tally.miss(operator)
            continue
        tally.add(module_name, operator, macs)
    return tally


def _module_of(scope_name: str, modules: dict[str, str], names: list[str]) -> str:
    """The module path of a node's scope (``m<i>`` names the i-th submodule), cached per scope."""
    module_name = modules.get(scope_name)
    if module_name is None:
        scope = scope_name.rsplit("/", 1)[-1]
        module_name = modules[scope_name] = names[int(scope[1:])] if scope.startswith("m") else ""
    return module_name
