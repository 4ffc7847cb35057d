"""Direct calls (engine/capture/direct.py): a CNN layer made and priced at the Python level records
exactly what the dispatched call records (MACs by module and operator, bytes moved, unpriced operators)
and makes the same output (shape, strides, dtype, identity for in-place calls); every case it does not
cover takes the dispatcher's path."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from pytest_flopbudget.engine import fastmeta
from pytest_flopbudget.engine.capture import direct, dispatch
from pytest_flopbudget.engine.count import count
from pytest_flopbudget.engine.fastmeta import conv


@contextmanager
def _direct(on: bool) -> Iterator[None]:
    before = dispatch._DIRECT_ON[0]
    dispatch._DIRECT_ON[0] = on
    try:
        yield
    finally:
        dispatch._DIRECT_ON[0] = before


class _Call(nn.Module):
    """One call of ``fn`` on the inputs, through a submodule (attribution by module is compared too)."""

    def __init__(self, fn: Callable[..., Any], *weights: tuple[int, ...]) -> None:
        super().__init__()
        self.inner = _Inner(fn, weights)

    def forward(self, *xs: torch.Tensor) -> Any:
        return self.inner(*xs)


class _Inner(nn.Module):
    def __init__(self, fn: Callable[..., Any], weights: tuple[tuple[int, ...], ...]) -> None:
        super().__init__()
        self.fn = fn
        self.params = nn.ParameterList([nn.Parameter(torch.zeros(shape)) for shape in weights])

    def forward(self, *xs: torch.Tensor) -> Any:
        return self.fn(*xs, *self.params)


def _meta(*shape: int, last: bool = False, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.empty(shape, device="meta", dtype=dtype, memory_format=torch.channels_last if last else torch.contiguous_format)


def _nchw(last: bool = False) -> torch.Tensor:
    return _meta(2, 8, 10, 12, last=last)


# (name, fn, weight shapes, inputs): fn(*inputs, *weights)
CASES: list[tuple[str, Callable[..., Any], tuple[tuple[int, ...], ...], Callable[[], tuple[torch.Tensor, ...]]]] = [
    ("conv2d", lambda x, w, b: F.conv2d(x, w, b, 1, 1), ((6, 8, 3, 3), (6,)), lambda: (_nchw(),)),
    ("conv2d no bias", lambda x, w: F.conv2d(x, w), ((6, 8, 3, 3),), lambda: (_nchw(),)),
    ("conv2d tuples", lambda x, w, b: F.conv2d(x, w, b, (2, 1), (1, 2), (1, 2), 2), ((6, 4, 3, 3), (6,)), lambda: (_nchw(),)),
    ("conv2d one-item lists", lambda x, w: torch.conv2d(x, w, None, [2], [1], [1], 1), ((6, 8, 3, 3),), lambda: (_nchw(),)),
    ("conv2d 1x1 keywords (layout)", lambda x, w: F.conv2d(x, w, stride=2, groups=2), ((6, 4, 1, 1),), lambda: (_nchw(),)),
    ("conv2d channels-last (layout)", lambda x, w: F.conv2d(x, w, padding=1), ((6, 8, 3, 3),), lambda: (_nchw(last=True),)),
    ("conv2d half", lambda x, w: F.conv2d(x, w.half()), ((6, 8, 3, 3),), lambda: (_meta(1, 8, 5, 5, dtype=torch.float16),)),
    ("conv2d same (declined)", lambda x, w: F.conv2d(x, w, padding="same"), ((6, 8, 3, 3),), lambda: (_nchw(),)),
    ("conv2d batchless (declined)", lambda x, w: F.conv2d(x, w), ((6, 8, 3, 3),), lambda: (_meta(8, 10, 12),)),
    ("conv module", nn.Conv2d(8, 6, 3, padding=1, bias=True).to("meta"), (), lambda: (_nchw(),)),
    ("linear", lambda x, w, b: F.linear(x, w, b), ((5, 7), (5,)), lambda: (_meta(3, 7),)),
    ("linear no bias", lambda x, w: F.linear(x, w), ((5, 7),), lambda: (_meta(3, 7),)),
    ("linear 3-d (declined)", lambda x, w, b: F.linear(x, w, b), ((5, 7), (5,)), lambda: (_meta(2, 3, 7),)),
    ("linear transposed input", lambda x, w, b: F.linear(x.t(), w, b), ((5, 7), (5,)), lambda: (_meta(7, 3),)),
    ("relu", lambda x: F.relu(x), (), lambda: (_nchw(),)),
    ("relu in place", lambda x: F.relu(x.clone(), inplace=True), (), lambda: (_nchw(),)),
    ("relu in place positional", lambda x: F.relu(x.clone(), True), (), lambda: (_nchw(),)),
    ("torch.relu", lambda x: torch.relu(x), (), lambda: (_nchw(last=True),)),
    ("Tensor.relu_", lambda x: x.clone().relu_(), (), lambda: (_nchw(),)),
    ("relu of ints (declined)", lambda x: F.relu(x.long()), (), lambda: (_nchw(),)),
    ("relu of a view", lambda x: F.relu(x[:, 1:], inplace=True), (), lambda: (_nchw(),)),
    ("cat", lambda x: torch.cat([x, x * 2], 1), (), lambda: (_nchw(),)),
    ("cat default dim", lambda x: torch.cat((x, x)), (), lambda: (_nchw(),)),
    ("cat keyword dim", lambda x: torch.cat([x, x], dim=-1), (), lambda: (_nchw(),)),
    ("cat channels-last", lambda x: torch.cat([x, x], 1), (), lambda: (_nchw(last=True),)),
    ("cat mixed dtypes (declined)", lambda x: torch.cat([x, x.half()], 1), (), lambda: (_nchw(),)),
    ("max_pool2d", lambda x: F.max_pool2d(x, 2), (), lambda: (_nchw(),)),
    ("max_pool2d all", lambda x: F.max_pool2d(x, 3, 2, 1, 1, True), (), lambda: (_nchw(),)),
    ("max_pool2d keywords", lambda x: F.max_pool2d(x, kernel_size=(3, 2), stride=(1, 2), ceil_mode=True), (), lambda: (_nchw(),)),
    ("max_pool2d channels-last", lambda x: F.max_pool2d(x, 2), (), lambda: (_nchw(last=True),)),
    ("max_pool2d 3-d", lambda x: F.max_pool2d(x, 2), (), lambda: (_meta(8, 10, 12),)),
    ("max_pool2d indices (declined)", lambda x: F.max_pool2d(x, 2, return_indices=True)[0], (), lambda: (_nchw(),)),
    ("max_pool module", nn.MaxPool2d(3, 2, ceil_mode=True), (), lambda: (_nchw(),)),
]


def _model(fn: Callable[..., Any], weights: tuple[tuple[int, ...], ...]) -> nn.Module:
    with torch.device("meta"):
        return _Call(fn, *weights).eval()


def _layout(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.shape, out.stride(), out.dtype, out.device
    return tuple(_layout(o) for o in out)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_direct_call_records_and_makes_what_the_dispatched_call_does(case: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    name, fn, weights, inputs = case
    model = _model(fn, weights)
    taken: list[bool] = []

    def spying(handler: direct.Handler) -> direct.Handler:
        def spy(*args: Any) -> Any:
            out = handler(*args)
            taken.append(out is not direct.MISS)
            return out
        return spy

    monkeypatch.setattr(direct, "DIRECT", {fn: spying(handler) for fn, handler in direct.DIRECT.items()})
    monkeypatch.setattr(direct, "_MEMO", {})  # the first call is made by its handler, the next ones remembered
    results, outputs = [], []
    for on in (True, True, False):
        with _direct(on):
            result = count(model, inputs(), mode="meta", unpriced="warn")
            results.append((result.macs, result.by_module, result.by_operator, result.unpriced, result.costs))
            x = inputs()
            with torch.no_grad(), dispatch.capture(model, shapes=fastmeta.SHAPES):
                outputs.append(_layout(model(*x)))
    assert results[0] == results[1] == results[2]
    assert outputs[0] == outputs[1] == outputs[2]
    if "declined" in name:
        assert not any(taken) and not direct._MEMO
    elif "(layout)" not in name or conv._output_always_contiguous():
        assert taken[0] and not any(taken[1:])  # made once, then remembered
        assert direct._MEMO
    # (layout): a channels-last input or a 1x1 weight (contiguous and channels-last at once); where torch's
    # meta convolution picks the output's layout from them (torch 2.9), the shape function leaves it to torch


def _dispatched_operators(model: nn.Module, x: torch.Tensor) -> list[str]:
    """The operators that reach the capture's dispatch mode in one meta forward of ``model``."""
    seen: list[str] = []
    plain = dispatch._Dispatch.__torch_dispatch__

    def spy(self: Any, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        seen.append(str(func))
        return plain(self, func, types, args, kwargs)

    dispatch._Dispatch.__torch_dispatch__ = spy  # type: ignore[method-assign]
    try:
        with torch.no_grad(), dispatch.capture(model, shapes=fastmeta.SHAPES):
            model(x)
    finally:
        dispatch._Dispatch.__torch_dispatch__ = plain  # type: ignore[method-assign]
    return seen


def _cnn() -> nn.Module:
    with torch.device("meta"):
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(8 * 4 * 4, 10),
        ).eval()


def test_a_plain_cnn_on_meta_reaches_the_dispatcher_only_for_its_view() -> None:
    """Convolutions, ReLUs, pooling and a 2-d linear layer are made at the Python level: only the
    flatten's view is dispatched; with direct calls off, every layer is."""
    model, x = _cnn(), _meta(1, 3, 8, 8)
    assert _dispatched_operators(model, x) == ["aten.view.default"]
    with _direct(False):
        assert len(_dispatched_operators(model, x)) == 8


class _PassingOperators(TorchDispatchMode):
    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        return func(*args, **(kwargs or {}))


class _Passing(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        return func(*args, **(kwargs or {}))


def test_direct_calls_step_aside_for_gradients_tracers_and_other_modes() -> None:
    """Where something could tell a direct call from a dispatched one (gradients being recorded,
    autocast, another function or dispatch mode, real tensors), the dispatcher's path runs, and counts
    the same."""
    model, x = _cnn(), _meta(1, 3, 8, 8)
    expected = count(model, (x,)).macs
    with torch.no_grad(), _PassingOperators():  # where the capture's handler runs: one dispatch mode, no function mode
        assert direct.ready()
        with torch.enable_grad():
            assert not direct.ready()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not direct.ready()
        with _Passing():
            assert not direct.ready()
        with _PassingOperators():
            assert not direct.ready()
    assert not direct.ready()  # no dispatch mode: not inside a capture
    with _Passing():
        assert count(model, (x,)).macs == expected
    real = _cnn().to_empty(device="cpu")
    assert count(real, (torch.zeros(1, 3, 8, 8),), mode="real").macs == expected
    assert 3 * 8 * 64 * 9 + 8 * 8 * 16 * 9 + 128 * 10 == expected


def test_a_remembered_call_returns_its_input_in_place_and_a_new_tensor_otherwise() -> None:
    """The same call again is made from what the first recorded: an in-place ReLU returns the very tensor
    it was given, a convolution a new tensor of the first output's layout."""
    x, y = _nchw(), _nchw()
    weight = torch.empty(6, 8, 3, 3, device="meta")
    direct._MEMO.clear()
    with torch.no_grad(), dispatch.capture(None, shapes=fastmeta.SHAPES) as tally:
        assert torch.relu_(x) is x and torch.relu_(y) is y  # the second from the memo
    assert x._version == y._version == 1  # written, as the dispatcher's in-place kernel marks it
    with torch.no_grad(), dispatch.capture(None, shapes=fastmeta.SHAPES) as tally:
        first, second = F.conv2d(x, weight, None, 1, 1), F.conv2d(y, weight, None, 1, 1)
    assert len(direct._MEMO) == 2
    assert second is not first and second is not x and _layout(second) == _layout(first)
    assert tally.by_operator == {"aten::conv2d": 2 * 2 * 6 * 10 * 12 * 8 * 3 * 3}


def test_the_same_tensor_twice_is_remembered_apart_from_two_tensors() -> None:
    """``cat([x, x])`` reads ``x`` once, ``cat([x, y])`` reads both: same layouts, different bytes, so
    different memo entries, each as the dispatched call records it."""
    x, y = _nchw(), _nchw()
    size = x.numel() * x.element_size()

    def read(make: Callable[[], Any]) -> set[int]:
        with torch.no_grad(), dispatch.capture(None, shapes=fastmeta.SHAPES) as tally:
            make()
        return {key[4] for key in tally.costs}

    for on in (True, False):
        with _direct(on):
            direct._MEMO.clear()
            for _ in range(2):
                assert read(lambda: torch.cat([x, x], 1)) == {size}
                assert read(lambda: torch.cat([x, y], 1)) == {2 * size}


def test_a_rule_set_after_a_remembered_call_prices_the_next_one() -> None:
    """A remembered call is priced by the rule that priced it: a rule set by register_rule afterwards
    (never remembered itself) prices every later call, and the built-in one again once it is back."""
    from pytest_flopbudget.engine.rules import register_rule
    from pytest_flopbudget.engine.rules.registry import RULES

    model, x = _cnn(), _meta(1, 3, 8, 8)
    direct._MEMO.clear()
    first = count(model, (x,))
    expected, convolutions = first.macs, first.by_operator["aten::conv2d"]
    assert count(model, (x,)).macs == expected and direct._MEMO
    built_in = RULES["aten::conv2d"]
    calls: list[int] = []

    def counting(node: object) -> int:
        calls.append(1)
        return 1000

    register_rule("aten::conv2d", counting)
    try:
        for _ in range(2):
            assert count(model, (x,)).macs == expected - convolutions + 2 * 1000
        assert len(calls) == 4  # two convolutions a count, never remembered
    finally:
        register_rule("aten::conv2d", built_in)
    assert count(model, (x,)).macs == expected
