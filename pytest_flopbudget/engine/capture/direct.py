"""Direct calls: the layers of a convolutional network priced at the Python level, without a trip through
the dispatcher.

On meta with the fast path on, a call of ``F.conv2d``, ``F.relu``, ``F.max_pool2d``, ``torch.cat`` or a
2-d ``F.linear`` is seen twice by the dispatch capture: once by its ``TorchFunctionMode`` (as a whole), then
again, decomposed, by its ``TorchDispatchMode``, which makes the output with a shape function of
:mod:`pytest_flopbudget.engine.fastmeta`. Each trip through a Python mode costs several microseconds,
as much as a small CNN's whole meta kernel. A direct call makes the output here, at the first mode, with
the same shape function the second would use, and records exactly what the second would have recorded
(the same operator, arguments and output, so the same MACs, bytes and module); the dispatcher never sees
the call.

A direct call is taken only where nothing could tell it from the dispatched one: no gradient recorded, no
other mode on either stack, no TorchScript tracer, no functorch transform, no autocast, plain meta tensors of a float
dtype, arguments whose form is known. Anything else (and any case its shape function declines) returns
:data:`MISS` having recorded nothing, and the call takes the dispatcher's path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from pytest_flopbudget.engine.fastmeta.conv import _pair as pooling_pair
from pytest_flopbudget.engine.fastmeta.mode import _PLAIN
from pytest_flopbudget.engine.rules import BUILT_IN, RULES
from pytest_flopbudget.engine.rules.attention import READS_OFFSETS
from pytest_flopbudget.engine.rules.registry import resolve

__all__ = ["DIRECT", "MISS", "call", "ready"]

aten = torch.ops.aten

MISS: Any = object()  # a direct call declined: the call takes the dispatcher's path

_grad = torch.is_grad_enabled
_function_modes = torch._C._len_torch_function_stack
_dispatch_modes = torch._C._len_torch_dispatch_stack
_tracing = torch._C._get_tracing_state
_transforms = torch._C._functorch.peek_interpreter_stack
_autocast = torch._C._is_any_autocast_enabled
_no_dispatch = torch._C._DisableTorchDispatch


def ready() -> bool:
    """Whether a direct call is indistinguishable from a dispatched one here: inside the capture's own
    ``__torch_function__`` (its function mode popped, its dispatch mode the one left), no gradient to
    record, no tracer, no functorch transform, no autocast (which casts inputs below this level)."""
    return (
        not _grad() and not _function_modes() and _dispatch_modes() == 1
        and _tracing() is None and _transforms() is None and not _autocast()
    )


def _pair(value: Any) -> list[int] | None:
    """A convolution's stride, padding or dilation as two ints, expanded as ``conv2d`` expands them: an int,
    or a list of one or two ints (:func:`fastmeta.conv._pair`, which reads the dispatched lists)."""
    if type(value) is int:
        return [value, value]
    pair = pooling_pair(value)
    return None if pair is None else list(pair)


# A handler: (capture state, the composite call bound to its schema or None, args, kwargs) -> MISS, or the
# output and what pricing it recorded (the capture's Effect).
Handler = Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], Any]


def _conv2d(state: Any, call: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``conv2d`` of a 4-d input: priced whole (``aten::conv2d``), its output the ``convolution`` shape function's."""
    if call is None:
        return MISS
    x, weight, bias, stride, padding, dilation, groups = call[1]
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or type(groups) is not int:
        return MISS
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    if stride is None or padding is None or dilation is None:
        return MISS  # padding="same", or an unusual form: conv2d's own code decides
    shape_fn = state.shapes.get(aten.convolution.default)
    if shape_fn is None:
        return MISS
    with _no_dispatch():
        out = shape_fn(x, weight, bias, stride, padding, dilation, False, [0, 0], groups)
    if out is None:
        return MISS
    return out, state.price(*call, out)


def _linear(state: Any, call: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``linear`` of a 2-d input (``addmm``, or ``mm`` without a bias): priced whole (``aten::linear``), its
    output the new contiguous ``[batch, out_features]`` the ``addmm`` / ``mm`` shape functions make."""
    if call is None:
        return MISS
    x, weight, bias = call[1]
    if not isinstance(x, torch.Tensor) or not isinstance(weight, torch.Tensor) or x.dim() != 2 or weight.dim() != 2:
        return MISS
    mm = state.shapes.get(aten.mm.default)
    if mm is None or (bias is not None and (not isinstance(bias, torch.Tensor) or bias.dim() != 1)):
        return MISS
    with _no_dispatch():
        transposed = weight.t()
        out = mm(x, transposed)
        if out is not None and bias is not None:
            out = state.shapes[aten.addmm.default](bias, x, transposed)
    if out is None:
        return MISS
    return out, state.price(*call, out)


def _dispatched(state: Any, op: Any, args: tuple[Any, ...]) -> Any:
    """``op(*args)`` made by its shape function and recorded as the dispatch mode records it."""
    shape_fn = state.shapes.get(op)
    if shape_fn is None:
        return MISS
    with _no_dispatch():
        out = shape_fn(*args)
    if out is None:
        return MISS
    if out is args[0]:
        _written(out)
    return out, state.dispatched(op, args, {}, out)


_increment_version = getattr(torch.autograd.graph, "increment_version", None)


def _written(t: torch.Tensor) -> None:
    """Bump the version counter of a tensor an in-place call wrote, as the dispatcher's in-place kernels
    do (the call never reaches them here)."""
    if _increment_version is not None:
        _increment_version(t)


def _relu(state: Any, call: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``F.relu(x, inplace)``: one ``relu`` or ``relu_``."""
    if len(args) > 2 or (kwargs and set(kwargs) != {"inplace"}) or not args:
        return MISS
    inplace = args[1] if len(args) > 1 else kwargs.get("inplace", False)
    if type(inplace) is not bool or not isinstance(args[0], torch.Tensor):
        return MISS
    return _dispatched(state, aten.relu_.default if inplace else aten.relu.default, (args[0],))


def _relu_of(op: Any) -> Handler:
    """``torch.relu(x)``, ``x.relu()``, ``torch.relu_(x)``, ``x.relu_()``: the operator itself."""
    def handler(state: Any, call: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if len(args) != 1 or kwargs or not isinstance(args[0], torch.Tensor):
            return MISS
        return _dispatched(state, op, (args[0],))
    return handler


def _cat(state: Any, call: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``torch.cat(tensors, dim)`` with an int ``dim`` and no ``out``."""
    if not args or len(args) > 2 or (kwargs and set(kwargs) != {"dim"}):
        return MISS
    tensors = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    if type(dim) is not int or not isinstance(tensors, (list, tuple)) or not tensors:
        return MISS
    if not all(isinstance(t, torch.Tensor) for t in tensors):
        return MISS
    return _dispatched(state, aten.cat.default, (list(tensors), dim) if dim else (list(tensors),))


_POOL_NAMES = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")


def _max_pool2d(state: Any, call: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``F.max_pool2d(x, ...)`` without indices: one ``max_pool2d_with_indices``, its values returned."""
    if not args or len(args) > 7 or not isinstance(args[0], torch.Tensor) or any(k not in _POOL_NAMES for k in kwargs):
        return MISS
    given = dict(zip(_POOL_NAMES, args[1:]))
    if any(k in given for k in kwargs):
        return MISS
    given.update(kwargs)
    if "kernel_size" not in given or given.get("return_indices", False) is not False:
        return MISS
    ceil_mode = given.get("ceil_mode", False)
    if type(ceil_mode) is not bool:
        return MISS
    kernel = _pair(given["kernel_size"])
    stride = given.get("stride")
    steps = kernel if stride is None or (isinstance(stride, (list, tuple)) and not stride) else _pair(stride)
    padding, dilation = _pair(given.get("padding", 0)), _pair(given.get("dilation", 1))
    if kernel is None or steps is None or padding is None or dilation is None:
        return MISS
    done = _dispatched(state, aten.max_pool2d_with_indices.default, (args[0], kernel, steps, padding, dilation, ceil_mode))
    return done if done is MISS else (done[0][0], done[1])


# ---- the same call again ------------------------------------------------------------------------
#
# A direct call's output layout, MACs and bytes are functions of its arguments' layouts (type, shape,
# strides, storage offset, dtype, which arguments are the same tensor) and constants alone: the second
# call with the same ones (the same layer shape again, a count repeated) makes its output from the
# layout remembered and records what the first recorded, in the module running now. Only where the
# operator's rule is built in (a rule set by register_rule is called every time) and still the one that
# priced the first call.

_MEMO: dict[Any, tuple[Any, Any, tuple[str, str | None, Any]]] = {}  # key -> (output, effect, _rule_of)
_MEMO_LIMIT = 20_000  # entries kept before it starts afresh
_NO_RULE: Any = object()


class _Unkeyed(Exception):
    """An argument whose layout or value is not a plain key: the call is made as usual."""


def _part(value: Any, ids: list[int]) -> Any:
    """One argument's share of a key: a tensor's layout (and which argument it first was), a constant, a
    list or tuple of these; raises :class:`_Unkeyed` for anything else."""
    kind = type(value)
    if kind in _PLAIN:
        if not value.is_meta or value.layout != _STRIDED:
            raise _Unkeyed
        ident = id(value)
        first = ids.index(ident) if ident in ids else len(ids)  # the same tensor twice is read once
        ids.append(ident)
        return kind, first, value.shape, value.stride(), value.storage_offset(), value.dtype
    if kind in _CONSTANTS:
        return kind, value
    if kind is tuple or kind is list:
        if all([type(v) is int for v in value]):  # a kernel size, a stride, a padding
            return _INTS, kind, value if kind is tuple else tuple(value)
        return kind, tuple([_part(v, ids) for v in value])
    raise _Unkeyed


_INTS = object()  # marks a tuple or list of ints in a key (no other part starts with it)


def _key(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """What a direct call's outcome depends on, hashable; None where something is not plainly keyed."""
    ids: list[int] = []
    try:
        key = tuple([_part(v, ids) for v in args])
        if kwargs:
            return func, key, tuple([(k, _part(v, ids)) for k, v in kwargs.items()])
        return func, key
    except _Unkeyed:
        return None


_CONSTANTS = frozenset({int, float, bool, str, type(None)})
_STRIDED = torch.strided


def _tensors(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """The tensors among the arguments, each time one appears, in the order :func:`_part` numbers them."""
    found: list[Any] = []

    def walk(value: Any) -> None:
        if type(value) in _PLAIN:
            found.append(value)
        elif type(value) in (list, tuple):
            for v in value:
                walk(v)

    walk(args)
    walk(tuple(kwargs.values()))
    return found


def _rule_of(operator: str) -> tuple[str, str | None, Any]:
    """The operator's own registry key, the key that prices it, and that rule (or _NO_RULE)."""
    key = resolve(operator)
    return operator.lower(), key, (RULES[key] if key is not None else _NO_RULE)


def call(state: Any, func: Any, handler: Handler, args: tuple[Any, ...], kwargs: dict[str, Any],
         bind: Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]) -> Any:
    """A direct call of ``func``: remembered if it was made before with the same argument layouts, else
    made by ``handler`` (given the call bound to its schema by ``bind``); MISS where it declines."""
    key = _key(func, args, kwargs)
    if key is not None:
        held = _MEMO.get(key)
        if held is not None:
            made, effect, (own, rule_key, rule) = held
            # still priced by that rule: no rule set since for the operator itself or the one it resolved to
            if rule_key is not None and RULES.get(rule_key, _NO_RULE) is rule and (own == rule_key or own not in RULES):
                state.apply(effect)
                if made[0] == "input":  # an in-place call: the tensor it was given (most often the first argument)
                    written = args[0] if made[1] == 0 and args and type(args[0]) in _PLAIN else _tensors(args, kwargs)[made[1]]
                    _written(written)
                    return written
                with _no_dispatch():  # as the shape functions make theirs: not a call of the counted code
                    return torch.empty_strided(made[0], made[1], dtype=made[2], device="meta")
    done = handler(state, bind(func, args, kwargs), args, kwargs)
    if done is MISS:
        return MISS
    out, effect = done
    if key is not None:
        _remember(key, args, kwargs, out, effect)
    return out


def _remember(key: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, effect: Any) -> None:
    rules = _rule_of(effect[0])
    rule = rules[2]
    if rule is not None and (rule is _NO_RULE or rule not in BUILT_IN or effect[0] in READS_OFFSETS):
        return  # a rule of the user's (or none): priced every time
    if type(out) not in _PLAIN:
        return
    inputs = _tensors(args, kwargs)
    same = next((i for i, t in enumerate(inputs) if t is out), None)
    if same is not None:
        made: Any = ("input", same)
    elif out._base is None and out.storage_offset() == 0 and all(out is not t for t in inputs):
        made = (out.shape, out.stride(), out.dtype)
    else:
        return  # a view of an input: not what a direct call makes
    if len(_MEMO) >= _MEMO_LIMIT:
        _MEMO.clear()
    _MEMO[key] = (made, effect, rules)


DIRECT: dict[Any, Handler] = {
    F.conv2d: _conv2d,
    torch.conv2d: _conv2d,
    F.linear: _linear,
    F.relu: _relu,
    torch.relu: _relu_of(aten.relu.default),
    torch.Tensor.relu: _relu_of(aten.relu.default),
    torch.relu_: _relu_of(aten.relu_.default),
    torch.Tensor.relu_: _relu_of(aten.relu_.default),
    torch.cat: _cat,
    F.max_pool2d: _max_pool2d,
}
