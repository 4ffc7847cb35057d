"""The trace runs on a thread of its own (a shallow Python stack) and sees what the caller's thread sees.

The TorchScript tracer records the whole Python call stack of every graph node; on a new thread that
stack starts empty instead of under pytest's 60-90 frames. These tests check the move is invisible:
same counts, the caller's context variables, the model's own errors, and no move where the caller's
thread holds torch state a new thread would not share (modes, autocast, inference mode).
"""

from __future__ import annotations

import contextvars
import importlib
import threading
from typing import Any

import pytest
import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from pytest_flopbudget.engine.count import count as count_with


def count(model: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
    """The ``trace`` counter (this file tests the TorchScript trace, no longer the default capture)."""
    return count_with(model, args, kwargs, **{"counter": "trace", **options})

trace_module = importlib.import_module("pytest_flopbudget.engine.capture.trace")

SCALE: contextvars.ContextVar[int] = contextvars.ContextVar("SCALE", default=1)
THREADS: list[int] = []  # not on the model: a count puts the model's attributes back as they were


@pytest.fixture(autouse=True)
def _threads() -> None:
    THREADS.clear()


class Recorder(nn.Module):
    """A Linear(8 -> 8 * SCALE) that records the thread its forward ran on."""

    def __init__(self) -> None:
        super().__init__()
        self.small = nn.Linear(8, 8, bias=False)
        self.wide = nn.Linear(8, 16, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        THREADS.append(threading.get_ident())
        return self.wide(x) if SCALE.get() == 2 else self.small(x)


def _deep(n: int, fn):  # a caller's stack as deep as pytest's
    return fn() if n == 0 else _deep(n - 1, fn)


def test_the_trace_runs_on_its_own_thread_and_counts_as_in_place() -> None:
    model, x = Recorder(), torch.zeros(3, 8)
    result = _deep(80, lambda: count(model, (x,)))
    assert len(THREADS) == 1 and THREADS[0] != threading.get_ident()
    assert result.macs == 3 * 8 * 8 and result.capture == "trace"


def test_context_variables_reach_the_trace() -> None:
    model, x = Recorder(), torch.zeros(3, 8)
    token = SCALE.set(2)
    try:
        assert count(model, (x,)).macs == 3 * 8 * 16
    finally:
        SCALE.reset(token)
    assert count(model, (x,)).macs == 3 * 8 * 8


class Passing(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("state", ["function mode", "autocast", "inference mode", "device context"])
def test_thread_state_keeps_the_trace_in_the_callers_thread(state: str) -> None:
    model, x = Recorder(), torch.zeros(3, 8)
    contexts = {
        "function mode": Passing,
        "autocast": lambda: torch.autocast("cpu", dtype=torch.bfloat16),
        "inference mode": torch.inference_mode,
        "device context": lambda: torch.device("cpu"),
    }
    with contexts[state]():
        result = count(model, (x,))
    assert THREADS == [threading.get_ident()]
    assert result.macs == 3 * 8 * 8


class Failing(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise KeyError("the model's own error")


def test_a_models_error_reaches_the_caller() -> None:
    """The trace fails on its thread; the dispatch capture then runs the model here and raises."""
    with pytest.raises(KeyError, match="the model's own error"):
        count(Failing(), (torch.zeros(2, 4),))


def test_thread_start_hooks_see_the_model_run() -> None:
    """Tools that follow threads through ``threading.settrace`` (coverage.py does) see the forward."""
    seen: list[str] = []

    def tracer(frame, event, arg):
        if event == "call":
            seen.append(frame.f_code.co_qualname)
        return None

    threading.settrace(tracer)
    try:
        count(Recorder(), (torch.zeros(3, 8),))
    finally:
        threading.settrace(None)
    assert len(THREADS) == 1 and THREADS[0] != threading.get_ident()
    assert "Recorder.forward" in seen


GATE = threading.Event()
FINISHED: list[bool] = []  # whether the weight was on meta when the forward finished


class Gated(nn.Module):
    """Its forward waits for ``GATE`` (at most 5 s), then records that it finished."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        GATE.wait(5)
        FINISHED.append(self.lin.weight.is_meta)
        return self.lin(x)


def test_an_interrupted_wait_lets_the_trace_finish_before_the_model_is_put_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while the caller waits: the trace cannot be stopped, so the caller waits for it, and only
    then raises (and the count puts the weights back): nothing runs on the model after that."""
    model = Gated()
    weight = model.lin.weight
    GATE.clear()
    FINISHED.clear()
    real_join = trace_module._TraceThread.join
    joins: list[int] = []

    def join(self: threading.Thread, timeout: float | None = None) -> None:
        joins.append(1)
        if len(joins) == 1:
            raise KeyboardInterrupt  # as if Ctrl-C arrived while waiting
        GATE.set()
        real_join(self, timeout)

    monkeypatch.setattr(trace_module._TraceThread, "join", join)
    with pytest.raises(KeyboardInterrupt):
        count(model, (torch.zeros(2, 8),))
    assert FINISHED == [True]  # the traced forward ran on the meta weights and finished first
    assert model.lin.weight is weight and not weight.is_meta
