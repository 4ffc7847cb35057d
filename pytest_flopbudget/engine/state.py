"""The model-state guard: counting leaves every tensor a model holds as it was, also when the model raises.

A forward pass may change what it finds in the model: cache tensors in plain
attributes (torchvision's ``AnchorGenerator`` keeps its anchors in a list and
replaces them with tensors on the input's device, meta included), update
buffers in place (``BatchNorm`` running statistics in training mode), add an
attribute. :func:`guard` snapshots, for every submodule, its train/eval flag,
its parameters and buffers, and every tensor reachable from its other
attributes through lists, tuples and dicts, and puts all of it back on exit:
the same objects in the same places, on the same device, with the same values.
Lists and dicts in attributes get their contents back (an empty cache stays
empty). Attributes a pass added are removed.

Restoring replaces, it never reshapes: an attribute is re-bound to the object it
held (every attribute: a counter or a cached length a pass bumps comes back too),
and a container is touched only where the pass changed it, one entry at a time,
with its own ``__setitem__``/``__delitem__``. A container the pass left alone
(diffusers' ``FrozenDict`` config, a ``ModelOutput``, a list subclass) is never
called at all, so containers that refuse mutation, properties, read-only
attributes and ``__slots__`` classes keep exactly the state they had. What cannot
be put back is reported in the notes, never forced. Lazy modules (``nn.LazyLinear``)
are left to be built by the pass, as their first forward would.

Values are copied beforehand only where a pass may write them in place and
the guard could not otherwise restore them: buffers and attribute tensors on a
real pass (``copy_values=True``). Parameters are never copied; one written in
place by the model (seen by its version counter) is reported in the notes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from operator import is_
from typing import Any

import torch
import torch.nn as nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedTensorMixin  # type: ignore[attr-defined]  # torch's stubs omit it

from pytest_flopbudget.engine.context import CONSTANT_TYPES, named_modules

__all__ = ["guard"]

_INTERNAL = frozenset(nn.Module().__dict__) | {"_parameters", "_buffers", "_modules"}
_DEPTH = 4  # how deep lists/tuples/dicts are searched for tensors


def _version(t: torch.Tensor) -> int:
    try:
        return t._version
    except RuntimeError:  # inference tensors have no version counter (and cannot be written outside inference)
        return -1


class _TensorState:
    """One tensor: its data (an alias: restores device and shape if ``.data`` was swapped), version, values."""

    __slots__ = ("tensor", "data", "version", "values")

    def __init__(self, t: torch.Tensor, copy_values: bool) -> None:
        self.tensor = t
        self.data = t.data
        self.version = _version(t)
        self.values = t.detach().clone() if copy_values and not t.is_meta else None

    def restore(self) -> bool:
        """Put the tensor back; False when it was written in place and could not be restored.

        Only what changed is written: ``.data`` when the pass swapped it, the values when they differ
        from the copy (kernels such as batch norm's update buffers without a version bump)."""
        t = self.tensor
        try:
            if not _same_data(t, self.data):
                t.data = self.data
            if self.values is not None:
                if not torch.equal(t.detach(), self.values):
                    with torch.no_grad():
                        t.copy_(self.values)
                return True
        except RuntimeError:  # an inference tensor outside inference mode, a tensor that refuses .data
            return False
        return _version(t) == self.version


_MISSING = object()


def _same_data(t: torch.Tensor, data: torch.Tensor) -> bool:
    """Whether ``t`` still holds ``data`` (a pass may have swapped ``.data`` for a tensor elsewhere)."""
    if t.device != data.device or t.shape != data.shape or t.dtype != data.dtype:
        return False
    try:
        return t.stride() == data.stride() and t.data_ptr() == data.data_ptr()
    except RuntimeError:  # layouts without strides or storage (sparse, nested): nothing more to compare
        return True


def _snapshot(value: Any, copy_values: bool, depth: int = 0) -> Any:
    """What ``_put_back`` needs to restore a value and the containers (and tensors) inside it."""
    if isinstance(value, torch.Tensor):
        return _TensorState(value, copy_values)
    if depth >= _DEPTH:
        return None
    if isinstance(value, list):
        return ("list", list(value), [_snapshot(v, copy_values, depth + 1) for v in value])
    if isinstance(value, tuple):
        return ("tuple", None, [_snapshot(v, copy_values, depth + 1) for v in value])
    if isinstance(value, dict):
        return ("dict", dict(value), {k: _snapshot(v, copy_values, depth + 1) for k, v in value.items()})
    return None




def _plain_tuple(value: Any) -> bool:
    """A tuple of constants (a kernel size, a padding): nothing inside it can change."""
    return type(value) is tuple and all(type(v) in CONSTANT_TYPES for v in value)


def _same_items(now: list[Any], then: list[Any]) -> bool:
    return len(now) == len(then) and all(a is b for a, b in zip(now, then))


def _restore_list(container: list[Any], contents: list[Any]) -> None:
    if not _same_items(list(container), contents):
        container[:] = contents


def _restore_dict(container: dict[Any, Any], contents: dict[Any, Any]) -> None:
    """Entry by entry, through the container's own methods, and only the entries that changed."""
    now = dict(container)
    if now.keys() == contents.keys() and all(now[k] is v for k, v in contents.items()):
        return
    for key in now.keys() - contents.keys():
        del container[key]
    for key, value in contents.items():
        if now.get(key, _MISSING) is not value:
            container[key] = value


def _put_back(container: Any, snap: Any, lost: list[str], where: str) -> None:
    if snap is None:
        return
    if isinstance(snap, _TensorState):
        if not snap.restore():
            lost.append(where)
        return
    kind, contents, inner = snap
    try:
        if kind == "list":
            _restore_list(container, contents)
        elif kind == "dict":
            _restore_dict(container, contents)
    except Exception:  # a container that refuses the write: left as the pass made it, and reported
        lost.append(where)
        return
    items = contents if kind != "tuple" else container
    pairs = zip(items, inner) if kind != "dict" else ((contents[k], s) for k, s in inner.items())
    for item, s in pairs:
        _put_back(item, s, lost, where)


# Tuples of numbers and strings seen before, by identity (held, so an id is never reused): a module's
# kernel sizes and paddings are looked at once a process, not once a count.
_PLAIN_TUPLES: dict[int, tuple[Any, ...]] = {}


def _holds_state(value: Any) -> bool:
    """Whether an attribute's value can hide state a pass may change: a tensor, or a list, dict or tuple
    (a tuple of numbers and strings, a kernel size, cannot)."""
    kind = type(value)
    if kind in CONSTANT_TYPES:
        return False
    if kind is tuple:
        if _PLAIN_TUPLES.get(id(value)) is value:
            return False
        if _plain_tuple(value):
            if len(_PLAIN_TUPLES) > 100_000:
                _PLAIN_TUPLES.clear()
            _PLAIN_TUPLES[id(value)] = value
            return False
        return True
    return isinstance(value, (torch.Tensor, list, tuple, dict))


def _same_bindings(now: dict[Any, Any], then: dict[Any, Any]) -> bool:
    """Whether ``now`` binds the same keys, in the same order, to the same objects as ``then``."""
    return now.keys() == then.keys() and all(map(is_, now.values(), then.values()))


_NOTHING: dict[str, Any] = {}  # what an empty parameter or buffer store held (never written)


class _Snapshot:
    """The state of every module of a model, in flat lists: each module's attribute bindings, its
    parameter and buffer slots, their tensors, and the insides of the containers its attributes hold.
    Taking it copies a few dicts per module and looks at each attribute once; putting it back compares
    bindings by identity and writes only where the pass changed something."""

    __slots__ = ("bindings", "slots", "tensors", "inner")

    def __init__(self, modules: list[tuple[str, nn.Module]], copy_values: bool) -> None:
        self.bindings: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.slots: list[tuple[Any, dict[str, Any]]] = []  # a parameter or buffer store, and what it held
        self.tensors: list[tuple[str, str, _TensorState]] = []  # module name, slot, the tensor's state
        self.inner: list[tuple[str, str, Any, Any]] = []  # module name, attribute, its value, the snapshot
        bindings, slots, tensors, inner = self.bindings, self.slots, self.tensors, self.inner
        for name, module in modules:
            state = module.__dict__
            bindings.append((state, state.copy()))
            for store, copy in ((state["_parameters"], False), (state["_buffers"], copy_values)):
                if not store:
                    slots.append((store, _NOTHING))
                    continue
                saved = store.copy() if type(store) is dict else dict(store.items())  # (a scripted module's store is no dict)
                slots.append((store, saved))
                for key, t in saved.items():
                    if t is not None:
                        tensors.append((name, key, _TensorState(t, copy)))
            for key in state.keys() - _INTERNAL:
                value = state[key]
                if type(value) not in CONSTANT_TYPES and _holds_state(value):
                    snap = _snapshot(value, copy_values)
                    if snap is not None:
                        inner.append((name, key, value, snap))

    def restore(self, lost: list[str]) -> None:
        """Re-bind what the pass re-bound (every attribute), remove what it added, put back what it changed
        in place; write nothing it left alone."""
        for state, bindings in self.bindings:
            if not _same_bindings(state, bindings):
                for key, value in bindings.items():
                    if state.get(key, _MISSING) is not value:
                        state[key] = value
                for key in state.keys() - bindings.keys() - _INTERNAL:
                    del state[key]
        for store, saved in self.slots:
            if len(store) != len(saved) or (saved and not _same_bindings(store, saved)):
                for key, t in saved.items():
                    if t is not None and (key not in store or store[key] is not t):
                        store[key] = t  # a slot takes back the tensor it held
        for name, key, tensor_state in self.tensors:
            if not tensor_state.restore():
                lost.append(f"{name}.{key}" if name else key)
        for name, key, value, snap in self.inner:
            _put_back(value, snap, lost, f"{name}.{key}" if name else key)


def _is_lazy(module: nn.Module) -> bool:
    """A lazy module not built yet (its first pass builds it)."""
    if not isinstance(module, LazyModuleMixin):
        return False
    tensors = list(module._parameters.values()) + list(module._buffers.values())
    return any(isinstance(t, UninitializedTensorMixin) for t in tensors)


@contextmanager
def guard(module: nn.Module | None, copy_values: bool = False) -> Iterator[list[str]]:
    """Restore ``module``'s whole tensor state on exit (see the module docstring); yields a list that
    receives a note per tensor that was written in place and could not be restored."""
    modules = named_modules(module) if module is not None else []
    # A lazy module is built by its first pass (its class changes): that is the user's first forward, kept.
    snapshot = _Snapshot([(name, m) for name, m in modules if not _is_lazy(m)], copy_values)
    notes: list[str] = []
    try:
        yield notes
    finally:
        lost: list[str] = []
        snapshot.restore(lost)
        if lost:
            notes.append(
                f"the model wrote {len(lost)} tensor(s) or container(s) in place while being counted "
                f"({', '.join(lost[:3])}{', ...' if len(lost) > 3 else ''}); they keep their new values"
            )
