"""FLOP budgets of VAR with the ``flops`` fixture: transformer forward, forward on images, generation,
and one training step as VAR's trainer runs it (``flops.train_step``).

Every model is built on the meta device, so d30 (2B parameters) and d36-s cost no memory.
Batch size 1, as in the common ``profile_macs(model, (images, labels))`` recipe, and for the
transformer forward, generation and the training step also batch 16 (ids ``d16-b16``, ...), a
throughput batch: every count is exactly what ``analytic.py`` gives for that batch (linear in the
batch but for the optimizer step and a few per-call terms).

The tables' tests also measure peak memory and bytes moved (``flops.using(memory=True)``): the
baseline keeps both, and each peak is checked against what must be resident, derived from the
architecture (weights, the output, gradients and AdamW's two moments). Their roofline estimates on
the deployment devices are attached for the deployment table (``deployment.py``).
Ceilings are the measured GFLOPs (1 MAC = 2 FLOPs) plus about 2%; the committed
``examples/flopbudget.toml`` holds the exact counts, so any added compute fails the suite. Each
measurement is also checked against the analytic model in ``analytic.py``: the matmul,
convolution and attention terms exactly, and the elementwise terms the counter adds.
"""

from __future__ import annotations

from collections import Counter

import analytic
import pytest
from deployment import record_estimates
from flopmath import weight_bytes
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
from test_var_model import params_from_shapes

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
#   d16 1149.20   d20 1991.27   d24 3231.50   d30 6007.59   d36-s (512 px) 36841.63
TRAIN_BUDGETS = {"d16": 1175, "d20": 2035, "d24": 3300, "d30": 6130, "d36-s": 37600}
BICUBIC_MACS_PER_OUTPUT = 16  # what pytest-flopbudget charges for aten::upsample_bicubic2d
THROUGHPUT_BATCH = 16
FP32 = 4  # bytes per element: every weight and activation here is float32


def cases(kind: str) -> list:
    return [pytest.param(name, marks=pytest.mark.flop_budget(BUDGETS[name][kind]), id=name) for name in RELEASED]


def batch_cases(kind: str) -> list:
    """Batch 1 (id ``d16``) and the throughput batch (id ``d16-b16``, a ceiling 16x batch 1's)."""
    return [
        pytest.param(name, batch, marks=pytest.mark.flop_budget(batch * BUDGETS[name][kind]), id=name if batch == 1 else f"{name}-b{batch}")
        for name in RELEASED
        for batch in (1, THROUGHPUT_BATCH)
    ]


def transformer_weight_bytes(name: str | analytic.VarShape) -> int:
    """Bytes of the VAR transformer's parameters and buffers, by hand: float32 parameters
    (``params_from_shapes``), per block the zero k-bias (C floats), the scale index of every token
    (L int64) and the additive (L, L) float32 block-causal mask."""
    shape = shape_of(name) if isinstance(name, str) else name
    return FP32 * params_from_shapes(shape.depth, shape.resolution) + shape.depth * FP32 * shape.width + 8 * shape.length + FP32 * shape.length**2


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


@pytest.mark.parametrize("name, batch", batch_cases("forward"))
def test_transformer_forward(flops, record_property, name: str, batch: int) -> None:
    labels, tokens, _ = dummy_inputs(RELEASED[name][1], batch=batch)
    result = flops.using(memory=True)(build_released(name), labels, tokens)
    shape = shape_of(name)
    check_analytic(result.by_operator, analytic.transformer_forward(shape, batch))
    # resident through the call: every weight (exactly, by hand); at the end the (B, L, V) logits too
    assert result.peak_split["weights"] == transformer_weight_bytes(name)
    logits = FP32 * batch * shape.length * 4096
    assert result.peak_bytes >= transformer_weight_bytes(name) + logits
    record_estimates(record_property, result)


@pytest.mark.parametrize("name", cases("image"))
def test_image_forward(flops, name: str) -> None:
    resolution = RELEASED[name][1]
    labels, _, images = dummy_inputs(resolution)
    module = VARImageForward(build_vqvae(resolution=resolution), build_released(name))
    result = flops(module, images, labels)
    shape = shape_of(name)
    check_analytic(result.by_operator, analytic.image_forward(shape), analytic.bicubic_outputs(shape))


@pytest.mark.parametrize("name, batch", batch_cases("generate"))
def test_generate(flops, record_property, name: str, batch: int) -> None:
    resolution = RELEASED[name][1]
    labels, _, _ = dummy_inputs(resolution, batch=batch)
    vqvae = build_vqvae(resolution=resolution)
    module = VARGenerate(vqvae, build_released(name))
    result = flops.using(memory=True)(module, labels)
    assert not result.unpriced, result.unpriced  # sampling included: every operator has a price
    shape = shape_of(name)
    check_analytic(result.by_operator, analytic.generation(shape, batch), analytic.bicubic_outputs(shape, batch))
    # both models stay loaded through generation: the transformer's weights by hand, the VQVAE's from its tensors
    resident = transformer_weight_bytes(name) + weight_bytes(vqvae)
    assert result.peak_split["weights"] == resident
    assert result.peak_bytes >= resident + FP32 * batch * 3 * resolution * resolution  # and the images it returns
    record_estimates(record_property, result)


@pytest.mark.parametrize(
    "name, batch",
    [
        pytest.param(name, batch, marks=pytest.mark.flop_budget(batch * gflops), id=name if batch == 1 else f"{name}-b{batch}")
        for name, gflops in TRAIN_BUDGETS.items()
        for batch in (1, THROUGHPUT_BATCH)
    ],
)
def test_train_step(flops, record_property, name: str, batch: int) -> None:
    """Images -> frozen VQVAE -> codes of all scales and the teacher-forcing input (no gradients);
    transformer forward, weighted cross-entropy over the 4096 codes; backward; one fused AdamW step
    over VAR's two parameter groups. All on meta: d30's 2B parameters cost no memory.

    At batch 16 the forward and backward are 16 times batch 1's but for per-call terms (the mean's one
    MAC, the exp backward of the per-head scales); the optimizer step does not depend on the batch."""
    resolution = RELEASED[name][1]
    labels, _, images = dummy_inputs(resolution, batch=batch)
    var = build_released(name)
    vqvae = build_vqvae(resolution=resolution)
    result = flops.using(memory=True).train_step(VARTrainStep(vqvae, var), images, labels, optimizer=var_optimizer(var))
    assert not result.unpriced, result.unpriced
    shape = shape_of(name)
    assert result.phases["optimizer"] == result.by_operator["aten::_fused_adamw_"] == analytic.adamw_step(shape).total
    train_forward = analytic.train_forward(shape, batch)
    bicubic = BICUBIC_MACS_PER_OUTPUT * analytic.train_bicubic_outputs(shape, batch)
    assert result.phases["forward"] == train_forward.total + bicubic
    backward = analytic.train_backward(shape, batch)
    assert result.phases["backward"] == backward.total
    # the matmul terms of the backward exactly: dX and dW of every Linear (mm), the attention's four gradient matmuls
    by_op = result.by_operator
    assert by_op["aten::mm"] + by_op["aten::_scaled_dot_product_flash_attention_for_cpu_backward"] == backward.exact
    # memory: all weights (the transformer's by hand, the frozen VQVAE's from its tensors) and, at the optimizer
    # step, one float32 gradient and AdamW's two float32 moments per trainable (transformer) parameter
    trainable = FP32 * params_from_shapes(shape.depth, shape.resolution)
    weights = transformer_weight_bytes(name) + weight_bytes(vqvae) + FP32 * shape.length  # + the loss weights buffer
    assert result.peak_split["weights"] == weights
    assert result.peak_bytes >= weights + trainable + 2 * trainable
    # AdamW's state counts from the start (a steady-state step) and the peak comes before the step's
    # temporaries: exactly exp_avg and exp_avg_sq (float32, one per element) and one float32 step counter
    # per parameter tensor
    assert result.peak_split["optimizer"] == 2 * trainable + FP32 * len(list(var.parameters()))
    assert result.peak_split["gradients"] > 0
    record_estimates(record_property, result)
