"""measure()'s options and the callables it counts: options never collide with the model's arguments."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn as nn

from pytest_flopbudget import measure
from pytest_flopbudget.engine.count import MetaCountError

D_IN, D_HID, D_OUT, ROWS = 8, 16, 4, 3
MLP_MACS = ROWS * D_IN * D_HID + ROWS * D_HID * D_OUT  # two Linear layers, bias not counted


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(D_IN, D_HID), nn.ReLU(), nn.Linear(D_HID, D_OUT))


class TakesOptionNames(nn.Module):
    """A model whose keyword arguments are named like measure()'s options."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(D_IN, D_OUT)

    def forward(self, x: torch.Tensor, counter: int = 1, mode: str = "x", unpriced: bool = False) -> torch.Tensor:
        y = self.lin(x)
        return y * y if unpriced else y  # the mul prices ROWS * D_OUT


def test_model_keyword_arguments_named_like_options_go_to_the_model() -> None:
    model, x = TakesOptionNames(), torch.randn(ROWS, D_IN)
    assert measure(model, x).macs == ROWS * D_IN * D_OUT
    assert measure(model, x, unpriced=True, mode="y", counter=3).macs == ROWS * D_IN * D_OUT + ROWS * D_OUT
    chosen = measure.using(counter="flop_counter", mode="meta")
    result = chosen(model, x, unpriced=True)
    assert (result.macs, result.counter, result.mode, result.capture) == (ROWS * D_IN * D_OUT + ROWS * D_OUT, "flop_counter", "meta", "dispatch")


def test_using_validates_and_chains() -> None:
    with pytest.raises(ValueError, match="unknown option 'countr'; the options are counter, mode, unpriced"):
        measure.using(countr="flop_counter")
    with pytest.raises(ValueError, match="mode='fast' is not one of auto, meta, real"):
        measure.using(mode="fast")
    chained = measure.using(counter="flop_counter").using(mode="real")
    assert chained.options == {"counter": "flop_counter", "mode": "real"}
    assert repr(chained) == "measure.using(counter='flop_counter', mode='real')"
    assert measure.options == {}  # the shared measure is unchanged


class Pipeline:
    """A pipeline-like object: modules in attributes, called as a whole."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.steps = 1

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@pytest.mark.parametrize("kind", ["lambda", "partial", "bound forward", "callable object", "method of object", "nested closure"])
@pytest.mark.parametrize("counter", ["torchprofile", "flop_counter"])
def test_callables_count_with_real_weights_on_meta(kind: str, counter: str) -> None:
    model = mlp()
    weights = {k: v.clone() for k, v in model.state_dict().items()}

    def outer(x: torch.Tensor) -> torch.Tensor:
        return (lambda t: model(t))(x)

    fn = {
        "lambda": lambda x: model(x),
        "partial": functools.partial(lambda m, x: m(x), model),
        "bound forward": model.forward,
        "callable object": Pipeline(model),
        "method of object": Pipeline(model).run,
        "nested closure": outer,
    }[kind]
    result = measure.using(counter=counter, mode="meta")(fn, torch.randn(ROWS, D_IN))
    assert (result.macs, result.mode) == (MLP_MACS, "meta")  # never run for real
    assert result.by_module == {"0": ROWS * D_IN * D_HID, "2": ROWS * D_HID * D_OUT}
    assert result.params == sum(p.numel() for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) and model.state_dict()[k].device.type == "cpu" for k, v in weights.items())


def test_a_callable_over_several_modules_names_them() -> None:
    encoder, decoder = nn.Linear(D_IN, D_HID), nn.Linear(D_HID, D_OUT)
    result = measure(lambda x: decoder(encoder(x)), torch.randn(ROWS, D_IN))
    assert result.by_module == {"encoder": ROWS * D_IN * D_HID, "decoder": ROWS * D_HID * D_OUT}


def test_a_callable_whose_weights_cannot_be_found_fails_in_one_line() -> None:
    weight = torch.randn(D_OUT, D_IN)
    hidden = {"w": weight}.values  # reached only through a builtin method: not searched

    def uses_hidden(x: torch.Tensor) -> torch.Tensor:
        (w,) = hidden()
        return torch.cat([x, w])

    with pytest.raises(MetaCountError) as caught:
        measure(uses_hidden, torch.randn(ROWS, D_IN))
    text = str(caught.value)
    assert "\n" not in text and "tensor(" not in text and len(text) < 500
    assert "reaches no torch.nn.Module" in text and "mode='real'" in text
    assert measure.using(mode="real")(uses_hidden, torch.randn(ROWS, D_IN)).mode == "real"


PYTEST_FILE = """
import torch
import pytest

@torch.library.custom_op("flopbudget_opt::fused_gemm", mutates_args=())
def fused_gemm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a @ b

@fused_gemm.register_fake
def _(a, b):
    return a.new_empty(a.shape[0], b.shape[1])

class Model(torch.nn.Module):
    def forward(self, a, b):
        return fused_gemm(a, b)

def test_default(flops):
    flops(Model(), torch.randn(3, 4), torch.randn(4, 5))

def test_using_warn(flops):
    result = flops.using(unpriced="warn")(Model(), torch.randn(3, 4), torch.randn(4, 5))
    assert result.unpriced == {"flopbudget_opt::fused_gemm": 1}
"""


def test_unpriced_policy_in_a_test_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gemm=PYTEST_FILE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*UnpricedOperatorError: no rule prices flopbudget_opt::fused_gemm (matmul, 1 call)*"])
    warned = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--flop-unpriced=warn")
    warned.assert_outcomes(passed=2, warnings=4)  # per test: the unpriced note and "no baseline entry"
    pytester.makeini("[pytest]\nflopbudget_unpriced = warn\n")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=2, warnings=4)  # per test: the unpriced note and "no baseline entry"
    bad = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--flop-unpriced=never")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
