"""Plain pytest checks of the DiT rebuild: parameter counts by formula, the paper's figures, behaviour on CPU."""

from __future__ import annotations

import dit_analytic as analytic
import pytest
import torch
from dit_model import (
    CONFIGS,
    PAPER_GFLOPS,
    PUBLISHED_PARAMS,
    SamplingStep,
    build_dit,
    respaced_betas,
)
from sd_vae import build_vae_decoder

EXACT_PARAMS = {"S/2": 32_963_360, "B/2": 130_512_416, "L/2": 458_102_816, "XL/2": 675_129_632}
VAE_DECODER_PARAMS = 49_490_199  # post_quant_conv + decoder of diffusers' AutoencoderKL (sd-vae-ft-ema)
IDS = [name.replace("/", "-") for name in CONFIGS]


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def params_from_shapes(depth: int, d: int) -> int:
    """The official DiT's parameters (pos_embed included: a parameter without gradient), by hand.

    per block: qkv 3d^2 + 3d, proj d^2 + d, fc1 4d^2 + 4d, fc2 4d^2 + d, adaLN 6d^2 + 6d = 18d^2 + 15d
    x_embedder 4*2*2 d + d; t_embedder 256 d + d + d^2 + d; y_embedder 1001 d; pos_embed 256 d;
    final layer: adaLN 2d^2 + 2d, linear d * (2*2*8) + 32
    """
    per_block = 18 * d * d + 15 * d
    embeddings = (16 * d + d) + (256 * d + d + d * d + d) + 1001 * d + 256 * d
    final = (2 * d * d + 2 * d) + (32 * d + 32)
    return depth * per_block + embeddings + final


@pytest.mark.parametrize("name", CONFIGS, ids=IDS)
def test_parameter_count_matches_formula(name: str) -> None:
    depth, hidden, _ = CONFIGS[name]
    assert count_params(build_dit(name)) == params_from_shapes(depth, hidden) == EXACT_PARAMS[name]


def test_xl_parameter_count_rounds_to_the_quoted_675m() -> None:
    assert round(EXACT_PARAMS["XL/2"], -6) == PUBLISHED_PARAMS["XL/2"]


@pytest.mark.parametrize("name", CONFIGS, ids=IDS)
def test_paper_gflops_are_macs_plus_one_per_layernorm_element(name: str) -> None:
    """Table 1 of the paper prints MACs, not 2 x MACs: the published convention (matmul, conv,
    attention) is within 0.02 G of it, and adding one MAC per LayerNorm element (2 per block plus
    the final one, over 256 tokens of width D) reproduces every printed figure exactly."""
    depth, hidden, _ = CONFIGS[name]
    published = analytic.forward(name).exact
    layer_norm_elements = (2 * depth + 1) * analytic.TOKENS * hidden
    assert abs(published / 1e9 - PAPER_GFLOPS[name]) < 0.02
    assert round((published + layer_norm_elements) / 1e9, 2) == PAPER_GFLOPS[name]


def test_vae_decoder_parameters() -> None:
    assert count_params(build_vae_decoder()) == VAE_DECODER_PARAMS


def test_vae_decoder_matches_diffusers_layout() -> None:
    """Same state-dict keys and shapes as diffusers' AutoencoderKL for sd-vae-ft-ema (built from its config)."""
    diffusers = pytest.importorskip("diffusers")
    with torch.device("meta"):
        vae = diffusers.AutoencoderKL(
            down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4,
            block_out_channels=[128, 256, 512, 512],
            layers_per_block=2,
            latent_channels=4,
            norm_num_groups=32,
            sample_size=256,
        )
    theirs = {f"decoder.{k}": tuple(v.shape) for k, v in vae.decoder.state_dict().items()}
    theirs.update({f"post_quant_conv.{k}": tuple(v.shape) for k, v in vae.post_quant_conv.state_dict().items()})
    ours = {k: tuple(v.shape) for k, v in build_vae_decoder().state_dict().items()}
    assert ours == theirs


def test_respaced_schedule_keeps_250_steps() -> None:
    betas = respaced_betas()
    assert betas.shape == (250,) and bool((betas > 0).all()) and bool((betas < 1).all())


@pytest.fixture(scope="module")
def small_dit() -> torch.nn.Module:
    torch.manual_seed(0)
    from dit_model import DiT

    return DiT(depth=2, hidden=64, heads=4).eval()


def test_cpu_forward_shapes_and_guidance(small_dit) -> None:
    x = torch.randn(1, 4, 32, 32).repeat(2, 1, 1, 1)
    t, y = torch.tensor([10, 10]), torch.tensor([3, 1000])
    with torch.no_grad():
        out = small_dit(x, t, y)
        guided = small_dit.forward_with_cfg(x, t, y, cfg_scale=4.0)
    assert out.shape == (2, 8, 32, 32)
    torch.testing.assert_close(guided[0, :3], out[1, :3] + 4.0 * (out[0, :3] - out[1, :3]))
    torch.testing.assert_close(guided[0, :3], guided[1, :3])  # both halves carry the guided eps
    torch.testing.assert_close(guided[:, 3:], out[:, 3:])  # the other channels unguided


def test_cpu_sampling_step_and_decode(small_dit) -> None:
    x, y = torch.randn(1, 4, 32, 32).repeat(2, 1, 1, 1), torch.tensor([3, 1000])
    with torch.no_grad():
        step = SamplingStep(small_dit, step=100)(x, y)
        image = build_vae_decoder(device="cpu")(torch.randn(1, 4, 4, 4))  # a 4x4 latent: 32x32 px
    assert step.shape == x.shape and torch.isfinite(step).all()
    assert image.shape == (1, 3, 32, 32) and torch.isfinite(image).all()


def test_comparison_table_composes_the_same_number_of_steps() -> None:
    from comparison import SAMPLING_STEPS as TABLE_STEPS
    from dit_model import SAMPLING_STEPS

    assert TABLE_STEPS == SAMPLING_STEPS == 250
