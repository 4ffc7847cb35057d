"""FLOP budgets of VAR with the ``flops`` fixture: transformer forward, forward on images, generation,
and one training step as VAR's trainer runs it (``flops.train_step``).

Every model is built on the meta device, so d30 (2B parameters) and d36-s cost no memory.
Batch size 1 throughout, as in the common ``profile_macs(model, (images, labels))`` recipe.
Ceilings are the measured GFLOPs (1 MAC = 2 FLOPs) plus about 2%; the committed
``examples/flopbudget.toml`` holds the exact counts, so any added compute fails the suite. Each
measurement is also checked against the analytic model in ``analytic.py``: the matmul,
convolution and attention terms exactly, and the elementwise terms the counter adds.
"""

from __future__ import annotations

from collections import Counter

import analytic
import pytest
from model import (
    RELEASED,
    VARGenerate,
    VARImageForward,
    VARTrainStep,
    build_released,
    build_vqvae,
    dummy_inputs,
    var_optimizer,
)

from pytest_flopbudget.results import conventions

# GFLOPs ceilings per released model: measured values are
#   d16    310.18 /   525.58 /   994.92      d20   589.89 /   805.29 /  1544.85
#   d24   1001.84 /  1217.24 /  2358.10      d30  1923.91 /  2139.32 /  4184.79
#   d36-s 11982.98 / 12850.51 / 24391.40  (forward / image forward / generation)
BUDGETS = {
    "d16": {"forward": 320, "image": 540, "generate": 1020},
    "d20": {"forward": 605, "image": 825, "generate": 1580},
    "d24": {"forward": 1025, "image": 1245, "generate": 2410},
    "d30": {"forward": 1965, "image": 2185, "generate": 4270},
    "d36-s": {"forward": 12250, "image": 13150, "generate": 24900},
}
# Training step (VAR's trainer, fused AdamW), measured GFLOPs:
#   d16 1149.20   d20 1991.27   d24 3231.50   d30 6007.59
TRAIN_BUDGETS = {"d16": 1175, "d20": 2035, "d24": 3300, "d30": 6130}
BICUBIC_MACS_PER_OUTPUT = 16  # what pytest-flopbudget charges for aten::upsample_bicubic2d


def cases(kind: str) -> list:
    return [pytest.param(name, marks=pytest.mark.flop_budget(BUDGETS[name][kind]), id=name) for name in RELEASED]


def shape_of(name: str) -> analytic.VarShape:
    return analytic.var_shape(*RELEASED[name])


def check_analytic(by_operator: dict[str, int], cost: analytic.Cost, bicubic_outputs: int = 0) -> None:
    """The profiled count equals the analytic model: matmul/conv/attention terms exactly, and
    the rest is exactly the elementwise work the counter prices (modulation muls, norms, resizes)."""
    by_op = Counter(by_operator)
    bicubic = by_op.pop("aten::upsample_bicubic2d", 0)
    matmul = sum(macs for op, macs in by_op.items() if conventions.is_costly(op))
    assert matmul == cost.exact
    assert sum(by_op.values()) - matmul == cost.elementwise
    assert bicubic == BICUBIC_MACS_PER_OUTPUT * bicubic_outputs
    assert cost.elementwise + bicubic < 0.005 * cost.exact


@pytest.mark.parametrize("name", cases("forward"))
def test_transformer_forward(flops, name: str) -> None:
    labels, tokens, _ = dummy_inputs(RELEASED[name][1])
    result = flops(build_released(name), labels, tokens)
    check_analytic(result.by_operator, analytic.transformer_forward(shape_of(name)))


@pytest.mark.parametrize("name", cases("image"))
def test_image_forward(flops, name: str) -> None:
    resolution = RELEASED[name][1]
    labels, _, images = dummy_inputs(resolution)
    module = VARImageForward(build_vqvae(resolution=resolution), build_released(name))
    result = flops(module, images, labels)
    shape = shape_of(name)
    check_analytic(result.by_operator, analytic.image_forward(shape), analytic.bicubic_outputs(shape))


@pytest.mark.parametrize("name", cases("generate"))
def test_generate(flops, name: str) -> None:
    resolution = RELEASED[name][1]
    labels, _, _ = dummy_inputs(resolution)
    module = VARGenerate(build_vqvae(resolution=resolution), build_released(name))
    result = flops(module, labels)
    assert not result.unpriced, result.unpriced  # sampling included: every operator has a price
    shape = shape_of(name)
    check_analytic(result.by_operator, analytic.generation(shape), analytic.bicubic_outputs(shape))


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.flop_budget(gflops), id=name) for name, gflops in TRAIN_BUDGETS.items()]
)
def test_train_step(flops, name: str) -> None:
    """Images -> frozen VQVAE -> codes of all scales and the teacher-forcing input (no gradients);
    transformer forward, weighted cross-entropy over the 4096 codes; backward; one fused AdamW step
    over VAR's two parameter groups. All on meta: d30's 2B parameters cost no memory."""
    resolution = RELEASED[name][1]
    labels, _, images = dummy_inputs(resolution)
    var = build_released(name)
    result = flops.train_step(VARTrainStep(build_vqvae(resolution=resolution), var), images, labels, optimizer=var_optimizer(var))
    assert not result.unpriced, result.unpriced
    shape = shape_of(name)
    assert result.phases["optimizer"] == result.by_operator["aten::_fused_adamw_"] == analytic.adamw_step(shape).total
    train_forward = analytic.train_forward(shape)
    bicubic = BICUBIC_MACS_PER_OUTPUT * analytic.train_bicubic_outputs(shape)
    assert result.phases["forward"] == train_forward.total + bicubic
    backward = analytic.train_backward(shape)
    assert result.phases["backward"] == backward.total
    # the matmul terms of the backward exactly: dX and dW of every Linear (mm), the attention's four gradient matmuls
    by_op = result.by_operator
    assert by_op["aten::mm"] + by_op["aten::_scaled_dot_product_flash_attention_for_cpu_backward"] == backward.exact
