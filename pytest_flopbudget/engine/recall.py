"""A count of a ``torch.compile``d module made again: given from memory where torch's own guards say the
call would run the compiled graph the earlier count's call ran.

A compiled module's bare pass runs its compiled graph (tens of microseconds for a small model), where a
count runs the module eagerly under the capture (engine/context.py ``run_eagerly``): no count that runs the
model goes under a pass that short. Dynamo decides whether a compiled graph stands for a call with its
*guards*, checks of everything the traced code read: types and attribute dicts of the objects, the global
grad mode and autocast state, each tensor's shape, strides, dtype and device. Where the entry that passes
is the one that passed for an earlier count's call, torch would run the same graph, so the eager code runs
the same operators on the same layouts, and the earlier count is given again (a copy). The guards are
checked under the settings the count runs the model with (``torch.no_grad()``, MultiheadAttention's fast
path off): a module compiled only for calls with gradients on has no entry that passes, and counts as
usual.

Only where all of these hold, else the count runs as usual:

- the object counted is the compiled module itself (``torch.compile(model)``, or ``model.compile()``);
- torch's cache of that module's frame can be read (its internals differ between releases: anything not
  found as expected is no memory, never an error), and the entry that passes compiled the whole frame
  into one graph (no graph break: its code resumes nowhere);
- the arguments are tensors, plain constants and lists, tuples and dicts of them, with the same layouts
  as before (an entry compiled for dynamic shapes passes for other sizes; the layout key does not);
- the same counter, mode, unpriced policy and memory setting, no rule set or removed since
  (``RULES.version``), and the same parameters and buffers (the same tensors, of the same shapes).
"""

from __future__ import annotations

import atexit
import copy
import inspect
import weakref
from collections.abc import Callable
from dataclasses import fields
from types import CodeType
from typing import Any

import torch
import torch.nn as nn

from pytest_flopbudget.engine.context import CONSTANT_TYPES
from pytest_flopbudget.engine.rules import RULES
from pytest_flopbudget.results.result import FlopResult

_LIMIT = 256  # counts kept before the memory starts afresh
_HELD: dict[Any, tuple[Any, ...]] = {}  # key -> (weakref to the module, cache entry, rules version, tensors, result)
_SIGNATURES: dict[Any, inspect.Signature] = {}
_STAR_ARGS = inspect.CO_VARARGS | inspect.CO_VARKEYWORDS
_DICT_FIELDS = tuple(f.name for f in fields(FlopResult) if f.type in ("dict[str, int]", "dict[str, dict[str, int]]"))


class _Unkeyed(Exception):
    """An argument that is not a plain key: no memory."""


def _layout(value: Any) -> Any:
    kind = type(value)
    if isinstance(value, torch.Tensor):
        if kind is not torch.Tensor and kind is not nn.Parameter:
            raise _Unkeyed  # a subclass (a nested or fake tensor, a wrapper) is counted as usual
        return (kind, tuple(value.shape), value.stride(), value.storage_offset(), value.dtype, value.device,
                value.requires_grad, value.layout)
    if kind in CONSTANT_TYPES:
        return kind, value
    if kind is tuple or kind is list:
        return kind, tuple([_layout(v) for v in value])
    if kind is dict:
        return kind, tuple([(k, _layout(v)) for k, v in value.items()])
    raise _Unkeyed


def _frame_function(module: nn.Module) -> Callable[..., Any] | None:
    """The function whose frame dynamo compiled for ``module`` (the ``fn`` the compiled wrapper closes over)."""
    state = module.__dict__
    wrapper = state.get("_compiled_call_impl") or state.get("_forward") or state.get("forward")
    code = getattr(wrapper, "__code__", None)
    closure = getattr(wrapper, "__closure__", None)
    if code is None or not closure or "fn" not in code.co_freevars:
        return None
    fn: Any = closure[code.co_freevars.index("fn")].cell_contents
    if getattr(fn, "__func__", None) in _CALLS:
        # A module of the user's own (``torch.compile(module)``, ``module.compile()``): torch's __call__ runs
        # outside dynamo (it skips torch.nn's files) and the frame compiled is the module's forward; hooks
        # would be frames of their own, so none may be set.
        owner = fn.__self__
        if owner._forward_hooks or owner._forward_pre_hooks or _global_hooks():
            return None
        fn = owner.forward
    return fn if isinstance(getattr(getattr(fn, "__func__", fn), "__code__", None), CodeType) else None


_CALLS = (nn.Module._wrapped_call_impl, nn.Module._call_impl)


def _global_hooks() -> bool:
    return bool(torch.nn.modules.module._has_any_global_hook())


def _frame_locals(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The locals ``fn``'s frame starts with for this call: its bound arguments and its closure's cells."""
    func: Any = getattr(fn, "__func__", fn)
    owner = getattr(fn, "__self__", None)
    code = func.__code__
    leading = 0 if owner is None else 1
    if code.co_argcount == leading and not code.co_kwonlyargcount and code.co_flags & _STAR_ARGS == _STAR_ARGS:
        # ``inner(*args, **kwargs)``, ``_wrapped_call_impl(self, *args, **kwargs)``: the frames dynamo compiles
        star, stars = code.co_varnames[leading:leading + 2]
        names = {star: args, stars: kwargs}
        if owner is not None:
            names[code.co_varnames[0]] = owner
    else:
        signature = _SIGNATURES.get(func)
        if signature is None:
            if len(_SIGNATURES) >= _LIMIT:
                _SIGNATURES.clear()
            signature = _SIGNATURES[func] = inspect.signature(func)
        bound = signature.bind(*(() if owner is None else (owner,)), *args, **kwargs)
        bound.apply_defaults()
        names = dict(bound.arguments)
    for name, cell in zip(code.co_freevars, func.__closure__ or ()):
        names[name] = cell.cell_contents
    return names


def _passing_entry(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The cache entry of ``module``'s compiled frame that this call would run (the first whose guards
    pass, as dynamo looks them up), if it compiled the whole frame into one graph; else None."""
    fn = _frame_function(module)
    if fn is None:
        return None
    code = getattr(fn, "__func__", fn).__code__
    entries = torch._C._dynamo.eval_frame._debug_get_cache_entry_list(code)
    if not entries:
        return None
    frame = _frame_locals(fn, args, kwargs)
    # checked as the count runs the model (torch.no_grad(), MultiheadAttention's fast path off; see count.py),
    # set directly: two context managers cost more than the rest of the check
    grad, mha = torch.is_grad_enabled(), torch.backends.mha.get_fastpath_enabled()
    torch._C._set_grad_enabled(False)
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        passing = next((entry for entry in entries if entry.guard_manager.check(frame)), None)
    finally:
        torch._C._set_grad_enabled(grad)
        torch.backends.mha.set_fastpath_enabled(mha)
    if passing is None:
        return None
    return passing if _whole(passing.code) else None


_WHOLE: dict[int, tuple[CodeType, bool]] = {}  # id of an entry's code -> (the code, whether it is one graph)


def _whole(code: CodeType) -> bool:
    """Whether dynamo's code for a frame runs one compiled graph and resumes nowhere (no graph break)."""
    held = _WHOLE.get(id(code))
    if held is not None and held[0] is code:
        return held[1]
    names = code.co_names
    whole = any(n.startswith("__compiled_fn") for n in names) and not any(n.startswith("__resume_at") for n in names)
    if len(_WHOLE) >= _LIMIT:
        _WHOLE.clear()
    _WHOLE[id(code)] = (code, whole)
    return whole


def _tensors(module: nn.Module) -> list[Any]:
    """Every parameter and buffer of ``module`` (which tensor, its shape and dtype), in a fixed order."""
    out: list[Any] = []
    stack: list[nn.Module | None] = [module]
    while stack:
        sub = stack.pop()
        if sub is None:
            continue
        for group in (sub._parameters, sub._buffers):
            for t in group.values():
                if t is not None:
                    out.append((id(t), t.shape, t.dtype))
        stack.extend(sub._modules.values())
    return out


def _is_compiled(model: Any) -> bool:
    """``torch.compile(module)`` (an OptimizedModule) or a module compiled in place (``module.compile()``)."""
    if not isinstance(model, nn.Module):
        return False
    if model.__dict__.get("_compiled_call_impl") is not None:
        return True
    return type(model).__name__ == "OptimizedModule" and "_orig_mod" in model._modules


def _key(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], settings: tuple[Any, ...]) -> Any:
    try:
        return id(model), settings, _layout(args), _layout(kwargs)
    except _Unkeyed:
        return None


def recall(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any], settings: tuple[Any, ...]) -> tuple[Any, FlopResult | None]:
    """``(token, result)``: the count remembered for this call of a compiled module (a copy), else None
    with a token for :func:`keep` (None where this call is not one to remember)."""
    if not _is_compiled(model):
        return None, None
    key = _key(model, args, kwargs, settings)
    if key is None:
        return None, None
    try:
        entry = _passing_entry(model, args, kwargs)
    except Exception:  # torch's internals not as expected: no memory
        return None, None
    if entry is None:
        return None, None
    held = _HELD.get(key)
    if held is not None:
        owner, was, version, tensors, result = held
        if owner() is model and was is entry and version == RULES.version and tensors == _tensors(model):
            return None, _copy(result)
    return (key, entry, RULES.version, _tensors(model)), None


def keep(token: Any, model: nn.Module, result: FlopResult) -> None:
    """Remember ``result`` for the call :func:`recall` gave ``token`` for (a copy: the caller's may change)."""
    if token is None:
        return
    key, entry, version, tensors = token
    if len(_HELD) >= _LIMIT:
        _HELD.clear()
    _HELD[key] = (weakref.ref(model), entry, version, tensors, _copy(result))


def forget() -> None:
    """Drop every remembered count (and what was kept to check for one)."""
    _HELD.clear()
    _WHOLE.clear()
    _SIGNATURES.clear()


def _copy(result: FlopResult) -> FlopResult:
    """A copy whose dicts are the copy's own (a frozen result's dicts can still be changed in place)."""
    out = copy.copy(result)
    for name in _DICT_FIELDS:
        value = getattr(result, name)
        if value:
            object.__setattr__(out, name, {k: (dict(v) if type(v) is dict else v) for k, v in value.items()})
    return out


# Dropped before the interpreter tears torch down: dynamo's weak references to what a count kept would
# otherwise call back into half-removed modules at exit ("Exception ignored in ...").
atexit.register(forget)
