"""DiT (Scalable Diffusion Models with Transformers, Peebles & Xie 2023), rebuilt for FLOP counting.

Written from the paper and the layout of its official ``models.py``: a 2x2 patch embedding of
the 32x32x4 SD-VAE latent (256 px images), fixed sin-cos positional embedding, a timestep
embedder (256 sinusoidal frequencies -> MLP), a class embedder with one extra "null" class for
classifier-free guidance, adaLN-Zero blocks, and a final adaLN layer predicting noise and
variance ("learned sigma": 8 output channels). Weights are random: FLOPs and parameter counts do
not depend on their values. Everything builds on the ``meta`` device by default.

Public entry points:

- ``build_dit(name, device="meta")`` for "S/2", "B/2", "L/2", "XL/2" -> ``DiT``
- ``dummy_inputs(batch=1, device="meta")`` -> (latents (B, 4, 32, 32), timesteps (B,), labels (B,))
- ``DiT.forward(x, t, y)`` -> (B, 8, 32, 32); ``DiT.forward_with_cfg(x, t, y, cfg_scale)``
- ``SamplingStep(dit, step)``: one step of the official 250-step sampler on the doubled
  (conditional + null class) batch: ``forward_with_cfg`` and the ancestral update
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

NUM_CLASSES = 1000
LATENT_CHANNELS = 4
LATENT_SIDE = 32  # 256 px / 8 (SD VAE)
PATCH = 2
LEARN_SIGMA = True
FREQUENCY_DIM = 256
MLP_RATIO = 4
LN_EPS = 1e-6
CFG_CHANNELS = 3  # the official forward_with_cfg guides only the first 3 channels ("exact reproducibility")

# name -> (depth, hidden size, heads), as in the paper's Table 1 and the official DiT_models.
CONFIGS = {
    "S/2": (12, 384, 6),
    "B/2": (12, 768, 12),
    "L/2": (24, 1024, 16),
    "XL/2": (28, 1152, 16),
}
# The paper's Table 1 "Gflops" (at 256 px, one forward of the transformer).
PAPER_GFLOPS = {"S/2": 6.06, "B/2": 23.01, "L/2": 80.71, "XL/2": 118.64}
PUBLISHED_PARAMS = {"XL/2": 675e6}  # the figure quoted for DiT-XL/2 (README, paper)

SAMPLING_STEPS = 250  # sample.py's default --num-sampling-steps
DIFFUSION_STEPS = 1000  # training schedule: linear betas 1e-4 .. 0.02
VAE_SCALE = 0.18215


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class PatchEmbed(nn.Module):
    """timm's PatchEmbed: Conv2d(C, hidden, p, stride p), flattened to (B, T, hidden)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(LATENT_CHANNELS, hidden, PATCH, stride=PATCH)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
    """Sinusoidal embedding of t (256 frequencies) -> Linear -> SiLU -> Linear."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(FREQUENCY_DIM, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t: Tensor) -> Tensor:
        # As the official timestep_embedding: the frequencies are computed in every call.
        half = FREQUENCY_DIM // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class LabelEmbedder(nn.Module):
    """Class labels -> vectors; index NUM_CLASSES is the "null" class of classifier-free guidance.

    The official embedder drops labels at random in training; at sampling time the null class
    comes in explicitly (the doubled batch), so the forward here is the lookup alone.
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.embedding_table = nn.Embedding(NUM_CLASSES + 1, hidden)

    def forward(self, y: Tensor) -> Tensor:
        return self.embedding_table(y)


class Attention(nn.Module):
    """timm's Attention: qkv Linear (bias), fused scaled-dot-product attention, proj Linear."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, hidden = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, hidden // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, hidden))


class Mlp(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, MLP_RATIO * hidden)
        self.fc2 = nn.Linear(MLP_RATIO * hidden, hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class DiTBlock(nn.Module):
    """adaLN-Zero block: shift/scale/gate of both branches from SiLU + Linear(hidden -> 6 hidden)."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=LN_EPS)
        self.attn = Attention(hidden, heads)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=LN_EPS)
        self.mlp = Mlp(hidden)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        return x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class FinalLayer(nn.Module):
    def __init__(self, hidden: int, out_channels: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden, elementwise_affine=False, eps=LN_EPS)
        self.linear = nn.Linear(hidden, PATCH * PATCH * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
    """``forward(x (B, 4, 32, 32), t (B,), y (B,))`` -> noise and variance (B, 8, 32, 32)."""

    def __init__(self, depth: int, hidden: int, heads: int) -> None:
        super().__init__()
        self.depth, self.hidden, self.heads = depth, hidden, heads
        self.out_channels = 2 * LATENT_CHANNELS if LEARN_SIGMA else LATENT_CHANNELS
        self.tokens = (LATENT_SIDE // PATCH) ** 2
        self.x_embedder = PatchEmbed(hidden)
        self.t_embedder = TimestepEmbedder(hidden)
        self.y_embedder = LabelEmbedder(hidden)
        # Fixed sin-cos embedding, a parameter without gradient as in the official code (so it counts).
        self.pos_embed = nn.Parameter(torch.zeros(1, self.tokens, hidden), requires_grad=False)
        self.blocks = nn.ModuleList(DiTBlock(hidden, heads) for _ in range(depth))
        self.final_layer = FinalLayer(hidden, self.out_channels)

    def unpatchify(self, x: Tensor) -> Tensor:
        """(B, T, p*p*C) -> (B, C, H, W); the official einsum "nhwpqc->nchpwq" is this permutation."""
        c, p, side = self.out_channels, PATCH, LATENT_SIDE // PATCH
        x = x.reshape(x.shape[0], side, side, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(x.shape[0], c, side * p, side * p)

    def forward(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        x = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y)
        for block in self.blocks:
            x = block(x, c)
        return self.unpatchify(self.final_layer(x, c))

    def forward_with_cfg(self, x: Tensor, t: Tensor, y: Tensor, cfg_scale: float) -> Tensor:
        """The official guided forward: the first half of the batch is repeated, the model runs on
        both halves (labels, then null labels), and eps = uncond + s * (cond - uncond)."""
        half = x[: len(x) // 2]
        out = self.forward(torch.cat([half, half], dim=0), t, y)
        eps, rest = out[:, :CFG_CHANNELS], out[:, CFG_CHANNELS:]
        cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
        half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps)
        return torch.cat([torch.cat([half_eps, half_eps], dim=0), rest], dim=1)


def build_dit(name: str, device: str | torch.device = "meta") -> DiT:
    depth, hidden, heads = CONFIGS[name]
    with torch.device(device):
        model = DiT(depth, hidden, heads)
    return model.eval()


def dummy_inputs(batch: int = 1, device: str | torch.device = "meta") -> tuple[Tensor, Tensor, Tensor]:
    """(latents (B, 4, 32, 32), timesteps (B,), labels (B,))."""
    x = torch.zeros(batch, LATENT_CHANNELS, LATENT_SIDE, LATENT_SIDE, device=device)
    t = torch.zeros(batch, dtype=torch.long, device=device)
    y = torch.zeros(batch, dtype=torch.long, device=device)
    return x, t, y


# --------------------------------------------------------------------------- sampling


def respaced_betas(steps: int = SAMPLING_STEPS) -> Tensor:
    """The betas of the 250 kept timesteps of the linear 1000-step schedule (space_timesteps("250"))."""
    betas = torch.linspace(1e-4, 0.02, DIFFUSION_STEPS, dtype=torch.float64)
    alphas_cumprod = torch.cumprod(1 - betas, dim=0)
    stride = (DIFFUSION_STEPS - 1) / (steps - 1)
    kept = sorted({round(i * stride) for i in range(steps)})
    out, last = [], 1.0
    for index in kept:
        out.append(1 - alphas_cumprod[index].item() / last)
        last = alphas_cumprod[index].item()
    return torch.tensor(out, dtype=torch.float64)


class SamplingStep(nn.Module):
    """One step ``t`` of the official sampler (``p_sample`` with learned sigma, no clipping).

    ``forward(x (2B, 4, 32, 32), y (2B,))``: the rows are B latents twice, y their labels and
    then the null class. ``forward_with_cfg`` runs the transformer on all 2B rows; the
    model's variance channels interpolate between the posterior's log-variance bounds; x_0
    is predicted from eps, the posterior mean formed, and noise added. The schedule
    coefficients of step ``t`` are Python floats (the official code gathers them from numpy
    arrays), so the update is a fixed set of elementwise operations on the latent.
    """

    def __init__(self, dit: DiT, step: int = SAMPLING_STEPS - 1, cfg_scale: float = 4.0) -> None:
        super().__init__()
        self.dit, self.step, self.cfg_scale = dit, step, cfg_scale
        betas = respaced_betas()
        alphas_cumprod = torch.cumprod(1 - betas, dim=0)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        posterior_var = betas * (1 - prev) / (1 - alphas_cumprod)
        posterior_log_var = torch.log(torch.cat([posterior_var[1:2], posterior_var[1:]]))
        self.coef = {
            "min_log": posterior_log_var[step].item(),
            "max_log": torch.log(betas)[step].item(),
            "recip": torch.sqrt(1 / alphas_cumprod)[step].item(),
            "recipm1": torch.sqrt(1 / alphas_cumprod - 1)[step].item(),
            "mean1": (betas * torch.sqrt(prev) / (1 - alphas_cumprod))[step].item(),
            "mean2": ((1 - prev) * torch.sqrt(1 - betas) / (1 - alphas_cumprod))[step].item(),
        }

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        c = self.coef
        t = torch.full((x.shape[0],), self.step, dtype=torch.long, device=x.device)
        out = self.dit.forward_with_cfg(x, t, y, self.cfg_scale)
        eps, var_values = out[:, :LATENT_CHANNELS], out[:, LATENT_CHANNELS:]
        frac = (var_values + 1) / 2
        log_variance = frac * c["max_log"] + (1 - frac) * c["min_log"]
        x0 = c["recip"] * x - c["recipm1"] * eps
        mean = c["mean1"] * x0 + c["mean2"] * x
        noise = torch.randn_like(x)
        nonzero = float(self.step != 0)
        return mean + nonzero * torch.exp(0.5 * log_variance) * noise
