"""Dispatch capture: ``capture()`` around any code, priced by the same registry as the trace."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

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
