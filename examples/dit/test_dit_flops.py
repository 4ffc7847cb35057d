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
"""

from __future__ import annotations

import dit_analytic as analytic
import pytest
import torch
from dit_model import CONFIGS, PAPER_GFLOPS, SamplingStep, build_dit, dummy_inputs
from flopmath import check_split
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


def cases(kind: str) -> list:
    return [
        pytest.param(name, marks=pytest.mark.flop_budget(BUDGETS[name][kind]), id=name.replace("/", "-"))
        for name in CONFIGS
    ]


@pytest.mark.parametrize("name", cases("forward"))
def test_forward(flops, name: str) -> None:
    result = flops(build_dit(name), *dummy_inputs())
    cost = analytic.forward(name)
    check_split(result.by_category, cost)
    assert result.published_macs == cost.exact
    # The paper's Table 1 figure, in its own convention (see test_dit_model.py), to its printed precision.
    assert abs(result.published_macs / 1e9 - PAPER_GFLOPS[name]) < 0.02


@pytest.mark.parametrize("name", cases("step"))
def test_sampling_step(flops, name: str) -> None:
    x, _, y = dummy_inputs(batch=2)  # one image: its latent twice, its label and the null class
    result = flops(SamplingStep(build_dit(name)), x, y)
    assert not result.unpriced, result.unpriced
    check_split(result.by_category, analytic.sampling_step(name))


@pytest.mark.flop_budget(VAE_DECODE_GFLOPS)
def test_vae_decode(flops) -> None:
    latents = torch.zeros(1, 4, 32, 32, device="meta")
    result = flops(build_vae_decoder(), latents)
    check_split(result.by_category, analytic.vae_decode())
