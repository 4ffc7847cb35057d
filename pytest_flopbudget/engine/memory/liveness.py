"""Peak memory on meta: the largest sum of live tensor bytes over a call.

A tensor storage counts from the operator that makes it until torch would free it: until no Python
object, autograd node (saved activations) or optimizer references it. Each new storage gets a weak
reference whose callback takes its bytes off when the storage is freed (torch keeps one Python object
per storage while the storage lives, so the callback fires exactly when the last reference goes).
Counted from the start: the parameters, buffers and input tensors of the call (``seed``), and every
storage an operator makes during it. Tensors made outside the call and not passed in (a cache held in a
plain attribute) are not counted.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from pytest_flopbudget.engine.capture.tally import module_hooks
from pytest_flopbudget.engine.memory.traffic import kind_of
from pytest_flopbudget.results import conventions
from pytest_flopbudget.results.result import MEMORY_CATEGORIES


class Liveness:
    """Live storage bytes as operators run; the peak, where it happened, its split, the peak per module.

    ``category`` names what new storages are (``activations`` in a forward, ``gradients`` in a backward,
    ``optimizer`` in an optimizer step); ``seed`` adds storages that exist before the call.
    ``timeline`` holds the live bytes after each operator that allocated.
    """

    def __init__(self) -> None:
        self.live = 0
        self.split = dict.fromkeys(MEMORY_CATEGORIES, 0)
        self.peak = 0
        self.peak_at = ("", "")
        self.peak_split = dict(self.split)
        self.module_peak: dict[str, int] = {}
        self.timeline: list[int] = []
        self.category = "activations"
        self._refs: dict[int, tuple[Any, int, str]] = {}

    def _free(self, key: int) -> None:
        entry = self._refs.pop(key, None)
        if entry is not None:
            self.live -= entry[1]
            self.split[entry[2]] -= entry[1]

    def _track(self, storage: Any, category: str) -> bool:
        key = id(storage)
        if key in self._refs:
            return False
        nbytes = storage.nbytes()
        ref = weakref.ref(storage, _on_free(weakref.ref(self), key))
        self._refs[key] = (ref, nbytes, category)
        self.live += nbytes
        self.split[category] += nbytes
        return True

    def seed(self, tensors: Iterable[Any], category: str) -> None:
        """Count storages that exist before the call (no peak is taken: the first operator takes it)."""
        for t in tensors:
            if isinstance(t, torch.Tensor) and (storage := _storage(t)) is not None:
                self._track(storage, category)

    def allocated(self, out: Any, module: str, operator: str) -> None:
        """An operator ran: count the storages of its outputs that are new."""
        grew = False
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and (storage := _storage(t)) is not None:
                grew = self._track(storage, self.category) or grew
        if grew:
            self.record(module, operator)

    def record(self, module: str, operator: str) -> None:
        live = self.live
        self.timeline.append(live)
        if live > self.module_peak.get(module, -1):
            self.module_peak[module] = live
        if live > self.peak:
            self.peak = live
            self.peak_at = (module, operator)
            self.peak_split = dict(self.split)

    def add_throughout(self, tensors: Iterable[Any], category: str) -> None:
        """Count storages as if they had existed since the start (a steady-state optimizer's state, made
        after the backward that its first step needs): every point so far grows by their bytes."""
        before = self.live
        self.seed(tensors, category)
        extra = self.live - before
        if extra:
            self.timeline = [v + extra for v in self.timeline]
            self.module_peak = {k: v + extra for k, v in self.module_peak.items()}
            self.peak += extra
            self.peak_split[category] += extra

    def state(self) -> dict[str, Any]:
        """The figures a FlopResult keeps."""
        if self.peak < self.live:  # nothing allocated after the seed: the peak is what was there
            self.record(*self.peak_at)
        return {
            "peak_bytes": self.peak,
            "peak_at": self.peak_at,
            "peak_split": {k: v for k, v in self.peak_split.items()},
            "peak_by_module": dict(sorted(self.module_peak.items())),
            "memory_timeline": tuple(self.timeline),
        }


def _on_free(owner: weakref.ref[Liveness], key: int) -> Callable[[Any], None]:
    def free(_: Any) -> None:
        live = owner()
        if live is not None:
            live._free(key)

    return free


def _storage(t: torch.Tensor) -> Any:
    try:
        return t.untyped_storage()
    except Exception:  # a tensor subclass without storage
        return None


def module_state(module: nn.Module | None) -> Iterator[torch.Tensor]:
    if module is not None:
        yield from module.parameters()
        yield from module.buffers()


def input_tensors(value: Any) -> Iterator[torch.Tensor]:
    import torch.utils._pytree as pytree

    for leaf in pytree.tree_leaves(value):
        if isinstance(leaf, torch.Tensor):
            yield leaf


class _Watch(TorchDispatchMode):
    """Only liveness: each operator's new outputs counted under the running module."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False

    def __init__(self, live: Liveness, where: Callable[[], str]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.live, self.where = live, where
        self.names: dict[Any, str] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        from pytest_flopbudget.engine.meta import meta_output

        kwargs = kwargs or {}
        out = meta_output(func, args, kwargs)
        if out is None:
            out = func(*args, **kwargs)
        name = self.names.get(func)
        if name is None:
            name = self.names[func] = conventions.normalize(func._schema.name)
        if kind_of(func, name).fresh:
            self.live.allocated(out, self.where(), name)
        return out


@contextmanager
def watching(module: nn.Module | None, live: Liveness) -> Iterator[Liveness]:
    """Count live bytes of every operator that runs in the block, attributed to ``module``'s submodules."""
    stack: list[int] = []

    def leave(_: Any) -> None:
        if stack:
            stack.pop()

    with module_hooks(module, stack.append, leave) as names:
        with _Watch(live, lambda: names[stack[-1]] if stack else ""):
            yield live


def liveness_pass(fn: Any, module: nn.Module | None, args: tuple[Any, ...], kwargs: dict[str, Any], meta: bool) -> dict[str, Any]:
    """One more call of ``fn`` with only liveness watched (for a capture that cannot see frees: the trace)."""
    from pytest_flopbudget.engine import fastmeta

    live = Liveness()
    live.seed(module_state(module), "weights")
    live.seed(input_tensors((args, kwargs)), "activations")
    with fastmeta.meta_mode(False) if meta else nullcontext(), watching(module, live):
        out = fn(*args, **kwargs)
    del out
    return live.state()
