"""What both captures fill in: the running tally, and which module is running (forward hooks; the
trace follows module calls more cheaply, see calls.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn


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


def _pre_hook(enter: Callable[[int], None], index: int) -> Callable[..., None]:
    def hook(module: nn.Module, args: Any) -> None:
        enter(index)

    return hook


def _post_hook(leave: Callable[[Any], None]) -> Callable[..., None]:
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        leave(output)

    return hook


def submodules(module: nn.Module | None) -> list[tuple[str, nn.Module]]:
    """The named submodules in ``named_modules`` order, the model itself left out, a shared one once:
    the i-th is the one ``enter(i)`` names. A scripted module's own submodules are left out: its
    forward runs in TorchScript, where no Python call of them is seen (its cost is its own)."""
    if module is None:
        return []
    named = list(module.named_modules())
    scripted = tuple(f"{name}." for name, sub in named if name and isinstance(sub, torch.jit.ScriptModule))
    if not scripted:
        return named[1:] if named and not named[0][0] else [(name, sub) for name, sub in named if name]
    return [(name, sub) for name, sub in named if name and not name.startswith(scripted)]


@contextmanager
def module_hooks(module: nn.Module | None, enter: Callable[[int], None], leave: Callable[[Any], None]) -> Iterator[list[str]]:
    """Call ``enter(i)``/``leave(output)`` around the forward of the i-th named submodule; yields the names."""
    named = submodules(module)
    handles = []
    try:
        for index, (_, sub) in enumerate(named):
            if isinstance(sub, torch.jit.ScriptModule):  # takes no hooks: its cost counts in its caller's
                continue
            handles.append(sub.register_forward_pre_hook(_pre_hook(enter, index)))
            handles.append(sub.register_forward_hook(_post_hook(leave), always_call=True))
        yield [name for name, _ in named]
    finally:
        for handle in handles:
            handle.remove()
