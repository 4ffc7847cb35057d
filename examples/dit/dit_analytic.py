"""Analytic MAC model of DiT and the SD-VAE decoder, written from the architecture (not from a trace).

DiT forward, per sample, depth d, hidden D, T = (32 / 2)^2 = 256 tokens, 8 output channels:

    exact = d * (12 T D^2 + 2 T^2 D + 6 D^2)      qkv 3, proj 1, fc1 4, fc2 4; attention Q K^T + A V;
                                                   adaLN Linear(D -> 6D) once per sample
          + T D (4 * 2 * 2)                       patch embedding, conv 2x2 from 4 channels
          + 256 D + D^2                           timestep MLP
          + 2 D^2 + T D (2 * 2 * 8)               final adaLN and Linear(D -> p * p * 8)
    elementwise = (4 d + 1) T D + 128             per block two modulations x * (1 + scale) and two
                                                   gates; the final modulation; t * frequencies
                  + 128 once per call             -log(10000) * arange(128), the frequencies

(The LayerNorms have no affine parameters: torchprofile prices them at 0. Adds, GELU, SiLU,
softmax, cos/sin are free by its convention; every multiply is one MAC per output element.)

One sampling step (``SamplingStep``) for B images: the transformer on 2B rows; guidance
``s * (cond - uncond)`` on the 3 guided channels of B rows; the ancestral update, 9 multiplies
on the (2B, 4, 32, 32) latent. A generated image is 250 such steps (batch 1, so 2 rows) plus
one VAE decode of its latent.
"""

from __future__ import annotations

from dit_model import (
    CFG_CHANNELS,
    CONFIGS,
    FREQUENCY_DIM,
    LATENT_CHANNELS,
    LATENT_SIDE,
    PATCH,
    SAMPLING_STEPS,
)
from flopmath import Cost, conv, group_norm, resnet
from sd_vae import BLOCK_OUT_CHANNELS, LAYERS_PER_BLOCK

TOKENS = (LATENT_SIDE // PATCH) ** 2
OUT_CHANNELS = 2 * LATENT_CHANNELS
UPDATE_MULTIPLIES = 9  # frac*max, (1-frac)*min, two for x0, two for the mean, 0.5*, mask*, *noise


def forward(name: str, batch: int = 1) -> Cost:
    depth, hidden, _ = CONFIGS[name]
    t, d = TOKENS, hidden
    block = 12 * t * d * d + 2 * t * t * d + 6 * d * d
    patch = t * d * LATENT_CHANNELS * PATCH * PATCH
    timestep = FREQUENCY_DIM * d + d * d
    final = 2 * d * d + t * d * PATCH * PATCH * OUT_CHANNELS
    per_sample = Cost(depth * block + patch + timestep + final, (4 * depth + 1) * t * d + FREQUENCY_DIM // 2)
    return per_sample.times(batch) + Cost(0, FREQUENCY_DIM // 2)  # -log(10000) * arange(128), once a call


def sampling_step(name: str, batch: int = 1) -> Cost:
    """One step for ``batch`` images: the transformer on 2 * batch rows, guidance and the update."""
    latent = LATENT_CHANNELS * LATENT_SIDE * LATENT_SIDE
    guidance = batch * CFG_CHANNELS * LATENT_SIDE * LATENT_SIDE
    update = UPDATE_MULTIPLIES * 2 * batch * latent
    return forward(name, 2 * batch) + Cost(0, guidance + update)


def vae_attention(side: int, channels: int) -> Cost:
    """q, k, v, out Linear layers over side^2 positions, one head: Q K^T and A V of side^4 * C each."""
    positions = side * side
    return Cost(4 * positions * channels * channels + 2 * positions * positions * channels, 0) + group_norm(side, channels)


def vae_decode(latent_side: int = LATENT_SIDE, batch: int = 1) -> Cost:
    """post_quant_conv (1x1), conv_in, mid block, 4 up blocks of 3 ResNets (3 upsample convs), norm, conv_out."""
    widths = list(reversed(BLOCK_OUT_CHANNELS))
    side = latent_side
    cost = Cost(conv(side, LATENT_CHANNELS, LATENT_CHANNELS, 1) + conv(side, LATENT_CHANNELS, widths[0], 3), 0)
    cost += resnet(side, widths[0], widths[0]) + vae_attention(side, widths[0]) + resnet(side, widths[0], widths[0])
    previous = widths[0]
    for i, width in enumerate(widths):
        for j in range(LAYERS_PER_BLOCK + 1):
            cost += resnet(side, previous if j == 0 else width, width)
        if i < len(widths) - 1:
            side *= 2
            cost += Cost(conv(side, width, width, 3), 0)
        previous = width
    cost += group_norm(side, widths[-1]) + Cost(conv(side, widths[-1], 3, 3), 0)
    return cost.times(batch)


def generation(name: str) -> Cost:
    """One generated image: 250 sampling steps (2 rows each) and one VAE decode."""
    return sampling_step(name).times(SAMPLING_STEPS) + vae_decode()
