"""What both captures fill in: the running tally, and which module is running (forward hooks; the
trace follows module calls more cheaply, see calls.py)."""

from __future__ import annotations

import dataclasses
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

from pytest_flopbudget.engine.context import named_modules


@dataclasses.dataclass
class Tally:
    """MACs counted so far: in all, per module path ("" for code outside any submodule), per operator.

    ``unpriced`` maps each operator no rule could price to the number of its calls; ``notes``
    says what the count should be read with (a fallback from one capture to the other).
    """

    macs: int = 0
    by_module: dict[str, int] = dataclasses.field(default_factory=dict)
    by_operator: dict[str, int] = dataclasses.field(default_factory=dict)
    unpriced: dict[str, int] = dataclasses.field(default_factory=dict)
    capture: str = ""  # "trace" or "dispatch": which capture saw the operators
    notes: list[str] = dataclasses.field(default_factory=list)
    # operator, module, dtype, MACs, bytes read, bytes written (per call) -> calls; see engine/memory/traffic.py
    costs: dict[tuple[str, str, str, int, int, int], int] = dataclasses.field(default_factory=dict)
    memory: dict[str, Any] | None = None  # peak memory figures (engine/memory/liveness.py), where watched

    def add(self, module: str, operator: str, macs: int) -> None:
        if macs:
            self.macs += macs
            self.by_module[module] = self.by_module.get(module, 0) + macs
            self.by_operator[operator] = self.by_operator.get(operator, 0) + macs

    def miss(self, operator: str) -> None:
        self.unpriced[operator] = self.unpriced.get(operator, 0) + 1


def submodules(module: nn.Module | None) -> list[tuple[str, nn.Module]]:
    """The named submodules in ``named_modules`` order, the model itself left out, a shared one once:
    the i-th is the one ``enter(i)`` names. A scripted module's own submodules are left out: its
    forward runs in TorchScript, where no Python call of them is seen (its cost is its own)."""
    if module is None:
        return []
    named = named_modules(module)
    scripted = tuple(f"{name}." for name, sub in named if name and isinstance(sub, torch.jit.ScriptModule))
    if not scripted:
        subs = named[1:] if named and not named[0][0] else [(name, sub) for name, sub in named if name]
    else:
        subs = [(name, sub) for name, sub in named if name and not name.startswith(scripted)]
    if "torch._dynamo.eval_frame" not in sys.modules:  # no compiled module can exist
        return subs
    return [(_eager_name(name), sub) for name, sub in subs]


def _eager_name(name: str) -> str:
    """A submodule's name as in the model run eagerly: ``torch.compile(module)`` wraps ``module`` in an
    ``OptimizedModule`` whose ``_orig_mod`` is the module, so its submodules are named ``_orig_mod.0``
    where the eager model has ``0``. The wrapper's own name stands for both, so compiling a model (or a
    block) leaves the names in the results, the reports and the baselines as they were."""
    if "_orig_mod" not in name:
        return name
    return ".".join(part for part in name.split(".") if part != "_orig_mod")


@contextmanager
def module_hooks(module: nn.Module | None, enter: Callable[[int], None], leave: Callable[[Any], None]) -> Iterator[list[str]]:
    """Call ``enter(i)``/``leave(output)`` around the forward of the i-th named submodule; yields the names.

    Two global module hooks (``register_module_forward_pre_hook``/``register_module_forward_hook``), which
    look the module up by identity, not a pair of hooks on every submodule: installing them costs nothing
    per module (VGG-11's 36 modules: 0.03 ms a count instead of 0.13 ms). They run before the module's own
    hooks; only calls on this thread, of the modules of ``module``, are followed."""
    named = submodules(module)
    # A scripted module runs its forward in TorchScript: its cost counts in its caller's, as its own hooks
    # (which it refuses) would have it.
    index = {id(sub): i for i, (_, sub) in enumerate(named) if not isinstance(sub, torch.jit.ScriptModule)}
    if not index:
        yield [name for name, _ in named]
        return
    thread = threading.get_ident()

    def pre_hook(sub: nn.Module, args: Any) -> None:
        i = index.get(id(sub))
        if i is not None and threading.get_ident() == thread:
            enter(i)

    def post_hook(sub: nn.Module, args: Any, output: Any) -> None:
        if id(sub) in index and threading.get_ident() == thread:
            leave(output)

    handles = [
        register_module_forward_pre_hook(pre_hook),
        register_module_forward_hook(post_hook, always_call=True),
    ]
    try:
        with _compiled_quiet():
            yield [name for name, _ in named]
    finally:
        for handle in handles:
            handle.remove()


# What a ``torch.compile``d module says on each call while any global module hook is installed: these
# two are the count's own, and under ``-W error`` (a pytest ``filterwarnings = error``) the warning
# would fail the count.
_COMPILED_WARNING = r"Using `torch\.compile\(module\)` when there are global hooks on modules"


@contextmanager
def _compiled_quiet() -> Iterator[None]:
    """Silence the warning above while the count's hooks are in, where a compiled module can exist
    (dynamo imported); about 3 us a count then, nothing otherwise."""
    if "torch._dynamo.eval_frame" not in sys.modules:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_COMPILED_WARNING, category=UserWarning)
        yield
