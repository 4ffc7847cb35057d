"""What to run and whose weights it uses: a module, or any callable over modules.

A closure (``lambda x: model(x)``), a bound method (``model.generate``), a
``functools.partial``, a callable object or a pipeline-like object whose
attributes are modules: the modules it reaches are found, so they can be
counted on meta with their weights swapped (never run for real) and attributed.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import torch.nn as nn

__all__ = ["resolve"]

_DEPTH = 3


class Modules(nn.Module):
    """Several modules a callable reaches, under their variable or attribute names (a view: owns nothing new)."""

    def __init__(self, found: dict[str, nn.Module]) -> None:
        super().__init__()
        for name, module in found.items():
            self._modules[name] = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - never called
        raise TypeError("a view of the modules a callable reaches; call the callable")


def _named_values(obj: Any) -> Iterator[tuple[str, Any]]:
    """The values a callable or object reaches directly, with the name it reaches them by."""
    if isinstance(obj, functools.partial):
        yield "func", obj.func
        for i, value in enumerate(obj.args):
            yield f"arg{i}", value
        yield from obj.keywords.items()
        return
    if inspect.ismethod(obj):
        yield "self", obj.__self__
        yield from _named_values(obj.__func__)
        return
    if inspect.isfunction(obj):
        code = obj.__code__
        for name, cell in zip(code.co_freevars, obj.__closure__ or ()):
            try:
                yield name, cell.cell_contents
            except ValueError:  # an empty cell
                continue
        for name in code.co_names:
            if name in obj.__globals__:
                yield name, obj.__globals__[name]
        for i, value in enumerate(obj.__defaults__ or ()):
            yield f"default{i}", value
        return
    try:
        attributes = vars(obj)
    except TypeError:
        return
    yield from attributes.items()
    bound_call = getattr(type(obj), "__call__", None)  # noqa: B004  (the class's __call__ function, read for its globals)
    if inspect.isfunction(bound_call):
        yield from _named_values(bound_call)


def _collect(obj: Any, name: str, found: dict[str, nn.Module], seen: set[int], depth: int) -> None:
    if id(obj) in seen or depth > _DEPTH:
        return
    seen.add(id(obj))
    if isinstance(obj, nn.Module):
        if all(obj is not m for m in found.values()):
            found[name if name not in found else f"{name}_{len(found)}"] = obj
        return
    if isinstance(obj, (type, str, bytes, int, float, bool)) or obj is None or inspect.ismodule(obj):
        return
    if isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _collect(value, f"{name}{i}", found, seen, depth + 1)
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            _collect(value, str(key), found, seen, depth + 1)
        return
    if not (callable(obj) or hasattr(obj, "__dict__")):
        return
    for child, value in _named_values(obj):
        _collect(value, child, found, seen, depth + 1)


def _outermost(found: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """Drop modules that are submodules of another found one (they are counted through it)."""
    inside = {id(sub) for m in found.values() for sub in m.modules() if sub is not m}
    return {name: m for name, m in found.items() if id(m) not in inside}


def resolve(model: Any) -> tuple[Callable[..., Any], nn.Module | None]:
    """The callable to run and the module holding its weights: the model itself, the one module a callable
    reaches, a :class:`Modules` view of several, or None when it reaches none."""
    if isinstance(model, nn.Module):
        return model, model
    if not callable(model):
        raise TypeError(f"cannot count {type(model).__name__!r}: expected a torch.nn.Module or a callable")
    if isinstance(model, type):  # a class: calling it builds a model (the failure hint asks for an instance)
        return model, None
    found: dict[str, nn.Module] = {}
    _collect(model, "model", found, set(), 0)
    found = _outermost(found)
    if not found:
        return model, None
    if len(found) == 1:
        return model, next(iter(found.values()))
    return model, Modules(found)
