"""The trace is closed while it runs, and its graph is the one the tracer itself would close.

The tracer ends a trace with passes over the whole graph (scope-block fix-ups, inlining, tuple
lowering, dead-code elimination, a lint); module scopes are kept flat (no scope blocks), and where
the graph is flat with no calls into scripted code and no tuples, the count registers the outputs
and runs the dead-code elimination itself, prices the graph, and empties it before the tracer's
passes run. These tests check that the priced graph is the tracer's: the same counts with the
tracer's own closing, the same operators as a plain ``torch.jit`` trace, the tracer's closing where
its passes would do more, its error for an output no traced operator made, and rules that run as
after a trace.
"""

from __future__ import annotations

import importlib
import warnings
from collections import Counter
from typing import Any

import pytest
import torch
import torch.nn as nn
from crosscheck_models import Layers, var_models
from torch.utils.checkpoint import checkpoint

from pytest_flopbudget.engine import count as counting
from pytest_flopbudget.engine import rules
from pytest_flopbudget.engine.count import count as count_with


def count(model: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
    """The ``trace`` counter (this file tests the TorchScript trace, no longer the default capture)."""
    return count_with(model, args, kwargs, **{"counter": "trace", **options})

trace_module = importlib.import_module("pytest_flopbudget.engine.capture.trace")


class _Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x * x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


class Mutating(nn.Module):
    """What a dead-code elimination must keep or drop alike: an in-place buffer update, a submodule
    whose result is dropped, checkpointing, a custom autograd function (one Python node), an in-place
    write into a view, dead in-place work on a fresh tensor, and a dict with a list as output."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.unused = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 4)
        self.norm = nn.BatchNorm1d(8)
        self.register_buffer("steps", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        self.steps.add_(1)
        self.unused(x)
        h = _Square.apply(self.norm(checkpoint(self.a, x, use_reentrant=False)))
        y = self.b(h)
        y[:, 0] += 1
        torch.ones(3).mul_(2)
        return {"out": y, "aux": [h.sum()]}


def _cases() -> list[Any]:
    layers = Layers().eval()
    cases = [pytest.param(layers, (torch.zeros(2, 3, 8, 8), torch.zeros(2, 5, dtype=torch.long)), id="layers")]
    cases += [pytest.param(Mutating().train(), (torch.zeros(4, 8),), id="mutating-train"),
              pytest.param(Mutating().eval(), (torch.zeros(4, 8),), id="mutating-eval")]
    return cases + [pytest.param(model, args, id=f"var-{name}") for name, model, args in var_models()]


@pytest.fixture
def closings(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What each ``_close_here`` call answered: closed in the trace (True) or left to the tracer."""
    answers: list[bool] = []
    original = trace_module._close_here

    def spy(graph: Any, outputs: list[torch.Tensor]) -> bool:
        answers.append(original(graph, outputs))
        return answers[-1]

    monkeypatch.setattr(trace_module, "_close_here", spy)
    monkeypatch.setattr(counting, "OPAQUE", {})  # the trace's own count, opaque nodes listed (no dispatch recount)
    return answers


@pytest.mark.parametrize("mode", ["meta", "real"])
@pytest.mark.parametrize(("model", "args"), _cases())
def test_closing_in_the_trace_counts_as_the_tracers_closing(
    model: nn.Module, args: tuple, mode: str, closings: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    here = count(model, args, mode=mode)
    assert closings == [True] and here.capture == "trace" and here.macs > 0
    monkeypatch.setattr(trace_module, "_close_here", lambda graph, outputs: False)
    tracer = count(model, args, mode=mode)
    assert (here.macs, here.by_operator, here.by_module, here.unpriced, here.notes) == (
        tracer.macs, tracer.by_operator, tracer.by_module, tracer.unpriced, tracer.notes)


@pytest.mark.parametrize("mode", ["meta", "real"])
def test_what_the_closing_keeps_is_counted_by_hand(mode: str, closings: list[bool]) -> None:
    """The three linears (the dropped one too) and the affine batch norm (numel); the custom autograd
    function is one Python node, listed as unpriced; the dead in-place multiply costs nothing."""
    result = count(Mutating().train(), (torch.zeros(4, 8),), mode=mode)
    assert closings == [True]
    assert result.macs == 4 * 8 * 8 + 4 * 8 * 8 + 4 * 8 * 4 + 4 * 8
    assert result.unpriced == {"prim::pythonop": 1}
    assert result.by_module == {"a": 256, "b": 256, "unused": 128, "norm": 32}


def _aten_nodes(graph: Any) -> Counter:
    """Operator and output shapes of every aten node."""
    return Counter(
        (node.kind(), tuple(tuple(out.type().sizes() or ()) for out in node.outputs() if isinstance(out.type(), torch._C.TensorType)))
        for node in graph.nodes() if node.kind().startswith("aten::")
    )


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_the_priced_graph_holds_the_operators_of_a_plain_torch_jit_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flat scopes and the closing here leave the nodes a plain ``torch.jit`` trace has (every
    submodule output of this model is used, so the count's extra graph outputs keep nothing more)."""
    model, args = Layers().eval(), (torch.zeros(2, 3, 8, 8), torch.zeros(2, 5, dtype=torch.long))
    priced: list[Counter] = []
    original = trace_module._price
    monkeypatch.setattr(trace_module, "_price", lambda graph, names: (priced.append(_aten_nodes(graph)), original(graph, names))[1])
    count(model, args, mode="real")
    with torch.no_grad(), counting._no_mha_fastpath():  # as the count does: the fused path hides the matmuls
        plain, _ = torch.jit._get_trace_graph(model, args)
    assert len(priced) == 1 and priced[0] == _aten_nodes(plain)
    assert sum(priced[0].values()) > 30


def _product(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.matmul(x, w)


class CallsScriptedCode(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 16, bias=False)
        self.w = nn.Parameter(torch.zeros(16, 4))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.script is deprecated (a DeprecationWarning, in 2.14 a FutureWarning)
            self.product = torch.jit.script(_product)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.product(self.lin(x), self.w)


class ReturnsTuples(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pair = torch.tensor_split(self.lin(x), 2, dim=-1)  # a TensorList: traced through a list node
        return torch.stack(pair).sum(0)


def test_scripted_code_is_left_to_the_tracers_closing(closings: list[bool]) -> None:
    """A call into TorchScript code is a node the tracer's passes may inline: the tracer closes this
    graph. (It does not inline here, so the call stays one node, listed as unpriced, as before.)"""
    result = count(CallsScriptedCode(), (torch.zeros(3, 8),), mode="real")
    assert closings == [False] and result.capture == "trace"
    assert result.macs == 3 * 8 * 16 and result.unpriced == {"prim::callfunction": 1}


def test_list_outputs_close_here_and_count(closings: list[bool]) -> None:
    result = count(ReturnsTuples(), (torch.zeros(3, 8),))
    assert closings == [True] and result.macs == 3 * 8 * 8 and not result.unpriced


class ReturnsAnUntracedTensor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 4, bias=False)
        self.table = torch.ones(3)  # a plain attribute: neither parameter, buffer nor input

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lin(x), self.table


@pytest.mark.parametrize("close_here", [True, False])
def test_an_output_no_traced_operator_made_is_the_tracers_error(close_here: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tracer refuses such an output; so does the closing here: both hand the count to dispatch."""
    if not close_here:
        monkeypatch.setattr(trace_module, "_close_here", lambda graph, outputs: False)
    result = count(ReturnsAnUntracedTensor(), (torch.zeros(2, 8),), mode="real")
    assert result.capture == "dispatch" and result.macs == 2 * 8 * 4
    text = "the trace failed (RuntimeError: output 1 of traced region did not have observable data dependence"
    assert any(text in note for note in result.notes), result.notes  # the tracer's own prints the tensor


class Spectrum(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft(x, dim=-1).abs()


def test_rules_run_untraced_and_outside_the_counts_modes_as_after_a_trace(closings: list[bool]) -> None:
    """A user's rule may compute with tensors: nothing it runs is added to the graph being priced."""
    seen: list[Any] = []

    def rfft_rule(node: Any) -> int:
        seen.append((torch._C._get_tracing_state(), torch._C._len_torch_dispatch_stack()))
        return int(torch.tensor(node.inputs[0].shape).prod()) * 5  # tensors made and reduced

    rules.register_rule("aten::fft_rfft", rfft_rule)
    try:
        result = count(Spectrum(), (torch.zeros(4, 16),))
    finally:
        rules.unregister_rule("aten::fft_rfft")
    assert closings == [True] and seen == [(None, 0)]
    assert result.macs == 4 * 16 * 5 and not result.unpriced
