"""FLOP budgets of DiT with the ``flops`` fixture: the transformer forward, one sampling step, the VAE decode.

Every model is built on the meta device. Ceilings are the measured GFLOPs (1 MAC = 2 FLOPs) plus
about 2%; the committed ``examples/flopbudget.toml`` holds the exact counts. Each measurement is
checked against ``dit_analytic``: matmul, convolution and attention terms exactly, and exactly
the elementwise terms the counter adds.

Per generated image (the comparison table, ``examples/conftest.py``) is composed from two
measured parts, the way the official ``sample.py`` runs: 250 x ``test_sampling_step`` (one
step of ``p_sample_loop`` on the doubled batch: the transformer on the image's conditional and
null-class rows, guidance, the ancestral update) + 1 x ``test_vae_decode`` (the SD-VAE decoder
on the 32x32 latent). Every step costs the same (shapes do not depend on t), so tracing 250
steps would give 250 times one step.

Each is measured at batch 1 and at the throughput batch 16 (ids ``XL-2-b16``, ``test_vae_decode_batch[b16]``),
with peak memory and bytes moved (``flops.using(memory=True)``), each peak checked against what must be
resident (the weights, the output), and the roofline estimates attached for the deployment table.
"""

from __future__ import annotations

import dit_analytic as analytic
import pytest
import torch
from deployment import record_estimates
from dit_model import CONFIGS, LATENT_CHANNELS, LATENT_SIDE, PAPER_GFLOPS, SamplingStep, build_dit, dummy_inputs
from flopmath import check_split, weight_bytes
from sd_vae import build_vae_decoder

# GFLOPs ceilings: measured forward / sampling step (batch 1 image, 2 rows) are
#   S/2  12.121 / 24.242    B/2  46.029 / 92.059    L/2 161.446 / 322.892    XL/2 237.309 / 474.619
BUDGETS = {
    "S/2": {"forward": 12.4, "step": 24.8},
    "B/2": {"forward": 47, "step": 94},
    "L/2": {"forward": 165, "step": 330},
    "XL/2": {"forward": 242, "step": 484},
}
VAE_DECODE_GFLOPS = 635  # measured 622.417
THROUGHPUT_BATCH = 16
FP32 = 4
LATENT = LATENT_CHANNELS * LATENT_SIDE * LATENT_SIDE  # elements of one image's latent


def cases(kind: str) -> list:
    """Batch 1 (id ``XL-2``) and the throughput batch (id ``XL-2-b16``, a ceiling 16x batch 1's)."""
    return [
        pytest.param(
            name, batch, marks=pytest.mark.flop_budget(batch * BUDGETS[name][kind]),
            id=name.replace("/", "-") if batch == 1 else f"{name.replace('/', '-')}-b{batch}",
        )
        for name in CONFIGS
        for batch in (1, THROUGHPUT_BATCH)
    ]


@pytest.mark.parametrize("name, batch", cases("forward"))
def test_forward(flops, record_property, name: str, batch: int) -> None:
    model = build_dit(name)
    result = flops.using(memory=True)(model, *dummy_inputs(batch=batch))
    cost = analytic.forward(name, batch)  # B times one sample's, but for the frequencies' 128 once a call
    check_split(result.by_category, cost)
    assert result.published_macs == cost.exact
    if batch == 1:
        # The paper's Table 1 figure, in its own convention (see test_dit_model.py), to its printed precision.
        assert abs(result.published_macs / 1e9 - PAPER_GFLOPS[name]) < 0.02
    assert result.peak_split["weights"] == weight_bytes(model)
    assert result.peak_bytes >= weight_bytes(model) + FP32 * batch * 2 * LATENT  # and the (B, 8, 32, 32) output
    record_estimates(record_property, result)


@pytest.mark.parametrize("name, batch", cases("step"))
def test_sampling_step(flops, record_property, name: str, batch: int) -> None:
    x, _, y = dummy_inputs(batch=2 * batch)  # each image: its latent twice, its label and the null class
    step = SamplingStep(build_dit(name))
    result = flops.using(memory=True)(step, x, y)
    assert not result.unpriced, result.unpriced
    check_split(result.by_category, analytic.sampling_step(name, batch))
    assert result.peak_split["weights"] == weight_bytes(step)
    assert result.peak_bytes >= weight_bytes(step) + FP32 * 2 * batch * LATENT  # the next latents
    record_estimates(record_property, result)


def check_decode(flops, record_property, batch: int) -> None:
    latents = torch.zeros(batch, 4, 32, 32, device="meta")
    decoder = build_vae_decoder()
    result = flops.using(memory=True)(decoder, latents)
    check_split(result.by_category, analytic.vae_decode(batch=batch))
    assert result.peak_split["weights"] == weight_bytes(decoder)
    assert result.peak_bytes >= weight_bytes(decoder) + FP32 * batch * 3 * 256 * 256  # and the images
    record_estimates(record_property, result)


@pytest.mark.flop_budget(VAE_DECODE_GFLOPS)
def test_vae_decode(flops, record_property) -> None:
    check_decode(flops, record_property, 1)


@pytest.mark.parametrize(
    "batch", [pytest.param(THROUGHPUT_BATCH, marks=pytest.mark.flop_budget(THROUGHPUT_BATCH * VAE_DECODE_GFLOPS), id="b16")]
)
def test_vae_decode_batch(flops, record_property, batch: int) -> None:
    check_decode(flops, record_property, batch)
