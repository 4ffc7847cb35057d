"""The default counter on inputs that used to crash the process or count real compute as zero.

Aliasing and in-place calls (an output that is, or writes into, an input) are each counted in a
process of their own, so that a segmentation fault is one failed test, not the end of the run: in
meta, real and auto modes, with both counters. Opaque calls (a custom ``torch.autograd.Function``, a
``torch.jit.script`` function, a scripted submodule) are counted through by the dispatch capture,
with a note. Every expectation is a hand count from shapes: a Linear(i -> o) on n rows is n*i*o
MACs, a product of two (n x n) matrices n**3, an elementwise ``mul`` one MAC per output element,
``add`` and ``relu`` nothing (torchprofile's conventions).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from typing import Any

import pytest
import torch
import torch.nn as nn

from pytest_flopbudget import measure

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COUNTERS = ["torchprofile", "flop_counter", "trace"]
MODES = ["meta", "real", "auto"]

# Each case builds (model, input) in a fresh process; x is (2, 8) unless said.
CASES: dict[str, tuple[str, int]] = {
    "relu-inplace": ("nn.ReLU(inplace=True), torch.randn(2, 8)", 0),
    "linear-then-relu-inplace": ("nn.Sequential(nn.Linear(8, 8), nn.ReLU(inplace=True)), torch.randn(2, 8)", 2 * 8 * 8),
    "dropout-eval-returns-its-input": ("nn.Sequential(nn.Dropout(0.0), nn.Linear(8, 8)).eval(), torch.randn(2, 8)", 2 * 8 * 8),
    "add-inplace-on-the-input": ("(lambda x: x.add_(1)), torch.randn(2, 8)", 0),
    "mul-inplace-on-the-input": ("(lambda x: x.mul_(2)), torch.randn(2, 8)", 2 * 8),
    "mul-inplace-then-matmul-with-weights": ("Scale(), torch.randn(2, 8)", 2 * 8 + 2 * 8 * 4),
    "buffer-written-in-place": ("Buffered(), torch.randn(2, 8)", 8 + 2 * 8 + 2 * 8 * 8),
    "the-input-returned-twice": ("(lambda x: (x.mul_(2), x)), torch.randn(2, 8)", 2 * 8),
    "inplace-on-a-view-of-the-input": ("(lambda x: x[0].mul_(2)), torch.randn(2, 8)", 8),
    "out-argument-is-the-input": ("(lambda x: torch.mul(x, 2, out=x)), torch.randn(2, 8)", 2 * 8),
}

CHILD = textwrap.dedent(
    """
    import json, sys, warnings
    import torch, torch.nn as nn
    from pytest_flopbudget import measure
    warnings.simplefilter("ignore")

    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(8))
            self.m = nn.Parameter(torch.ones(8, 4))
        def forward(self, x):
            return x.mul_(self.w) @ self.m

    class Buffered(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 8)
            self.register_buffer("b", torch.ones(8))
        def forward(self, x):
            self.b.mul_(2)
            return self.lin(x * self.b)

    results = {}
    for counter in ("torchprofile", "flop_counter", "trace"):
        for mode in ("meta", "real", "auto"):
            model, x = BUILD
            try:
                r = measure.using(counter=counter, mode=mode)(model, x)
                results[f"{counter}/{mode}"] = [r.macs, r.capture, list(r.notes)]
            except Exception as exc:
                text = str(exc)
                results[f"{counter}/{mode}"] = [type(exc).__name__, text.count("\\n"), text[:300]]
    print(json.dumps(results))
    """
)


def _run_case(build: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", CHILD.replace("BUILD", build)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"the count's process ended with {done.returncode}: {done.stderr[-2000:]}"
    results: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


@pytest.mark.parametrize("case", list(CASES))
def test_aliasing_and_in_place_calls_count_in_every_mode_with_both_counters(case: str) -> None:
    build, expected = CASES[case]
    results = _run_case(build)
    assert set(results) == {f"{c}/{m}" for c in COUNTERS for m in MODES}
    for key, (macs, capture, notes) in results.items():
        assert macs == expected, f"{key}: {macs} {capture} {notes}"
        assert capture == ("trace" if key.startswith("trace") else "dispatch"), key
        assert notes == [], key


# ---- opaque calls ------------------------------------------------------------------------------


class Square(torch.autograd.Function):
    """x @ x in a custom autograd Function: one prim::PythonOp node in a trace."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x @ x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


def _square(x: torch.Tensor) -> torch.Tensor:
    return x @ x


with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # torch.jit.script is deprecated
    scripted_square = torch.jit.script(_square)


class UsesFunction(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = Square.apply(self.lin(x))  # type: ignore[no-untyped-call]
        return out


def _apply_square(x: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = Square.apply(x)  # type: ignore[no-untyped-call]
    return out


class WithScripted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.inner = torch.jit.script(nn.Linear(8, 8))
        self.out = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.out(self.inner(x))
        return out


N = 8  # x is (N, 8)
OPAQUE: dict[str, tuple[Any, int, str]] = {
    "autograd-function": (_apply_square, N**3, "prim::pythonop (a custom torch.autograd.Function, 1 call)"),
    "script-function": (lambda x: scripted_square(x), N**3, "prim::callfunction (a torch.jit.script function, 1 call)"),
    "module-with-a-function": (UsesFunction(), N * 8 * 8 + N**3, "prim::pythonop"),
    "scripted-submodule": (WithScripted(), N * 8 * 8 + N * 8 * 4, "holds a scripted module (inner)"),
    "script-module": (WithScripted().inner, N * 8 * 8, "is a scripted module"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("counter", COUNTERS)
@pytest.mark.parametrize("case", list(OPAQUE))
def test_opaque_calls_are_counted_through(case: str, counter: str, mode: str) -> None:
    model, expected, says = OPAQUE[case]
    result = measure.using(counter=counter, mode=mode)(model, torch.randn(N, 8))
    assert result.macs == expected and result.unpriced == {}
    assert result.capture == "dispatch" and result.mode == ("real" if mode == "real" else "meta")
    if counter == "trace":  # the trace sees one opaque call, and hands the count to the dispatch capture
        assert len(result.notes) == 1 and "counted by the dispatch capture" in result.notes[0]
        assert says in result.notes[0]
    else:
        assert result.notes == ()


def test_an_opaque_call_the_dispatch_capture_cannot_count_leaves_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the dispatch capture fails on the call, the trace's count stands, with a note and the opaque
    call listed: never a silent zero."""
    from pytest_flopbudget.engine import count as counting

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no dispatch here")

    monkeypatch.setattr(counting.dispatch, "run", failing)  # type: ignore[attr-defined]
    result = measure.using(counter="trace")(UsesFunction(), torch.randn(N, 8))
    assert result.macs == N * 8 * 8 and result.capture == "trace"
    assert result.unpriced == {"prim::pythonop": 1}
    assert len(result.notes) == 1 and result.notes[0].startswith("not counted: the operators inside prim::pythonop")
    assert "RuntimeError: no dispatch here" in result.notes[0]


def test_a_scripted_submodule_leaves_the_model_as_it_was() -> None:
    model = WithScripted()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    measure(model, torch.randn(N, 8))
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(v, after[k]) for k, v in before.items())
    assert not any(t.is_meta for t in after.values())


# ---- calls the dispatch capture takes up front ---------------------------------------------------


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4)).eval()


MLP_MACS = N * 8 * 16 + N * 16 * 4


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("how", ["torch.compile(module)", "module.compile()", "torch.compile(function)"])
def test_compiled_code_is_counted_eagerly_by_the_dispatch_capture(how: str) -> None:
    """Compiled code runs eagerly inside the count (no dynamo compilation of the capture's frames);
    the default counter takes the dispatch capture up front, with a note."""
    model = _mlp()
    if how == "torch.compile(module)":
        target: Any = torch.compile(model)
    elif how == "module.compile()":
        model.compile()
        target = model
    else:
        target = torch.compile(model.__call__)
    for counter in COUNTERS:
        result = measure.using(counter=counter)(target, torch.randn(N, 8))
        assert result.macs == MLP_MACS and result.capture == "dispatch" and result.mode == "meta"
        if counter == "trace":
            assert len(result.notes) == 1 and "torch.compile'd" in result.notes[0] and "run eagerly" in result.notes[0]


@pytest.mark.parametrize("how", ["torch.compile(module)", "a compiled block", "module.compile()"])
def test_compiled_modules_count_under_warnings_as_errors_with_the_eager_names(how: str) -> None:
    """The count's global module hooks make a ``torch.compile``d module warn on every call; under
    ``-W error`` (pytest's ``filterwarnings = error``) that warning would fail the count, so the count
    silences it (and only it). The per-module costs keep the eager model's names, not dynamo's
    ``_orig_mod`` wrapper's."""
    model = _mlp()
    eager = measure(model, torch.randn(N, 8))
    assert eager.by_module == {"0": N * 8 * 16, "2": N * 16 * 4}
    if how == "torch.compile(module)":
        target: nn.Module = torch.compile(model)  # type: ignore[assignment]
        expected = eager.by_module
    elif how == "a compiled block":
        target = nn.Sequential(nn.Identity(), torch.compile(model))  # type: ignore[arg-type]
        expected = {"1.0": N * 8 * 16, "1.2": N * 16 * 4}
    else:
        model.compile()
        target, expected = model, eager.by_module
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        result = measure(target, torch.randn(N, 8))
        assert result.macs == MLP_MACS and result.by_module == expected
        with pytest.warns(UserWarning, match="one of the user's own"):  # other warnings still surface
            warnings.warn("one of the user's own", UserWarning, stacklevel=1)


def test_a_call_of_several_forwards_is_counted_by_the_dispatch_capture() -> None:
    """A callable marked with ``forwards`` > 1 (prefill_and_decode) skips the trace; one forward does not."""
    model = _mlp()

    def twice(x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = model(model(x)[:, :4].repeat(1, 2))
        return out

    twice.forwards = 2  # type: ignore[attr-defined]
    result = measure.using(counter="trace")(twice, torch.randn(N, 8))
    assert result.macs == 2 * MLP_MACS and result.capture == "dispatch"
    assert len(result.notes) == 1 and "a generation of 2 forwards" in result.notes[0]
    twice.forwards = 1  # type: ignore[attr-defined]
    once = measure.using(counter="trace")(twice, torch.randn(N, 8))
    assert once.macs == 2 * MLP_MACS and once.capture == "trace" and once.notes == ()


class _Detector(nn.Module):
    """A detector's box selection in small: the boxes kept are where the scores pass a threshold
    (``torch.nonzero``), so the output's shape is the scores' values."""

    def __init__(self) -> None:
        super().__init__()
        self.score = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = torch.nonzero(self.score(x).squeeze(-1) > 0).squeeze(-1)
        return x[keep]


@pytest.mark.parametrize("counter", ["torchprofile", "flop_counter"])
@pytest.mark.parametrize("mode", ["auto", "meta"])
def test_a_model_on_meta_that_needs_values_fails_in_one_line_naming_the_way_out(counter: str, mode: str) -> None:
    from pytest_flopbudget.engine.errors import MetaCountError, NeedsValuesError

    with torch.device("meta"):
        model, x = _Detector(), torch.ones(16, 8)
    with pytest.raises(NeedsValuesError) as caught:
        measure.using(counter=counter, mode=mode)(model, x)
    text = str(caught.value)
    assert isinstance(caught.value, MetaCountError) and "\n" not in text
    assert "needs real values (torch.nonzero, whose output's shape depends on the values)" in text
    assert "build the model and its inputs on the CPU" in text
    assert ("mode='auto' counts them" in text) == (mode == "auto")


def test_the_same_model_on_the_cpu_counts_with_a_real_pass() -> None:
    torch.manual_seed(0)
    model, x = _Detector(), torch.randn(16, 8)
    result = measure(model, x)
    assert result.mode == "real" and result.macs == 16 * 8  # the score Linear: 16 rows x 8 in x 1 out
