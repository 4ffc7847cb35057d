"""The trace follows module calls through ``nn.Module.__call__`` itself (``counting/calls.py``).

For the duration of a trace ``nn.Module.__call__`` is a leaner function that names the running
submodule and calls ``forward`` directly where torch's own ``__call__`` would; these tests check it
is invisible: the same counts and module attribution as with forward hooks, every hook the user
registered runs as torch runs it, other threads and concurrent counts are untouched, and torch's
``__call__`` is back after every count, also one that fails.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

import pytest
import torch
import torch.nn as nn
from crosscheck_models import Layers, foreign_call, var_models

from pytest_flopbudget.engine.count import count as count_with


def count(model: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
    """The ``trace`` counter (this file tests the TorchScript trace, no longer the default capture)."""
    return count_with(model, args, kwargs, **{"counter": "trace", **options})

calls = importlib.import_module("pytest_flopbudget.engine.capture.calls")
TORCH_CALL = nn.Module._wrapped_call_impl


def _cases() -> list[Any]:
    layers = Layers().eval()
    cases = [pytest.param(layers, (torch.zeros(2, 3, 8, 8), torch.zeros(2, 5, dtype=torch.long)), id="layers")]
    return cases + [pytest.param(model, args, id=f"var-{name}") for name, model, args in var_models()]


@pytest.mark.parametrize(("model", "args"), _cases())
def test_counts_and_modules_as_with_forward_hooks(model: nn.Module, args: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    lean = count(model, args)
    assert nn.Module.__call__ is TORCH_CALL
    monkeypatch.setattr(nn.Module, "__call__", foreign_call)  # then the trace follows modules by forward hooks
    hooked = count(model, args)
    assert nn.Module.__call__ is foreign_call  # the other tool's function is left in place
    assert lean.capture == hooked.capture == "trace" and lean.macs > 0
    assert (lean.macs, lean.by_module, lean.by_operator, lean.unpriced) == (
        hooked.macs, hooked.by_module, hooked.by_operator, hooked.unpriced)


class Hooked(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(16, 4, bias=False)
        self.head = nn.Linear(4, 2, bias=False)
        self.extra = nn.Parameter(torch.zeros(4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.inner(x))


def test_a_modules_own_hooks_run_as_torch_runs_them() -> None:
    """A pre-hook widening the input and a forward hook adding a matmul: both run, and their
    operators belong to the module."""
    model = Hooked()
    model.inner.register_forward_pre_hook(lambda module, args: (torch.cat([args[0], args[0]], dim=-1),))
    model.inner.register_forward_hook(lambda module, args, out: out @ model.extra)
    result = count(model, (torch.zeros(3, 8),))
    assert result.by_module == {"inner": 3 * 16 * 4 + 3 * 4 * 4, "head": 3 * 4 * 2}
    assert nn.Module.__call__ is TORCH_CALL


def test_global_hooks_run_as_torch_runs_them() -> None:
    seen: list[str] = []
    handle = nn.modules.module.register_module_forward_hook(lambda module, args, out: seen.append(type(module).__name__))
    try:
        result = count(Hooked(), (torch.zeros(3, 16),))
    finally:
        handle.remove()
    assert result.by_module == {"inner": 3 * 16 * 4, "head": 3 * 4 * 2}
    assert seen.count("Linear") == 2


class Failing(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.lin(x)
        raise KeyError("the model's own error")


def test_torch_call_is_back_after_a_failing_count() -> None:
    with pytest.raises(KeyError):
        count(Failing(), (torch.zeros(2, 4),))
    assert nn.Module.__call__ is TORCH_CALL and calls._users == 0


SIDE: list[str] = []  # what the other thread's call saw


class StartsAThread(nn.Module):
    """Its forward has another thread call one of its submodules (on meta, untraced) and waits."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8, bias=False)
        self.side = nn.Linear(4, 4)
        self.side.register_forward_hook(lambda module, args, out: SIDE.append("hook"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        worker = threading.Thread(target=lambda: SIDE.append(str(tuple(self.side(torch.zeros(2, 4, device="meta")).shape))))
        worker.start()
        worker.join()
        return self.lin(x)


def test_another_threads_module_calls_are_torchs() -> None:
    """The other thread's call of a submodule is torch's own: its hook runs, and the trace neither
    attributes it nor takes its (untraced) output, which would end the trace."""
    SIDE.clear()
    result = count(StartsAThread(), (torch.zeros(2, 8),))
    assert SIDE == ["hook", "(2, 4)"]
    assert result.capture == "trace" and not result.notes
    assert result.macs == 2 * 8 * 8 and result.by_module == {"lin": 2 * 8 * 8}


def test_counts_on_several_threads_at_once() -> None:
    """Each trace sees only its own model; torch's __call__ is back when the last one ends."""
    models = [Hooked() for _ in range(4)]
    results: list[Any] = [None] * len(models)
    start = threading.Barrier(len(models))

    def work(i: int) -> None:
        start.wait()
        results[i] = count(models[i], (torch.zeros(i + 1, 16),))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(models))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, result in enumerate(results):
        assert result.by_module == {"inner": (i + 1) * 16 * 4, "head": (i + 1) * 4 * 2}
    assert nn.Module.__call__ is TORCH_CALL and calls._users == 0
