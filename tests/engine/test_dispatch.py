"""Dispatch capture: ``capture()`` around any code, priced by the same registry as the trace."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch._C import DispatchKey
from torch._ops import HigherOrderOperator

from pytest_flopbudget.engine.capture.dispatch import capture
from pytest_flopbudget.engine.count import Tally, count


def test_capture_forward_and_backward_of_a_linear() -> None:
    b, i, o = 3, 8, 4
    model = nn.Sequential(nn.Linear(i, o))
    x = torch.randn(b, i, requires_grad=True)
    with capture(model) as tally:
        model(x).sum().backward()
    assert isinstance(tally, Tally)
    forward = b * i * o  # x @ W^T
    grad_input = b * o * i  # dy @ W
    grad_weight = o * b * i  # dy^T @ x
    assert tally.macs == forward + grad_input + grad_weight
    assert tally.by_module == {"0": forward, "": grad_input + grad_weight}  # backward runs outside forward hooks
    assert tally.unpriced == {}


def test_capture_around_an_optimizer_step_sees_no_profiler_markers() -> None:
    model = nn.Linear(4, 2)
    model(torch.randn(1, 4)).sum().backward()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, foreach=False)
    weight = model.weight.detach().clone()
    with capture(model) as tally:
        optimizer.step()
    assert tally.unpriced == {}
    # p += -lr * g: a scaled add, one multiply per parameter element (rules.py's training-step convention)
    assert tally.macs == 4 * 2 + 2
    assert not torch.equal(weight, model.weight)  # the step ran for real


def test_capture_yields_the_running_tally() -> None:
    with capture(None) as tally:
        torch.mm(torch.randn(2, 3), torch.randn(3, 5))
        assert tally.macs == 2 * 3 * 5
        torch.mm(torch.randn(2, 3), torch.randn(3, 5))
    assert tally.macs == 2 * 2 * 3 * 5
    assert tally.by_operator == {"aten::mm": 60}


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_sdpa_is_one_attention_on_every_device(device: str) -> None:
    """On meta SDPA decomposes to math (two scaling muls, two bmm); counted as the trace counts it."""
    q = torch.randn(2, 4, 10, 8, device=device)
    k = torch.randn(2, 4, 12, 8, device=device)
    with capture(None) as tally:
        F.scaled_dot_product_attention(q, k, k)
    assert tally.macs == 2 * 4 * 10 * 12 * (8 + 8)
    assert tally.unpriced == {}


def test_math_attention_inside_a_python_function_keeps_parity_on_meta() -> None:
    """nn.MultiheadAttention runs F.multi_head_attention_forward (Python) whose SDPA is seen decomposed."""
    b, s, e = 2, 10, 16
    mha = nn.MultiheadAttention(e, 4, batch_first=True).eval()
    x = torch.randn(b, s, e)
    with torch.no_grad():
        seen = count(mha, (x, x, x), {"need_weights": False}, counter="flop_counter", mode="meta")
    assert seen.macs == b * (3 * s * e * e + 2 * s * s * e + s * e * e)
    assert "aten::mul" not in seen.by_operator


def test_dropout_in_training_mode_is_free_as_in_the_trace() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).train()
    x = torch.randn(2, 4)
    for mode in ("meta", "real"):
        seen = count(model, (x,), {}, counter="flop_counter", mode=mode)
        assert seen.macs == count(model, (x,), {}, mode=mode).macs == 2 * 4 * 4


# ---- higher-order operators ----------------------------------------------------------------------



class _Apply(HigherOrderOperator):
    """A higher-order operator whose eager implementation calls its body."""

    def __init__(self) -> None:
        super().__init__("flopbudget_test_apply")

    def __call__(self, body, x):  # type: ignore[no-untyped-def, override]
        return super().__call__(body, x)


def _below_autograd(op: HigherOrderOperator) -> None:
    from torch._higher_order_ops.utils import autograd_not_implemented

    op.py_autograd_impl(autograd_not_implemented(op, deferred_error=True))


apply_op = _Apply()
apply_op.py_impl(DispatchKey.CompositeExplicitAutograd)(lambda body, x: body(x))
_below_autograd(apply_op)


class _Opaque(HigherOrderOperator):
    """One with no eager implementation: nothing to count through."""

    def __init__(self) -> None:
        super().__init__("flopbudget_test_opaque")

    def __call__(self, body, x):  # type: ignore[no-untyped-def, override]
        return super().__call__(body, x)


opaque_op = _Opaque()
_below_autograd(opaque_op)


class _Applies(nn.Module):
    def __init__(self, op: HigherOrderOperator) -> None:
        super().__init__()
        self.op = op
        self.inner = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(self.inner, x)


@pytest.mark.parametrize("counter", ["torchprofile", "flop_counter"])
@pytest.mark.parametrize("mode", ["meta", "real"])
def test_a_higher_order_operator_is_counted_through_its_body(counter: str, mode: str) -> None:
    result = count(_Applies(apply_op), (torch.randn(3, 8),), {}, counter=counter, mode=mode)
    assert (result.macs, result.unpriced) == (3 * 8 * 5, {})


def test_a_higher_order_operator_without_eager_body_fails_in_one_line() -> None:
    with pytest.raises(NotImplementedError) as caught, capture(None):
        opaque_op(nn.Linear(8, 5), torch.randn(3, 8))
    text = str(caught.value)
    assert "\n" not in text
    assert "flopbudget_test_opaque has no eager implementation" in text and "register_rule('higher_order::flopbudget_test_opaque'" in text


def test_cond_inside_capture_counts_the_costlier_branch_and_runs_the_taken_one() -> None:
    x = -torch.ones(3, 3)
    with capture(None) as tally:
        out = torch.cond(x.sum() > 0, lambda x: x @ x, lambda x: x - 1, (x,))
    assert torch.equal(out, x - 1)
    assert tally.macs == 3 * 3 * 3 and tally.unpriced == {}


# ---- module attribution (global hooks) and remembered prices ----------------------------------


_SEEN: list[str] = []


class _CallsStrangers(nn.Module):
    """Calls a module outside its tree, and one of its own submodules on another thread."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(8, 8)
        self.side = nn.Linear(8, 2)
        self.__dict__["stranger"] = nn.Linear(8, 4)  # not registered: no submodule of the model
        self.side.register_forward_hook(lambda m, a, o: _SEEN.append("side hook"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import threading

        worker = threading.Thread(target=lambda: self.side(torch.zeros(3, 8)))
        worker.start()
        worker.join()
        return self.stranger(self.inner(x))


def test_module_attribution_follows_this_models_modules_on_this_thread() -> None:
    """The capture follows modules with two global hooks: a module outside the model's tree counts in
    its caller's name, a submodule called on another thread is not seen (that thread runs no capture),
    the model's own hooks run as torch runs them, and no hook is left behind."""
    from torch.nn.modules import module as torch_module

    model = _CallsStrangers()
    x = torch.zeros(5, 8)
    _SEEN.clear()
    result = count(model, (x,), mode="real")
    assert result.by_module == {"inner": 5 * 8 * 8, "": 5 * 8 * 4}
    assert _SEEN == ["side hook"]
    assert not torch_module._global_forward_hooks and not torch_module._global_forward_pre_hooks
    assert all("forward" not in sub.__dict__ and not sub._forward_pre_hooks for sub in model.modules())
    assert len(model.side._forward_hooks) == 1


class _Weighted(nn.Module):
    """A layer whose weight a forward pre-hook of its own computes (as weight_norm does), with a forward
    hook of its own that computes too, and a property for a forward."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.lin.register_forward_pre_hook(lambda m, a: (a[0] @ torch.zeros(8, 8),))  # 8 x 8 per row
        self.lin.register_forward_hook(lambda m, a, out: out @ torch.zeros(8, 2))  # 8 x 2 per row
        self.tail = _PropertyForward()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.lin(x))


class _PropertyForward(nn.Module):
    @property
    def forward(self) -> Any:  # type: ignore[override]
        return lambda x: x @ torch.zeros(x.shape[-1], 3)


@pytest.mark.parametrize("foreign_hook", [False, True])
def test_attribution_is_the_same_with_hooks_of_the_modules_own_and_of_other_code(foreign_hook: bool) -> None:
    """A module's own forward pre-hooks count in its name and its own forward hooks in its caller's (the
    capture's global hooks run before a module's own), also beside other code's global hooks; a forward
    that is a property is followed too; a forward's signature is its own during the count; nothing is
    left behind."""
    import inspect

    from torch.nn.modules import module as torch_module

    model = _Weighted()
    signatures: list[str] = []
    model.lin.register_forward_pre_hook(lambda m, a: signatures.append(str(inspect.signature(model.tail.forward))))
    before = dict(model.lin.__dict__)
    handle = torch_module.register_module_forward_pre_hook(lambda m, a: None) if foreign_hook else None
    try:
        result = count(model, (torch.zeros(5, 8),), mode="real")
    finally:
        if handle is not None:
            handle.remove()
    assert result.by_module == {"lin": 5 * 8 * 8 + 5 * 8 * 8, "": 5 * 8 * 2, "tail": 5 * 2 * 3}
    assert signatures == ["(x)"]
    assert model.lin.__dict__ == before and len(model.lin._forward_pre_hooks) == 2
    assert not torch_module._global_forward_hooks and not torch_module._global_forward_pre_hooks


class _Introspects(nn.Module):
    """Reads its own forward's signature while it runs (as transformers' generate checks its kwargs)."""

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        import inspect

        _SEEN.append(str(inspect.signature(self.forward)))
        return x * scale


def test_a_forward_set_on_the_instance_is_followed_and_put_back() -> None:
    """A forward replaced on the instance (as accelerate's hooks do) is what runs and is followed; it
    is the same object after the count; ``inspect.signature`` of a forward is its own while it runs."""
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2), _Introspects())
    plain = model[0].forward

    def doubled(x: torch.Tensor) -> torch.Tensor:
        return plain(plain(x))

    model[0].forward = doubled
    _SEEN.clear()
    result = count(model, (torch.zeros(3, 4),), mode="real")
    assert result.by_module == {"0": 2 * 3 * 4 * 4, "1": 3 * 4 * 2, "2": 3 * 2}  # x * scale: one MAC an element
    assert model[0].__dict__["forward"] is doubled and "forward" not in model[1].__dict__
    import inspect

    assert _SEEN == [str(inspect.signature(_Introspects().forward))] and "scale" in _SEEN[0]


def test_remembered_prices_equal_fresh_ones_and_user_rules_are_always_called() -> None:
    """A built-in rule's answer is remembered per call signature: a count with the memory cleared and
    a repeated count agree with the hand count; a rule set by register_rule is called for every call."""
    from pytest_flopbudget.engine.capture import dispatch
    from pytest_flopbudget.engine.rules import register_rule
    from pytest_flopbudget.engine.rules.registry import RULES

    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16))
    x = torch.zeros(3, 2, 16)
    dispatch._PRICES.clear()
    first = count(model[:3], (x,))
    again = count(model[:3], (x,))
    assert first.macs == again.macs == 2 * (3 * 2 * 16 * 16)
    assert any(key[1] == "aten::linear" for key in dispatch._PRICES)

    built_in = RULES["aten::linear"]
    calls: list[int] = []

    def counting(node: object) -> int:
        calls.append(1)
        return 7

    register_rule("aten::linear", counting)
    try:
        assert count(model[:3], (x,)).macs == 14 and count(model[:3], (x,)).macs == 14
        assert len(calls) == 4
    finally:
        register_rule("aten::linear", built_in)  # type: ignore[arg-type]
    assert count(model[:3], (x,)).macs == first.macs
