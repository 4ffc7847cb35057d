"""Module attribution for the trace with two Python frames per module call instead of five.

The TorchScript tracer records the whole Python call stack of every graph node, so each frame
between the model and its operators costs on every node (about 8.5 ms per frame over a
generation's 20,000 nodes). A module call with forward hooks (how :func:`.tally.module_hooks`
follows modules) runs ``_wrapped_call_impl``, ``_call_impl``, its ``inner`` closure and, while
tracing, ``_slow_forward`` before ``forward``. Here, for the duration of a trace,
``nn.Module.__call__`` is a function that calls ``enter(i)`` and ``leave(output)`` around the call
of the i-th submodule of the model being traced: where torch's own ``__call__`` would go straight
to ``forward`` (no hooks on the module, no global hooks, not compiled, no ``torch.jit`` scope
recording), it calls ``forward`` itself; otherwise it calls torch's ``__call__``, so every hook runs
as it would. Any other module, and any call on another thread, goes to torch's ``__call__``.

The function is installed while at least one trace in the process uses it (a lock counts them)
and each thread keeps its own registrations, so traces on several threads at once each see only
their own model. Where ``nn.Module.__call__`` is not torch's own (another tool has replaced it),
the trace follows modules with forward hooks instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn
from torch.nn.modules import module as _module

from pytest_flopbudget.engine.capture.tally import module_hooks

__all__ = ["module_calls"]

_TORCH_CALL = nn.Module._wrapped_call_impl
_GLOBAL_HOOKS = tuple(
    getattr(_module, name, None)
    for name in ("_global_backward_pre_hooks", "_global_backward_hooks", "_global_forward_hooks", "_global_forward_pre_hooks")
)
_HOOKS_KNOWN = all(hooks is not None for hooks in _GLOBAL_HOOKS)  # else every call goes through torch's __call__

_local = threading.local()  # .active: this thread's registrations, innermost last
_lock = threading.Lock()
_users = 0  # traces using the installed function, on all threads


def _plain(module: nn.Module) -> bool:
    """Whether torch's ``__call__`` would call ``forward`` and nothing else (its fast path)."""
    return (
        _HOOKS_KNOWN
        and module._compiled_call_impl is None
        and not (module._backward_hooks or module._backward_pre_hooks or module._forward_hooks or module._forward_pre_hooks)
        and not any(_GLOBAL_HOOKS)
        and torch.jit._trace._trace_module_map is None
    )


def _call(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    active = getattr(_local, "active", None)
    if active:
        index, enter, leave = active[-1]
        i = index.get(id(self))
        if i is not None:
            enter(i)
            output = None
            try:
                output = self.forward(*args, **kwargs) if _plain(self) else _TORCH_CALL(self, *args, **kwargs)  # type: ignore[no-untyped-call]
            finally:
                leave(output)
            return output
    return _TORCH_CALL(self, *args, **kwargs)  # type: ignore[no-untyped-call]


@contextmanager
def module_calls(module: nn.Module | None, index: dict[int, int], enter: Callable[[int], None],
                 leave: Callable[[Any], None]) -> Iterator[None]:
    """In this thread, call ``enter(i)`` and ``leave(output)`` around every call of the i-th submodule
    of ``module`` (``index`` maps the ``id`` of each of :func:`.tally.submodules` to its position);
    enter where the model runs (the trace's thread). Where ``nn.Module.__call__`` has been replaced
    by another tool, forward hooks do it."""
    global _users
    with _lock:
        installed = nn.Module.__call__ is _call or (_users == 0 and nn.Module.__call__ is _TORCH_CALL)
        if installed:
            nn.Module.__call__ = _call  # type: ignore[method-assign]
            _users += 1
    if not installed:
        with module_hooks(module, enter, leave):
            yield
        return
    active = _local.__dict__.setdefault("active", [])
    active.append((index, enter, leave))
    try:
        yield
    finally:
        active.pop()
        with _lock:
            _users -= 1
            if _users == 0 and nn.Module.__call__ is _call:
                nn.Module.__call__ = _TORCH_CALL  # type: ignore[method-assign]
