"""VAR's generation scale by scale: the transformer's part of each of the K steps, measured alone.

Generation runs the transformer K times: step k on the pn_k^2 new tokens of the conditional and
"no class" rows, attending to every token so far through the KV cache. Early scales push a handful
of tokens through all the weights; the last ones hundreds. ``VARScaleStep`` runs step k alone (the
cache filled with the earlier scales' keys and values), so each step has its own count, checked
against ``analytic.generation_step``'s transformer terms, and its own roofline estimate for the
deployment table (``deployment.scale_table``): which bound binds at which scale, at batch 1 and 16.
These are not baselined (``measure``, not the fixture): the generation tests are.

``test_scale_step_peak_by_hand`` derives the peak memory of a step exactly on a small VAR (d2) and checks
it against the count on meta and against torch.profiler's allocator events on a real CPU run.
"""

from __future__ import annotations

from collections.abc import Callable

import analytic
import pytest
import torch
from deployment import record_estimates
from model import RELEASED, VOCAB_SIZE, VARScaleStep, build_released, build_var, scale_step_inputs
from test_var_flops import FP32, THROUGHPUT_BATCH, check_analytic, transformer_weight_bytes
from torch.profiler import ProfilerActivity, profile

from pytest_flopbudget import measure

MODELS = ("d16", "d36-s")  # the smallest (256 px) and the largest (512 px)


@pytest.mark.parametrize("batch", [1, THROUGHPUT_BATCH], ids=lambda b: f"b{b}")
@pytest.mark.parametrize("name", MODELS)
def test_generation_scales(record_property, name: str, batch: int) -> None:
    var = build_released(name)
    shape = analytic.var_shape(*RELEASED[name])
    pns = shape.patch_nums
    # every step reads every weight of the blocks and the head at least once: the floor of its memory traffic
    weights = 4 * sum(p.numel() for part in (var.shared_ada_lin, var.blocks, var.head_nm, var.head) for p in part.parameters())
    for step, pn in enumerate(pns):
        result = measure(VARScaleStep(var), *scale_step_inputs(var, step, batch))
        rows, keys = 2 * batch, sum(p * p for p in pns[: step + 1])
        cost = analytic.blocks_cost(shape, rows, pn * pn, keys) + analytic.head_cost(shape, rows, pn * pn)
        check_analytic(result.by_operator, cost)
        assert result.bytes_moved >= weights
        record_estimates(record_property, result, model=name, batch=batch, scale=step, tokens=pn * pn)


def scale_step_peak(shape: analytic.VarShape, step: int, batch: int) -> int:
    """Peak bytes of ``VARScaleStep`` at step k >= 1, by hand. It is reached while the head writes the logits:
    the weights and the inputs (the new tokens, the class embeddings, the earlier scales' cached keys and
    values); every block's extended cache (keys and values of all tokens so far, (rows, H, keys, 64) each,
    kept in the attention modules until the step ends); the last block's output and head_nm's output
    (rows, q, C) each; and the logits (rows, q, V)."""
    pns, c, d = shape.patch_nums, shape.width, shape.depth
    rows, q = 2 * batch, pns[step] ** 2
    earlier = sum(pn * pn for pn in pns[:step])
    inputs = FP32 * (rows * q * c + rows * c + 2 * d * rows * earlier * c)
    caches = FP32 * 2 * d * rows * (earlier + q) * c
    return transformer_weight_bytes(shape) + inputs + caches + FP32 * (2 * rows * q * c + rows * q * VOCAB_SIZE)


def profiled_peak(step: Callable[[], object]) -> int:
    """The most bytes allocated at once during ``step()``, from torch.profiler's allocator events."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


@pytest.mark.parametrize("batch", [1, 3])
def test_scale_step_peak_by_hand(batch: int) -> None:
    shape = analytic.var_shape(2)
    var = build_var(2)
    for step in range(1, len(shape.patch_nums)):
        result = measure.using(memory=True)(VARScaleStep(var), *scale_step_inputs(var, step, batch))
        assert result.peak_bytes == scale_step_peak(shape, step, batch)
        assert result.peak_at == ("var.head", "aten::addmm")
    # the same peak on a real CPU run: torch.profiler sees what the step allocates, on top of the weights and inputs
    torch.manual_seed(0)
    cpu = build_var(2, device="cpu")
    inputs = scale_step_inputs(cpu, 5, batch, device="cpu")
    with torch.no_grad():
        allocated = profiled_peak(lambda: VARScaleStep(cpu)(*inputs))
    resident = transformer_weight_bytes(shape) + sum(t.numel() * t.element_size() for t in inputs)
    assert allocated + resident == scale_step_peak(shape, 5, batch)
