"""Dispatch-level capture: price every aten operator that runs, with the rules of :mod:`pytest_flopbudget.rules`.

Where the TorchScript trace records the operator a model calls (``aten::linear``),
the dispatcher runs what it decomposes into (``aten::t`` + ``aten::addmm``). Both
are priced by the same registry: each dispatched call becomes the same
``torchprofile.ir.Node`` a trace would give (inputs in schema order, tensors as
shapes, other arguments as values), named with ``conventions.normalize``.

One layer above, a ``TorchFunctionMode`` sees the calls of composite operators
(those the dispatcher decomposes, such as ``linear``, ``layer_norm``,
``scaled_dot_product_attention``, ``dropout``) that have a rule, prices them as
the trace does and mutes the dispatch pricing inside them. That keeps both
captures on the same numbers where a decomposition would add terms (dropout in
training mode is a ``mul``; the math attention SDPA takes on meta scales q and k
with two ``mul``) or hide them. A composite called from inside a Python function
that itself dispatched to this mode (``F.multi_head_attention_forward``) is seen
decomposed; the one decomposition that adds terms there, the math attention, is
recognised by its ``_safe_softmax`` and its scaling ``mul`` taken back out. Code
that runs below Python (``loss.backward()``, fused optimizers) is seen at
dispatch level only.

On meta with the fast path on, the function mode makes a CNN's common layers itself (``conv2d``,
``relu``, ``max_pool2d``, ``cat``, a 2-d ``linear``), recording what the dispatch mode would record, so
they never reach the dispatcher: see :mod:`.direct`.

Higher-order operators (``torch.cond``, ``while_loop``, ``flex_attention``, ``invoke_subgraph``, ...)
reach the dispatch mode as one call holding Python bodies. ``cond`` runs both branches under the
capture and counts the costlier one (whatever the predicate: on meta it has no value; torch's
FlopCounterMode counts an upper bound too), returning the branch the predicate takes where it has a
value; ``flex_attention`` (and its backward) is priced as one attention by its rule; any other runs
its eager implementation under the capture, so the operators of its bodies are priced. One with no
eager implementation fails with a one-line message.

A jagged nested tensor is priced by its values (``[sum of lengths, ...]``), the shape its operators
run on: ``linear`` on one costs (total tokens) x in x out.

``capture(module)`` works around any code: a forward, a backward, an optimizer step.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch.nn as nn
from torch._C import DispatchKey
from torch._ops import HigherOrderOperator
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torchprofile.ir import Node, Variable

from pytest_flopbudget.engine import fastmeta, rules
from pytest_flopbudget.engine.capture import direct
from pytest_flopbudget.engine.capture.checks import LOCAL_SCALAR, AnsweredChecks
from pytest_flopbudget.engine.capture.tally import Tally, module_hooks
from pytest_flopbudget.engine.context import CONSTANT_TYPES
from pytest_flopbudget.engine.fastmeta import memo
from pytest_flopbudget.engine.memory import Liveness, call_bytes, record
from pytest_flopbudget.engine.memory.liveness import input_tensors, module_state
from pytest_flopbudget.engine.memory.traffic import dtype_name, kind_of
from pytest_flopbudget.engine.meta import meta_output
from pytest_flopbudget.engine.rules.attention import READS_OFFSETS
from pytest_flopbudget.results import conventions

__all__ = ["capture", "has_nested", "Tally"]

_COMPOSITE = "CompositeImplicitAutograd"


_INTEGER = (torch.int32, torch.int64)


def _shape(value: torch.Tensor) -> list[int]:
    """The shape a rule prices: a jagged nested tensor's values (``[sum of lengths, ...]``)."""
    if value.is_nested:
        values = getattr(value, "_values", None)
        if not isinstance(values, torch.Tensor):
            raise ValueError(
                "a nested tensor of strided layout has no one shape to price its operators by; "
                "build it with layout=torch.jagged (priced by its values)"
            )
        return list(values.shape)
    return list(value.shape)


def _offsets(value: torch.Tensor) -> list[int] | None:
    """The values of a small 1-D integer tensor holding real data (the offsets of a variable-length
    batch), which shapes alone cannot give; None elsewhere."""
    if type(value) is not torch.Tensor or value.dtype not in _INTEGER or value.dim() != 1 or value.numel() > 4_097:
        return None
    if value.is_meta:
        return None
    try:
        return [int(x) for x in value.tolist()]
    except Exception:
        return None


def _variable(value: Any, index: int, offsets: bool = False) -> Variable:
    """A trace-like ``Variable``: a tensor's shape (with ``offsets``, and the values of an offsets
    tensor); a list's items (tensors as shapes); a constant's value."""
    name = str(index)
    if isinstance(value, torch.Tensor):
        return Variable(name=name, dtype=dtype_name(value.dtype, "torch."), shape=_shape(value), value=_offsets(value) if offsets else None)
    if isinstance(value, (list, tuple)):
        items = [_shape(v) if isinstance(v, torch.Tensor) else _plain(v) for v in value]
        return Variable(name=name, dtype="list", value=items)
    return Variable(name=name, dtype=type(value).__name__, value=_plain(value))


def _plain(value: Any) -> Any:
    if isinstance(value, torch.SymInt):
        return int(value)
    if isinstance(value, (torch.dtype, torch.device, torch.layout, torch.memory_format)):
        return str(value)
    return value


def _outputs(out: Any) -> list[Variable]:
    items = out if isinstance(out, (tuple, list)) else (out,)
    return [_variable(v, -1 - i) for i, v in enumerate(items)]


_Param = tuple[str, bool, bool, Any, Any]  # name, kwarg-only, has a default, the default, the type a value needs
_SIGNATURES: dict[int, tuple[Any, tuple[int, frozenset[str], tuple[_Param, ...]]]] = {}


def _needs(kind: Any) -> Any:
    """The Python type a value of a schema argument must have to bind: a Tensor for ``Tensor``, a str for
    ``str`` (a Dimname overload must not take an int dimension), else None (not checked)."""
    if isinstance(kind, torch._C.TensorType):
        return torch.Tensor
    if isinstance(kind, torch._C.StringType):
        return str
    return None


def _signature(schema: Any) -> tuple[int, frozenset[str], tuple[_Param, ...]]:
    """A schema's arguments as plain tuples, read once per schema (each ``schema.arguments`` builds them
    anew). Keyed by identity (a schema with a list default does not hash); the schema is held, so its id
    is never reused."""
    held = _SIGNATURES.get(id(schema))
    if held is not None and held[0] is schema:
        return held[1]
    params = tuple(
        (a.name, a.kwarg_only, a.has_default_value(), a.default_value if a.has_default_value() else None,
         _needs(a.type))
        for a in schema.arguments
    )
    entry = (sum(1 for p in params if not p[1]), frozenset(p[0] for p in params), params)
    _SIGNATURES[id(schema)] = (schema, entry)
    return entry


def _bind(schema: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any] | None:
    """The arguments in schema order (defaults filled in), or None when they do not fit this schema."""
    positional, names, params = _signature(schema)
    if len(args) > positional or (kwargs and any(k not in names for k in kwargs)):
        return None
    bound = []
    for i, (name, kwarg_only, has_default, default, needs) in enumerate(params):
        if i < len(args) and not kwarg_only:
            value = args[i]
        elif name in kwargs:
            value = kwargs[name]
        elif has_default:
            value = default
        else:
            return None
        if needs is not None and not isinstance(value, needs):
            return None
        bound.append(value)
    return bound


def _composite_schemas(name: str) -> list[Any]:
    """Schemas of the composite (decomposed at dispatch) overloads of ``aten::name``, default first."""
    packet = getattr(torch.ops.aten, name, None)
    if packet is None or not hasattr(packet, "overloads"):
        return []
    found = []
    for overload in sorted(packet.overloads(), key=lambda o: o != "default"):
        qualified = f"aten::{name}" if overload == "default" else f"aten::{name}.{overload}"
        try:
            if torch._C._dispatch_has_kernel_for_dispatch_key(qualified, _COMPOSITE):
                found.append(getattr(packet, overload)._schema)
        except Exception:
            continue
    return found


_SCHEMAS: dict[Any, tuple[str, list[Any], inspect.Signature | None]] = {}


def _composite_of(func: Any) -> tuple[str, list[Any], inspect.Signature | None]:
    """The operator name, composite schemas with a rule, and Python signature (for Python functions) of ``func``."""
    try:
        return _SCHEMAS[func]
    except (KeyError, TypeError):
        pass
    name = getattr(func, "__name__", "") or ""
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]  # Tensor.__matmul__ -> matmul
    operator = f"aten::{name}"
    schemas = _composite_schemas(name) if name and rules.has_rule(operator) else []
    if schemas and rules.is_free(operator):
        # a free composite whose output may alias its input (flatten, unflatten, a Dimname overload of
        # transpose): seen whole, it would move bytes; its dispatched pieces say whether it is a view
        # or a copy
        schemas = [s for s in schemas if not any(r.alias_info is not None for r in s.returns)]
    signature = None
    if schemas and inspect.isfunction(func):
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError):
            schemas = []
    entry = (operator, schemas, signature)
    try:
        _SCHEMAS[func] = entry
    except TypeError:
        pass
    return entry


def _bind_call(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, list[Any]] | None:
    operator, schemas, signature = _composite_of(func)
    if not schemas:
        return None
    if operator == "aten::einsum":  # torch.einsum(equation, *operands) or (equation, [operands])
        if not args or not isinstance(args[0], str):
            return None
        operands = args[1] if len(args) == 2 and isinstance(args[1], (list, tuple)) else args[1:]
        return operator, [args[0], list(operands)]
    if signature is not None:  # a Python function (F.layer_norm): bind by parameter name
        try:
            call = signature.bind(*args, **kwargs)
        except TypeError:
            return None
        call.apply_defaults()
        variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        named = {k: v for k, v in call.arguments.items() if signature.parameters[k].kind not in variadic}
    for schema in schemas:
        if signature is not None:  # by name (F.batch_norm's order differs), else by position (training/train)
            names = {a.name for a in schema.arguments}
            bound = _bind(schema, (), {k: v for k, v in named.items() if k in names})
            if bound is None:
                bound = _bind(schema, tuple(named.values())[: len(schema.arguments)], {})
        else:
            bound = _bind(schema, args, kwargs)
        if bound is not None:
            return operator, bound
    return None


_FREE, _PRICED, _UNPRICED = range(3)

# What pricing one call records: operator, kind (free, priced, unpriced), MACs (None where the rule
# failed), and (dtype, bytes read, bytes written) or None for a call that moves nothing.
Effect = tuple[str, int, int | None, tuple[str, int, int] | None]


def _node(operator: str, inputs: list[Any], out: Any) -> Node:
    return Node(
        operator=operator,
        attributes={},
        inputs=[_variable(v, i, operator in READS_OFFSETS) for i, v in enumerate(inputs)],
        outputs=_outputs(out),
        scope="",
    )


def _value_key(value: Any) -> Any:
    """What a node's variable holds of ``value``, hashable: a tensor's dtype and shape, a constant with its
    type (``1``, ``1.0`` and ``True`` are different constants), a list's items likewise."""
    if isinstance(value, torch.Tensor):
        if value.is_nested:
            raise TypeError("a nested tensor is priced by its values")
        return value.dtype, value.shape
    if isinstance(value, (list, tuple)):
        return tuple(_value_key(v) for v in value)
    kind = type(value)
    if kind not in CONSTANT_TYPES:
        raise TypeError(f"not a plain constant: {kind.__name__}")
    return kind, value


# A built-in rule is a function of its node alone (and of the attention backward convention, in the key):
# its answer for one operator and one signature of inputs and outputs is remembered, so a call seen before
# (the same layer shape again, a count repeated) builds no node. A rule set by register_rule is always
# called (it may keep state of its own).
_PRICES: dict[Any, int | None] = {}
_PRICES_LIMIT = 50_000  # entries (a few hundred bytes each) kept before it starts afresh


def _priced(operator: str, inputs: list[Any], out: Any) -> int | None:
    key = rules.resolve(operator)
    if key is None:
        return None
    fn = rules.RULES[key]
    if fn not in rules.BUILT_IN or operator in READS_OFFSETS:
        return rules.price(_node(operator, inputs, out))
    try:
        signature = (fn, operator, rules.attention_backward(), _value_key(inputs), _value_key(out))
        return _PRICES[signature]
    except TypeError:  # something unhashable or nested: priced from its node
        return rules.price(_node(operator, inputs, out))
    except KeyError:
        pass
    macs = _PRICES[signature] = rules.price(_node(operator, inputs, out))
    if len(_PRICES) > _PRICES_LIMIT:
        _PRICES.clear()
    return macs


class _Capture:
    """The running tally and the module stack; prices a call of one operator."""

    def __init__(self, where: Callable[[], str] | None = None) -> None:
        self.tally = Tally()
        self.where = where  # names the module for code outside any submodule's forward
        self.names: list[str] = []
        self.stack: list[int] = []
        self.muted = 0  # > 0 inside a composite operator priced as a whole
        self.recent: list[tuple[str, str, int]] = []  # the last priced calls: operator, module, MACs
        self.kinds: dict[Any, tuple[str, int]] = {}  # dispatched op -> (name, FREE | PRICED | UNPRICED)
        self.live: Liveness | None = None  # peak memory, where watched
        # On meta with the fast path on, the shape functions of engine/fastmeta (the FastMeta mode below would
        # give the same outputs, one mode later), and the answers to known input checks (AnsweredChecks)
        self.shapes: dict[Any, Callable[..., Any]] | None = None
        self.checks: AnsweredChecks | None = None
        self.recent_costs: list[tuple[str, str, str, int, int, int]] = []  # cost keys of ``recent``
        self.direct: dict[Any, direct.Handler] | None = None  # on the fast meta path: calls made at the Python level

    def module(self) -> str:
        return self.names[self.stack[-1]] if self.stack else (self.where() if self.where else "")

    def traffic(self, func: Any, operator: str, args: Any, kwargs: dict[str, Any], out: Any, macs: int, module: str) -> None:
        """Record the bytes the call moves (engine/memory/traffic.py) with its MACs."""
        self._record(operator, module, call_bytes(func, operator, args, kwargs, out), macs)

    def _record(self, operator: str, module: str, moved: tuple[str, int, int] | None, macs: int) -> None:
        if (moved is not None and (moved[1] or moved[2])) or macs:
            dtype, read, written = moved if moved is not None else ("", 0, 0)
            record(self.tally.costs, operator, module, dtype, macs, read, written)
            if macs:
                self.recent_costs = (self.recent_costs + [(operator, module, dtype, macs, read, written)])[-3:]

    def allocated(self, func: Any, out: Any) -> None:
        """Peak memory: count the new storages of a dispatched call's outputs."""
        assert self.live is not None
        try:
            operator = self.kinds[func][0]
        except KeyError:
            operator = conventions.normalize(func._schema.name)
        if kind_of(func, operator).fresh:  # views and in-place results are storages that exist already
            self.live.allocated(out, self.module(), operator)

    def dispatched(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Effect:
        """Price one dispatched call; free operators (most of them) cost a dict lookup. Returns what it
        recorded (:meth:`apply` records the same again)."""
        try:
            operator, kind = self.kinds[func]
        except KeyError:
            operator = conventions.normalize(func._schema.name)
            kind = _UNPRICED if not rules.has_rule(operator) else _FREE if rules.is_free(operator) else _PRICED
            self.kinds[func] = operator, kind
        if kind != _PRICED:
            effect: Effect = (operator, kind, 0, call_bytes(func, operator, args, kwargs, out))
        else:
            bound = _bind(func._schema, args, kwargs)
            inputs = bound if bound is not None else list(args)
            macs = _priced(operator, inputs, out)
            effect = (operator, kind, macs, call_bytes(func, operator, args, kwargs, out))
        self.apply(effect)
        return effect

    def price(self, operator: str, inputs: list[Any], out: Any) -> Effect:
        """Price a call of ``operator`` (a composite seen at the Python level) from its inputs and output.
        Returns what it recorded."""
        operator = conventions.normalize(operator)
        kind = _UNPRICED if not rules.has_rule(operator) else _FREE if rules.is_free(operator) else _PRICED
        macs = _priced(operator, inputs, out) if kind == _PRICED else 0
        effect: Effect = (operator, kind, macs, call_bytes(None, operator, inputs, {}, out))
        self.apply(effect)
        return effect

    def apply(self, effect: Effect) -> None:
        """Record one priced call, in the running module: an unpriced operator listed, the bytes it moves
        with its MACs, the MACs added (a rule that fails lists the operator as unpriced)."""
        operator, kind, macs, moved = effect
        module = self.module()
        if kind == _UNPRICED:
            self.tally.miss(operator)
        self._record(operator, module, moved, macs or 0)
        if kind != _PRICED:
            return
        if macs is None:
            self.tally.miss(operator)
            return
        self.tally.add(module, operator, macs)
        if macs:
            self.recent = (self.recent + [(operator, module, macs)])[-3:]

    def math_attention(self) -> None:
        """``_safe_softmax`` ends QK^T of the math attention (SDPA on meta, or where no fused kernel fits):
        ``mul(q, s)``, ``mul(k, s)``, ``bmm``. The two scaling ``mul`` are no part of the attention's
        count in the trace (one ``scaled_dot_product_attention`` node): take them back out."""
        if [op for op, _, _ in self.recent] == ["aten::mul", "aten::mul", "aten::bmm"]:
            for operator, module, macs in self.recent[:2]:
                self.tally.add(module, operator, -macs)
                if not self.tally.by_operator[operator]:
                    del self.tally.by_operator[operator]
                if not self.tally.by_module[module]:
                    del self.tally.by_module[module]
            for key in self.recent_costs[:2]:  # the same calls in the costs: MACs taken out, bytes kept
                if self.tally.costs.get(key):
                    self.tally.costs[key] -= 1
                    if not self.tally.costs[key]:
                        del self.tally.costs[key]
                    record(self.tally.costs, key[0], key[1], key[2], 0, key[4], key[5])
        self.recent = []
        self.recent_costs = []

    def enter(self, index: int) -> None:
        self.stack.append(index)

    def leave(self, output: Any = None) -> None:
        if self.stack:
            self.stack.pop()


_DIRECT_ON = [True]  # tests turn direct calls off to compare


_SAFE_SOFTMAX = getattr(getattr(torch.ops.aten, "_safe_softmax", None), "default", None)


class _Dispatch(TorchDispatchMode):
    supports_higher_order_operators = True  # they reach __torch_dispatch__, see _higher_order

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # torch would wrap __torch_dispatch__ in torch._dynamo.disable: an import of ~1 s, and a cost per call

    def __init__(self, state: _Capture) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # torch's base class is unannotated
        self.state = state

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if isinstance(func, HigherOrderOperator):
            return _higher_order(self, func, args, kwargs)
        out = None
        state = self.state
        if state.shapes is not None:  # the FastMeta mode's work, done here: one mode less per operator
            shape_fn = state.shapes.get(func)
            if shape_fn is not None:
                out = shape_fn(*args, **kwargs) if kwargs else shape_fn(*args)
        if out is None:
            if func is LOCAL_SCALAR and state.checks is not None:
                answer = state.checks.answer(args)
                if answer is not None:
                    return answer
            out = meta_output(func, args, kwargs)
            if out is None:
                # torch's kernel; on the fast meta path, its slow meta kernels' outputs remembered by input layout
                out = func(*args, **kwargs) if state.shapes is None else memo.run(func, args, kwargs)
        if self.state.live is not None:
            self.state.allocated(func, out)
        if not self.state.muted:
            if func is _SAFE_SOFTMAX:
                self.state.math_attention()
            self.state.dispatched(func, args, kwargs, out)
        return out


# ---- higher-order operators --------------------------------------------------------------


def _isolated(mode: _Dispatch, body: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, Tally]:
    """``body(*args)`` under the capture, its operators counted in a tally of their own."""
    state = mode.state
    outer, state.tally = state.tally, Tally(capture="dispatch")
    try:
        with mode:
            out = body(*args)
        return out, state.tally
    finally:
        state.tally = outer


def _merge_into(total: Tally, part: Tally) -> None:
    total.macs += part.macs
    for store, more in ((total.by_module, part.by_module), (total.by_operator, part.by_operator), (total.unpriced, part.unpriced)):
        for key, value in more.items():
            store[key] = store.get(key, 0) + value


def _cond(mode: _Dispatch, pred: Any, true_fn: Any, false_fn: Any, operands: Any) -> Any:
    """Both branches run under the capture; the costlier one counts (the larger MACs, whatever the
    predicate). The output is the branch the predicate takes, or the true branch's where the predicate
    has no value (meta: both branches give the same shapes)."""
    operands = tuple(operands)
    taken_true, true_tally = _isolated(mode, true_fn, operands)
    taken_false, false_tally = _isolated(mode, false_fn, operands)
    _merge_into(mode.state.tally, true_tally if true_tally.macs >= false_tally.macs else false_tally)
    for tally in (true_tally, false_tally):  # an operator no rule prices in either branch is reported
        for op, n in tally.unpriced.items():
            mode.state.tally.unpriced.setdefault(op, n)
    if isinstance(pred, torch.Tensor):
        if pred.is_meta or type(pred) is not torch.Tensor:
            return taken_true
        pred = bool(pred)
    return taken_true if pred else taken_false


def _higher_order(mode: _Dispatch, func: HigherOrderOperator, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A higher-order operator (the mode is off while this runs): ``cond`` by :func:`_cond`; one with a
    rule (``flex_attention``) priced as one call; any other by its eager implementation run under the
    capture, so the operators of its bodies are priced."""
    name = str(func.name())
    if name == "cond" and not kwargs:
        return _cond(mode, *args)
    operator = f"higher_order::{name}"
    if rules.has_rule(operator):
        out = func(*args, **kwargs)
        if not mode.state.muted:
            mode.state.price(operator, list(args), out)
        return out
    kernel = func.py_kernels.get(DispatchKey.CompositeExplicitAutograd)
    if kernel is None:
        raise NotImplementedError(
            f"the higher-order operator {name} has no eager implementation whose operators the count could see; "
            f"price it with register_rule({operator!r}, fn)"
        )
    with mode:
        return kernel(*args, **kwargs)


_EAGER: list[bool] = [False]


def _eager_below_dispatch() -> None:
    """Have dynamo leave the capture's dispatch handler, and all it calls, to run eagerly.

    Eager ``torch.cond`` and ``while_loop`` call their operator through ``torch.compile``, which
    skips the frame because a dispatch mode (the capture) is active, but still compiles the frames
    it calls: the handler runs with the mode popped and would be compiled (and fail). torch's own
    modes are wrapped in ``torch._dynamo.disable`` for this; here (where importing dynamo for every
    call would cost) the handler's code is marked to skip, recursively, once dynamo is in use:
    when the first higher-order operator reaches the capture (dynamo is imported by then)."""
    if _EAGER[0]:
        return
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    if eval_frame is None:
        return
    try:
        from torch._dynamo.types import FrameAction, FrameExecStrategy  # type: ignore[attr-defined]

        eval_frame.set_code_exec_strategy(
            _Dispatch.__torch_dispatch__.__code__, FrameExecStrategy(FrameAction.SKIP, FrameAction.SKIP)
        )
    except Exception:
        return
    _EAGER[0] = True


def has_nested(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether a nested tensor is among the inputs (a trace records no shape for it)."""
    items = list(args) + list(kwargs.values())
    while items:
        item = items.pop()
        if isinstance(item, torch.Tensor):
            if item.is_nested:
                return True
        elif isinstance(item, (list, tuple)):
            items.extend(item)
        elif isinstance(item, dict):
            items.extend(item.values())
    return False


class _Composites(TorchFunctionMode):
    def __init__(self, state: _Capture) -> None:
        super().__init__()
        self.state = state

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if isinstance(func, HigherOrderOperator):
            _eager_below_dispatch()
        if self.state.direct is not None and not self.state.muted:
            try:
                handler = self.state.direct.get(func)
            except TypeError:  # an unhashable callable
                handler = None
            if handler is not None and direct.ready():
                out = direct.call(self.state, func, handler, args, kwargs, _bind_call)
                if out is not direct.MISS:
                    return out
        call = None if self.state.muted else _bind_call(func, args, kwargs)
        if call is None:
            return func(*args, **kwargs)
        self.state.muted += 1
        try:
            out = func(*args, **kwargs)
        finally:
            self.state.muted -= 1
        self.state.price(*call, out)
        return out


@contextmanager
def capture(
    module: nn.Module | None = None,
    where: Callable[[], str] | None = None,
    live: Liveness | None = None,
    shapes: dict[Any, Callable[..., Any]] | None = None,
    checks: AnsweredChecks | None = None,
) -> Iterator[Tally]:
    """Count every operator that runs inside the block; yields the running :class:`Tally`.

    ``module``'s submodules attribute the MACs of their forward (by forward hooks);
    code outside any submodule's forward (a backward, an optimizer step) counts
    under ``where()`` when given (a training step's backward names the module whose
    forward made the autograd node that runs), else under ``""``. Nothing is run
    differently: the block's code runs as it would. With ``live``, the storages each operator makes
    are counted there (peak memory, :mod:`pytest_flopbudget.engine.memory.liveness`). ``shapes`` (the fast
    meta path's shape functions, where it is on) and ``checks`` (input checks answered on meta) are
    applied by the capture's own mode.
    """
    state = _Capture(where)
    state.live = live
    state.shapes, state.checks = shapes, checks
    if shapes is not None and live is None and _DIRECT_ON[0]:
        state.direct = direct.DIRECT
    state.tally.capture = "dispatch"
    with module_hooks(module, state.enter, state.leave) as names, _eager_flex_attention():
        state.names.extend(names)
        with _Dispatch(state), _Composites(state):
            yield state.tally


@contextmanager
def _eager_flex_attention() -> Iterator[None]:
    """``flex_attention`` called outside ``torch.compile`` compiles its operator with dynamo, which
    cannot trace it under a dispatch mode (torch's FlopCounterMode fails alike): for the block,
    call the operator directly (torch's own debug switch), so the capture sees it."""
    flex = sys.modules.get("torch.nn.attention.flex_attention")
    if flex is None or not hasattr(flex, "_FLEX_ATTENTION_DISABLE_COMPILE_DEBUG"):
        yield
        return
    before = getattr(flex, "_FLEX_ATTENTION_DISABLE_COMPILE_DEBUG")  # noqa: B009  (a module torch may lack)
    setattr(flex, "_FLEX_ATTENTION_DISABLE_COMPILE_DEBUG", True)  # noqa: B010
    try:
        yield
    finally:
        setattr(flex, "_FLEX_ATTENTION_DISABLE_COMPILE_DEBUG", before)  # noqa: B010


def run(
    fn: Any,
    module: nn.Module | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    meta: bool,
    memory: bool = False,
    checks: AnsweredChecks | None = None,
) -> Tally:
    """The dispatch counter: one call of ``fn(*args, **kwargs)`` inside :func:`capture`; with ``memory``,
    the peak of live tensor bytes too (``Tally.memory``); with ``checks``, known input checks are answered
    on meta."""
    live = None
    if memory:
        live = Liveness()
        live.seed(module_state(module), "weights")
        live.seed(input_tensors((args, kwargs)), "activations")
    # On meta, the capture's own mode applies the fast shape functions (the FastMeta mode would be one more
    # mode for every operator, and for every output a shape function allocates).
    shapes = fastmeta.SHAPES if meta and fastmeta.enabled() else None
    with nullcontext() if shapes is not None or not meta else fastmeta.meta_mode(False), \
            capture(module, live=live, shapes=shapes, checks=checks) as tally:
        out = fn(*args, **kwargs)
        del out
    if live is not None:
        tally.memory = live.state()
    return tally
