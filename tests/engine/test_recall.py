"""A ``torch.compile``d module counted again where torch's guards say the same compiled graph would run:
the count made before, a copy (engine/recall.py); anything that changes what runs counts afresh."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn as nn

from pytest_flopbudget import measure, register_rule
from pytest_flopbudget.engine import count as count_module
from pytest_flopbudget.engine import recall
from pytest_flopbudget.engine.rules import RULES

# dynamo's state is the process's: under torch 2.9.1, after some hundreds of the suite's other tests in the
# same process, a compiled module's call was seen to reach dynamo not at all (no frame compiled, nothing
# cached; not every run), so the counts could not be remembered. These tests run in a fresh process.
_CHILD = "FLOPBUDGET_RECALL_TESTS_CHILD"
own_process = pytest.mark.skipif(os.environ.get(_CHILD) != "1", reason="run in a fresh process by test_in_a_fresh_process")


@pytest.mark.skipif(os.environ.get(_CHILD) == "1", reason="the fresh process itself")
def test_in_a_fresh_process() -> None:
    """Every test of this file, in a pytest process of its own."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", os.path.abspath(__file__), "-q", "-p", "no:randomly", "-p", "no:cacheprovider"],
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        env={**os.environ, _CHILD: "1"}, capture_output=True, text=True, timeout=900, check=False,
    )
    summary = proc.stdout.strip().splitlines()[-1:] + proc.stderr.strip().splitlines()[-3:]
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert re.search(r"\b7 passed, 1 skipped\b", proc.stdout), summary


def _mlp(out: int = 64) -> nn.Module:
    with torch.device("meta"):
        return nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, out)).eval()


def _macs(batch: int, out: int = 64) -> int:
    return batch * 64 * 256 + batch * 256 * out  # the two linears; GELU is free


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    if os.environ.get(_CHILD) != "1":  # (the suite's process: no dynamo to reset)
        yield
        return
    recall.forget()
    torch._dynamo.reset()
    yield
    recall.forget()
    torch._dynamo.reset()


@pytest.fixture
def counted_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many counts ran the model (the capture's meta pass), rather than coming from memory."""
    runs: list[int] = []
    real = count_module._meta_first

    def counting(*args: Any, **kwargs: Any) -> Any:
        runs.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(count_module, "_meta_first", counting)
    return runs


def _compiled(model: nn.Module) -> nn.Module:
    compiled: nn.Module = torch.compile(model, backend="eager")  # type: ignore[assignment]
    return compiled


def _state(model: nn.Module) -> list[Any]:
    """What a count must leave as it was: every module's attribute bindings (by identity), flags and hooks,
    and every parameter's and buffer's identity, layout, requires_grad and gradient."""
    out: list[Any] = []
    for name, module in model.named_modules():
        out.append((name, id(module), module.training, {k: id(v) for k, v in module.__dict__.items()},
                    list(module._forward_hooks), list(module._forward_pre_hooks)))
        for key, t in (*module._parameters.items(), *module._buffers.items()):
            if t is not None:
                out.append((name, key, id(t), t.shape, t.stride(), t.dtype, t.device, t.requires_grad, id(t.grad)))
    return out


def _run(model: nn.Module, x: torch.Tensor) -> None:
    """The compiled pass, under the settings a count runs the model with (no gradients)."""
    with torch.no_grad():
        model(x)


class _OwnMLP(nn.Module):
    """A module of the user's own: dynamo compiles its bound ``__call__``'s frame (a torch.nn container's
    frame is a wrapper's ``inner(*args, **kwargs)``)."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(64, 256, device="meta")
        self.out = nn.Linear(256, 64, device="meta")

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        h = nn.functional.gelu(self.inp(x))
        if scale != 1.0:  # a constant the guards hold
            h = h * scale
        y: torch.Tensor = self.out(h)
        return y


@own_process
@pytest.mark.parametrize("how", ["torch.compile(nn.Sequential)", "torch.compile(a module of the user's)",
                                 "a module of the user's .compile()"])
def test_a_compiled_module_counted_again_is_the_count_made_before(counted_runs: list[int], how: str) -> None:
    own = "user's" in how
    if how.endswith(".compile()"):
        model = _OwnMLP()
        model.compile(backend="eager")
    else:
        model = _compiled(_OwnMLP() if own else _mlp())
    x = torch.zeros(8, 64, device="meta")
    _run(model, x)  # the compiled pass: dynamo's cache now holds the graph and its guards
    before = _state(model)
    first = measure(model, x)  # made by running the model eagerly
    assert _state(model) == before
    second = measure(model, x)  # remembered
    assert _state(model) == before
    assert first.macs == second.macs == _macs(8)
    assert first == second and first is not second
    first_layer, second_layer = ("inp", "out") if own else ("0", "2")
    assert second.by_module == {first_layer: 8 * 64 * 256, second_layer: 8 * 256 * 64}
    assert len(counted_runs) == 1
    second.by_module[first_layer] = 0  # the copy given is the caller's own
    assert measure(model, x).by_module[first_layer] == 8 * 64 * 256
    assert len(counted_runs) == 1


@own_process
def test_what_changes_the_call_counts_afresh(counted_runs: list[int]) -> None:
    model = _compiled(_mlp())
    x = torch.zeros(8, 64, device="meta")
    _run(model, x)
    assert measure(model, x).macs == _macs(8) and len(counted_runs) == 1

    # another batch: dynamo recompiles for dynamic shapes, whose guards pass for any batch; the layout key does not
    for batch in (16, 4):
        y = torch.zeros(batch, 64, device="meta")
        _run(model, y)
        assert measure(model, y).macs == _macs(batch)
    assert len(counted_runs) == 3
    assert measure(model, torch.zeros(4, 64, device="meta")).macs == _macs(4) and len(counted_runs) == 3

    # other settings
    assert measure.using(memory=True)(model, x).peak_bytes is not None and len(counted_runs) == 4

    # a rule set since: the remembered count was priced without it
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(RULES, "aten::gelu", lambda node: 1000)
        assert measure(model, x).macs == _macs(8) + 1000 and len(counted_runs) == 5
    assert measure(model, x).macs == _macs(8) and len(counted_runs) == 6

    # a layer replaced: torch's guards fail until the compiled pass runs again (and recompiles)
    model._orig_mod[2] = nn.Linear(256, 32, device="meta")  # type: ignore[index,operator]
    assert measure(model, x).macs == _macs(8, 32) and len(counted_runs) == 7
    _run(model, x)
    assert measure(model, x).macs == _macs(8, 32) and len(counted_runs) == 8
    assert measure(model, x).macs == _macs(8, 32) and len(counted_runs) == 8


@own_process
def test_a_parameter_the_graph_never_reads_still_counts_afresh(counted_runs: list[int]) -> None:
    model = _compiled(_mlp())
    x = torch.zeros(8, 64, device="meta")
    _run(model, x)
    before = measure(model, x)
    model._orig_mod.extra = nn.Parameter(torch.zeros(10, device="meta"))  # type: ignore[union-attr]
    after = measure(model, x)
    assert (before.params, after.params) == (64 * 256 + 256 + 256 * 64 + 64, 64 * 256 + 256 + 256 * 64 + 64 + 10)
    assert len(counted_runs) == 2


@own_process
def test_a_graph_break_or_an_uncompiled_call_is_never_remembered(counted_runs: list[int]) -> None:
    class Breaks(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(64, 256, device="meta")
            self.b = nn.Linear(256, 64, device="meta")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.a(x)
            torch._dynamo.graph_break()
            out: torch.Tensor = self.b(h)
            return out

    model = _compiled(Breaks())
    x = torch.zeros(8, 64, device="meta")
    _run(model, x)
    assert [measure(model, x).macs for _ in range(2)] == [_macs(8)] * 2
    assert len(counted_runs) == 2

    never_run = _compiled(_mlp())  # no compiled pass yet: nothing in torch's cache to check against
    assert [measure(never_run, x).macs for _ in range(2)] == [_macs(8)] * 2
    assert len(counted_runs) == 4
    never_run(x)  # compiled with gradients on: guards that a count (under no_grad) does not pass
    assert [measure(never_run, x).macs for _ in range(2)] == [_macs(8)] * 2
    assert len(counted_runs) == 6
    _run(never_run, x)
    assert [measure(never_run, x).macs for _ in range(2)] == [_macs(8)] * 2
    assert len(counted_runs) == 7

    hooked = _OwnMLP()  # a hook of the module's own runs in a frame of its own, outside the forward's guards
    hooked.register_forward_hook(lambda module, args, out: None)
    with_hook = _compiled(hooked)
    _run(with_hook, x)
    assert [measure(with_hook, x).macs for _ in range(2)] == [_macs(8)] * 2
    assert len(counted_runs) == 9

    eager = _mlp()  # not compiled at all
    assert [measure(eager, x).macs for _ in range(2)] == [_macs(8)] * 2
    assert len(counted_runs) == 11


def test_register_rule_moves_the_registry_version() -> None:
    before = RULES.version
    register_rule("mylib::recall_probe", lambda node: 1)
    RULES.pop("mylib::recall_probe")
    assert RULES.version >= before + 2 and "mylib::recall_probe" not in RULES
