"""Deep snapshot of a model and of the process state a count may touch, and the difference of two snapshots.

A snapshot walks every attribute reachable from the model: each ``nn.Module``'s ``__dict__`` (parameters,
buffers, submodules, hook dictionaries, ``training``, everything else a library stored there), every
container (dict, list, tuple, set and their subclasses, diffusers' ``FrozenDict`` and transformers'
configs included: their items *and* their own attributes), every tensor (identity, class, shape, stride,
dtype, device, ``requires_grad``, leaf-ness, version counter, ``grad``, tensor hooks, a value checksum on
real devices) and every plain object with a ``__dict__`` or ``__slots__``. Each reachable object is
recorded once, under the first path that reaches it; later paths record a reference to that path, so
shared objects and cycles are handled and a change of sharing shows too.

Besides the model, the snapshot records the state of the process a count must leave as it found it:
grad mode, default dtype, ``nn.Module.__call__``, the global module hooks, the dispatch and function
mode stacks, the MHA fast-path flag, and the class dictionaries of the model's module and config classes.

``diff(before, after)`` lists what changed, one line per difference (``path: before -> after``).
The snapshot holds strong references to every object it recorded, so no identity can be reused by
a new object between the two snapshots.
"""

from __future__ import annotations

import enum
import functools
import math
import types
import warnings
from typing import Any

import torch
from torch import nn

from .common import VERSION_ONLY

ATOMS = (bool, int, float, complex, str, bytes, type(None), torch.dtype, torch.device, torch.Size,
         torch.memory_format, torch.layout, range, slice, type(Ellipsis))
OPAQUE = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.BuiltinMethodType,
          type, types.CodeType, types.FrameType, types.WrapperDescriptorType, types.MethodWrapperType,
          types.MethodDescriptorType, types.GetSetDescriptorType, types.MemberDescriptorType, property,
          staticmethod, classmethod)
MAX_DEPTH = 80
MAX_ITEMS = 20_000  # per container: larger ones are recorded by length and identity only
CHECKSUM_NUMEL = 50_000_000


def _name(obj: Any) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def _callable_desc(fn: Any) -> str:
    qual = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    return f"{_name(fn)} {getattr(fn, '__module__', '?')}.{qual} @{id(fn):x}"


def _atom(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "float nan"
    return f"{type(value).__name__} {value!r}"


class Snapshot:
    """``entries``: path -> description; ``keep``: every object recorded (kept alive)."""

    def __init__(self) -> None:
        self.entries: dict[str, str] = {}
        self.keep: list[Any] = []
        self.seen: dict[int, str] = {}
        self.classes: dict[int, type] = {}


def _tensor_desc(t: torch.Tensor) -> str:
    parts = [
        _name(t), f"@{id(t):x}", f"shape={tuple(t.shape)}", f"dtype={t.dtype}", f"device={t.device}",
        f"requires_grad={t.requires_grad}", f"leaf={t.is_leaf}",
    ]
    try:
        parts.append(f"stride={tuple(t.stride())}")
    except Exception:  # sparse and nested tensors have no strides
        parts.append("stride=-")
    try:
        parts.append(f"version={t._version}")
    except Exception:
        pass
    if t.grad_fn is not None:
        parts.append(f"grad_fn={type(t.grad_fn).__name__}")
    if t.device.type != "meta" and not t.is_sparse and t.numel() <= CHECKSUM_NUMEL:
        try:
            with torch.no_grad():
                value = t.detach()
                if value.is_complex():
                    value = torch.view_as_real(value)
                total = float(value.double().sum()) if value.numel() else 0.0
                parts.append(f"data_ptr={value.data_ptr():x} sum={total!r}")
        except Exception as exc:  # a tensor that cannot be read is recorded as such
            parts.append(f"unreadable={type(exc).__name__}")
    return " ".join(parts)


def _walk(snap: Snapshot, path: str, obj: Any, depth: int) -> None:
    if isinstance(obj, ATOMS) or isinstance(obj, enum.Enum):
        snap.entries[path] = _atom(obj)
        return
    key = id(obj)
    if key in snap.seen:
        snap.entries[path] = f"ref {snap.seen[key]}"
        return
    snap.seen[key] = path
    snap.keep.append(obj)
    if isinstance(obj, OPAQUE) or depth > MAX_DEPTH:
        snap.entries[path] = _callable_desc(obj) if callable(obj) else f"{_name(obj)} @{key:x}"
        return
    if isinstance(obj, types.MethodType):
        snap.entries[path] = f"method {getattr(obj.__func__, '__qualname__', '?')} @{id(obj.__func__):x}"
        _walk(snap, path + ".__self__", obj.__self__, depth + 1)
        return
    if isinstance(obj, functools.partial):
        snap.entries[path] = f"partial @{key:x}"
        _walk(snap, path + ".func", obj.func, depth + 1)
        _walk(snap, path + ".args", obj.args, depth + 1)
        _walk(snap, path + ".keywords", obj.keywords, depth + 1)
        return
    if isinstance(obj, torch.Tensor):
        snap.entries[path] = _tensor_desc(obj)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            grad = obj._grad if hasattr(obj, "_grad") else None
        if grad is not None:
            _walk(snap, path + ".grad", grad, depth + 1)
        hooks = getattr(obj, "_backward_hooks", None)
        if hooks:
            _walk(snap, path + "._backward_hooks", hooks, depth + 1)
        _walk_attributes(snap, path, obj, depth, tensor=True)
        return
    if isinstance(obj, nn.Module):
        snap.classes[id(type(obj))] = type(obj)
    kind = f"{_name(obj)} @{key:x}"
    if isinstance(obj, dict):
        items = list(obj.items()) if len(obj) <= MAX_ITEMS else None
        if items is None:
            snap.entries[path] = f"{kind} len={len(obj)} (not walked)"
        else:
            snap.entries[path] = f"{kind} len={len(obj)} keys={[_key(k) for k, _ in items]!r}"
            for k, v in items:
                _walk(snap, f"{path}[{_key(k)}]", v, depth + 1)
    elif isinstance(obj, (list, tuple)):
        snap.entries[path] = f"{kind} len={len(obj)}"
        if len(obj) <= MAX_ITEMS:
            for i, v in enumerate(obj):
                _walk(snap, f"{path}[{i}]", v, depth + 1)
    elif isinstance(obj, (set, frozenset)):
        snap.entries[path] = f"{kind} len={len(obj)} items={sorted(_key(v) for v in obj)[:200]!r}"
    else:
        snap.entries[path] = kind
    if "config" in type(obj).__name__.lower() or isinstance(obj, nn.Module):
        snap.classes[id(type(obj))] = type(obj)
    _walk_attributes(snap, path, obj, depth)


def _key(k: Any) -> str:
    if isinstance(k, (str, int, float, bool, type(None))) or isinstance(k, enum.Enum):
        return repr(k)
    return f"{_name(k)}@{id(k):x}"


def _walk_attributes(snap: Snapshot, path: str, obj: Any, depth: int, tensor: bool = False) -> None:
    try:
        attrs = object.__getattribute__(obj, "__dict__")
    except Exception:
        attrs = None
    if isinstance(attrs, dict) and attrs:
        snap.entries[path + ".__dict__"] = f"keys={list(attrs)!r}"
        for name, value in list(attrs.items()):
            _walk(snap, f"{path}.{name}", value, depth + 1)
    for cls in type(obj).__mro__:
        for slot in cls.__dict__.get("__slots__", ()) if not tensor else ():
            if slot in ("__dict__", "__weakref__"):
                continue
            try:
                value = object.__getattribute__(obj, slot)
            except Exception:
                snap.entries[f"{path}.{slot}"] = "unset"
                continue
            _walk(snap, f"{path}.{slot}", value, depth + 1)


def _process_state(snap: Snapshot) -> None:
    from torch.nn.modules import module as module_mod

    entries = snap.entries
    entries["<process>.grad_enabled"] = repr(torch.is_grad_enabled())
    entries["<process>.inference_mode"] = repr(torch.is_inference_mode_enabled())
    entries["<process>.default_dtype"] = repr(torch.get_default_dtype())
    entries["<process>.nn.Module.__call__"] = _callable_desc(nn.Module.__call__)
    entries["<process>.nn.Module._call_impl"] = _callable_desc(nn.Module._call_impl)
    for name in dir(module_mod):
        if name.startswith("_global_") and isinstance(getattr(module_mod, name), dict):
            hooks = getattr(module_mod, name)
            entries[f"<process>.{name}"] = f"len={len(hooks)}"
    try:
        entries["<process>.dispatch_modes"] = repr(torch._C._len_torch_dispatch_stack())
    except Exception:
        pass
    try:
        entries["<process>.function_modes"] = repr(torch._C._len_torch_function_stack())
    except Exception:
        pass
    mha = getattr(torch.backends, "mha", None)
    if mha is not None:
        entries["<process>.mha_fastpath"] = repr(mha.get_fastpath_enabled())
    try:
        entries["<process>.default_device"] = repr(torch.get_default_device())
    except Exception:
        pass
    for cls in sorted(snap.classes.values(), key=lambda c: f"{c.__module__}.{c.__qualname__}"):
        label = f"<class {cls.__module__}.{cls.__qualname__}>"
        for name, value in list(vars(cls).items()):
            if name in ("__dict__", "__weakref__", "__doc__"):
                continue
            entries[f"{label}.{name}"] = f"{_name(value)} @{id(value):x}"


def take(model: Any, args: tuple = (), kwargs: dict | None = None) -> Snapshot:
    """Snapshot of ``model`` (and of the call's inputs: a count must not change them either)."""
    snap = Snapshot()
    _walk(snap, "model", model, 0)
    for i, value in enumerate(args):
        _walk(snap, f"args[{i}]", value, 0)
    for key, value in (kwargs or {}).items():
        _walk(snap, f"kwargs[{key!r}]", value, 0)
    _process_state(snap)
    return snap




def _version_only(a: str, b: str) -> str | None:
    """"version N -> M" where two tensor descriptions differ in their version counter alone."""
    wa, wb = a.split(" "), b.split(" ")
    if len(wa) != len(wb):
        return None
    changed = [(x, y) for x, y in zip(wa, wb) if x != y]
    if len(changed) == 1 and changed[0][0].startswith("version=") and changed[0][1].startswith("version="):
        return f"version {changed[0][0][8:]} -> {changed[0][1][8:]}"
    return None


def diff(before: Snapshot, after: Snapshot, limit: int = 40) -> list[str]:
    """What changed between two snapshots, one line per difference, at most ``limit`` lines (plus a count)."""
    out = []
    a, b = before.entries, after.entries
    for path in a:
        if path not in b:
            out.append(f"{path}: removed (was {a[path][:160]})")
        elif a[path] != b[path]:
            version = _version_only(a[path], b[path])
            out.append(f"{path}: {version} {VERSION_ONLY}" if version else f"{path}: {a[path][:160]} -> {b[path][:160]}")
    for path in b:
        if path not in a:
            out.append(f"{path}: added ({b[path][:160]})")
    if len(out) > limit:
        rest = out[limit:]
        same = " " + VERSION_ONLY if all(line.endswith(VERSION_ONLY) for line in rest) else ""
        out = out[:limit] + [f"... and {len(rest)} more differences{same}"]
    return out
