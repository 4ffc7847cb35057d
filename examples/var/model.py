"""VAR (Visual AutoRegressive modeling, next-scale prediction), rebuilt for FLOP counting.

Written from the facts sheet ``/work/shared/var-architecture.md`` (Tian et al., 2024).
Weights are random: FLOPs and parameter counts do not depend on their values.

Everything builds on the ``meta`` device by default, so the 2B-parameter d30 costs no
memory, and every forward below also runs on meta tensors: there is no ``.item()`` and no
Python control flow on tensor values (only on shapes and hyper-parameters). The same code
runs on CPU with real random weights at small scale.

Public entry points:

- ``build_var(depth, resolution=256, device="meta", shared_adaln=None)`` -> ``VAR``
- ``build_released(name, device="meta")`` for "d16", "d20", "d24", "d30", "d36-s"
- ``build_vqvae(device="meta", resolution=256, base_channels=160)`` -> ``VQVAE``
- ``dummy_inputs(resolution=256, batch=1, device="meta")`` -> (labels, tokens, images)
- ``VARImageForward(vqvae, var)``: ``forward(images, labels)`` -> logits (B, L, V)
- ``VARGenerate(vqvae, var, cfg=4.0, top_k=900, top_p=0.96)``: ``forward(labels)`` -> images in [0, 1]
- ``VARScaleStep(var)`` and ``scale_step_inputs(var, step, batch)``: the transformer's part of one generation step
- ``VARTrainStep(vqvae, var)``: ``forward(images, labels)`` -> the training loss, as VAR's trainer computes it
- ``var_optimizer(var)``: AdamW over VAR's two parameter groups, as VAR's trainer builds it
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from pytest_flopbudget import fast_meta

NUM_CLASSES = 1000
VOCAB_SIZE = 4096
VAE_CHANNELS = 32
PATCH_NUMS_256 = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
PATCH_NUMS_512 = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)
PHI_INDEX = (0, 0, 1, 1, 1, 2, 2, 3, 3, 3)
LN_EPS = 1e-6
GN_EPS = 1e-6
MAX_LOG_SCALE = math.log(100.0)

RELEASED = {
    "d16": (16, 256),
    "d20": (20, 256),
    "d24": (24, 256),
    "d30": (30, 256),
    "d36-s": (36, 512),
}
PUBLISHED_PARAMS = {
    "d16": 310e6,
    "d20": 600e6,
    "d24": 1.0e9,
    "d30": 2.0e9,
    "d36-s": 2.3e9,
}


def patch_nums_for(resolution: int) -> tuple[int, ...]:
    """The scale sizes (side of each token map) for a 256 or 512 px model."""
    if resolution == 256:
        return PATCH_NUMS_256
    if resolution == 512:
        return PATCH_NUMS_512
    raise ValueError(f"VAR is released at 256 and 512 px, not {resolution}")


def scale_index(patch_nums: tuple[int, ...]) -> Tensor:
    """The scale ("level") index of every token, shape (L,)."""
    return torch.tensor([k for k, pn in enumerate(patch_nums) for _ in range(pn * pn)])


def block_causal_mask(patch_nums: tuple[int, ...]) -> Tensor:
    """Additive (1, 1, L, L) mask: 0 where scale(query) >= scale(key), else -inf."""
    level = scale_index(patch_nums)
    allowed = level[:, None] >= level[None, :]
    zeros = torch.zeros(allowed.shape)
    return zeros.masked_fill(~allowed, float("-inf"))[None, None]


# --------------------------------------------------------------------------- transformer


class SelfAttention(nn.Module):
    """Multi-head self-attention with q/k L2-norm, per-head scale and an optional KV cache."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.mat_qkv = nn.Linear(width, 3 * width, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.register_buffer("zero_k_bias", torch.zeros(width), persistent=False)  # k has no bias
        self.scale_mul_1H11 = nn.Parameter(torch.full((1, heads, 1, 1), math.log(4.0)))
        self.proj = nn.Linear(width, width)
        self.caching = False
        self.cached_k: Tensor | None = None
        self.cached_v: Tensor | None = None

    def set_kv_cache(self, enable: bool) -> None:
        self.caching = enable
        self.cached_k = None
        self.cached_v = None

    def forward(self, x: Tensor, attn_bias: Tensor | None) -> Tensor:
        bias = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        qkv = F.linear(x, self.mat_qkv.weight, bias).unflatten(-1, (3, self.heads, -1))
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, l, 64)
        scale = self.scale_mul_1H11.clamp_max(MAX_LOG_SCALE).exp()
        q = F.normalize(q, dim=-1) * scale
        k = F.normalize(k, dim=-1)
        k, v = self._extend_cache(k, v)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, scale=1.0)
        return self.proj(out.transpose(1, 2).flatten(2))

    def _extend_cache(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if not self.caching:
            return k, v
        if self.cached_k is not None and self.cached_v is not None:
            k = torch.cat((self.cached_k, k), dim=2)
            v = torch.cat((self.cached_v, v), dim=2)
        self.cached_k, self.cached_v = k, v
        return k, v


class MLP(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, 4 * width)
        self.fc2 = nn.Linear(4 * width, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class AdaLNBlock(nn.Module):
    """AdaLN-conditioned pre-norm block.

    With ``shared_adaln`` the block holds only a (1, 1, 6, C) parameter ``ada_gss`` that is
    added to the shared AdaLN output (B, 1, 6, C); otherwise it owns SiLU + Linear(C -> 6C)
    and receives the condition vector (B, C).
    """

    def __init__(self, width: int, heads: int, shared_adaln: bool) -> None:
        super().__init__()
        self.width = width
        self.shared_adaln = shared_adaln
        if shared_adaln:
            self.ada_gss = nn.Parameter(torch.randn(1, 1, 6, width) / width**0.5)
        else:
            self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        self.attn = SelfAttention(width, heads)
        self.ffn = MLP(width)

    def modulation(self, cond: Tensor) -> tuple[Tensor, ...]:
        """gamma1, gamma2, scale1, scale2, shift1, shift2, each (B, 1, C)."""
        if self.shared_adaln:
            ada = cond + self.ada_gss
        else:
            ada = self.ada_lin(cond).view(-1, 1, 6, self.width)
        return ada.unbind(2)

    def forward(self, x: Tensor, cond: Tensor, attn_bias: Tensor | None) -> Tensor:
        gamma1, gamma2, scale1, scale2, shift1, shift2 = self.modulation(cond)
        h = F.layer_norm(x, (self.width,), eps=LN_EPS) * (1 + scale1) + shift1
        x = x + gamma1 * self.attn(h, attn_bias)
        h = F.layer_norm(x, (self.width,), eps=LN_EPS) * (1 + scale2) + shift2
        return x + gamma2 * self.ffn(h)


class SharedAdaLN(nn.Module):
    """d36-s: one SiLU + Linear(C -> 6C) for all blocks, output (B, 1, 6, C)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))

    def forward(self, cond: Tensor) -> Tensor:
        return self.ada_lin(cond).view(-1, 1, 6, self.width)


class AdaLNBeforeHead(nn.Module):
    """LN (no affine) modulated by (1 + scale) and shift from SiLU + Linear(C -> 2C)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        scale, shift = self.ada_lin(cond).view(-1, 1, 2, self.width).unbind(2)
        return F.layer_norm(x, (self.width,), eps=LN_EPS) * (1 + scale) + shift


class VAR(nn.Module):
    """The VAR transformer: ``forward(label_B, x_BLCv_wo_first_l)`` -> logits (B, L, V)."""

    def __init__(self, depth: int, patch_nums: tuple[int, ...], shared_adaln: bool) -> None:
        super().__init__()
        width = 64 * depth
        self.depth = depth
        self.width = width
        self.heads = depth
        self.patch_nums = patch_nums
        self.num_classes = NUM_CLASSES
        self.vocab_size = VOCAB_SIZE
        self.vae_channels = VAE_CHANNELS
        length = sum(pn * pn for pn in patch_nums)
        self.length = length

        self.word_embed = nn.Linear(VAE_CHANNELS, width)
        self.class_emb = nn.Embedding(NUM_CLASSES + 1, width)
        self.pos_start = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.pos_1LC = nn.Parameter(torch.randn(1, length, width) * 0.02)
        self.lvl_embed = nn.Embedding(len(patch_nums), width)
        self.shared_ada_lin: nn.Module = SharedAdaLN(width) if shared_adaln else nn.Identity()
        self.blocks = nn.ModuleList(AdaLNBlock(width, depth, shared_adaln) for _ in range(depth))
        self.head_nm = AdaLNBeforeHead(width)
        self.head = nn.Linear(width, VOCAB_SIZE)

        self.register_buffer("lvl_1L", scale_index(patch_nums)[None], persistent=False)
        self.register_buffer("attn_bias", block_causal_mask(patch_nums), persistent=False)

    def level_positions(self) -> Tensor:
        """lvl_embed(scale index) + pos_1LC, shape (1, L, C)."""
        return self.lvl_embed(self.lvl_1L) + self.pos_1LC

    def run_blocks(self, x: Tensor, cond_BD: Tensor, attn_bias: Tensor | None) -> Tensor:
        """All blocks, then head_nm and head: hidden (B, l, C) -> logits (B, l, V)."""
        ada_cond = self.shared_ada_lin(cond_BD)
        for block in self.blocks:
            x = block(x, ada_cond, attn_bias)
        return self.head(self.head_nm(x, cond_BD))

    def forward(self, label_B: Tensor, x_BLCv_wo_first_l: Tensor) -> Tensor:
        cond_BD = self.class_emb(label_B)
        sos = cond_BD.unsqueeze(1) + self.pos_start
        x = torch.cat((sos, self.word_embed(x_BLCv_wo_first_l)), dim=1)
        x = x + self.level_positions()
        return self.run_blocks(x, cond_BD, self.attn_bias)

    def set_kv_cache(self, enable: bool) -> None:
        for block in self.blocks:
            block.attn.set_kv_cache(enable)


@contextmanager
def _building(device: str | torch.device) -> Iterator[None]:
    """Construct on ``device``; on meta, pytest-flopbudget's fast_meta() skips torch's Python kernels
    for the weight initialisation (and the torch._dynamo import the first of them costs)."""
    with torch.device(device), fast_meta() if torch.device(device).type == "meta" else nullcontext():
        yield


def build_var(
    depth: int,
    resolution: int = 256,
    device: str | torch.device = "meta",
    shared_adaln: bool | None = None,
) -> VAR:
    """The VAR transformer of depth ``depth``; ``shared_adaln`` defaults to ``depth == 36``."""
    if shared_adaln is None:
        shared_adaln = depth == 36
    with _building(device):
        model = VAR(depth, patch_nums_for(resolution), shared_adaln)
    return model.eval()


def dummy_inputs(
    resolution: int = 256, batch: int = 1, device: str | torch.device = "meta"
) -> tuple[Tensor, Tensor, Tensor]:
    """(labels (B,), x_BLCv_wo_first_l (B, L - 1, 32), images (B, 3, R, R)) of the right shapes."""
    length = sum(pn * pn for pn in patch_nums_for(resolution))
    labels = torch.zeros(batch, dtype=torch.long, device=device)
    tokens = torch.zeros(batch, length - 1, VAE_CHANNELS, device=device)
    images = torch.zeros(batch, 3, resolution, resolution, device=device)
    return labels, tokens, images


def build_released(name: str, device: str | torch.device = "meta") -> VAR:
    """One of the released models: "d16", "d20", "d24", "d30" (256 px) or "d36-s" (512 px)."""
    depth, resolution = RELEASED[name]
    return build_var(depth, resolution, device)


# --------------------------------------------------------------------------- VQVAE


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=GN_EPS, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut: nn.Module = nn.Conv2d(in_channels, out_channels, 1)
        else:
            self.nin_shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """One-head attention over the h*w positions, written with explicit matmuls."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv(self.norm(x)).flatten(2).chunk(3, dim=1)  # each (B, C, hw)
        weights = torch.bmm(q.transpose(1, 2), k) / math.sqrt(self.channels)  # (B, hw, hw)
        weights = weights.softmax(dim=-1)
        h = torch.bmm(v, weights.transpose(1, 2)).view_as(x)
        return x + self.proj_out(h)


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


BASE_CHANNELS = 160
CHANNEL_MULT = (1, 1, 2, 2, 4)


def middle_layers(channels: int) -> nn.Sequential:
    return nn.Sequential(ResnetBlock(channels, channels), AttnBlock(channels), ResnetBlock(channels, channels))


def encoder_level(level: int, in_ch: int, out_ch: int) -> nn.Sequential:
    last = level == len(CHANNEL_MULT) - 1
    layers: list[nn.Module] = []
    for i in range(2):
        layers.append(ResnetBlock(in_ch if i == 0 else out_ch, out_ch))
        if last:
            layers.append(AttnBlock(out_ch))
    if not last:
        layers.append(Downsample(out_ch))
    return nn.Sequential(*layers)


def decoder_level(level: int, in_ch: int, out_ch: int) -> nn.Sequential:
    last = level == len(CHANNEL_MULT) - 1
    layers: list[nn.Module] = []
    for i in range(3):
        layers.append(ResnetBlock(in_ch if i == 0 else out_ch, out_ch))
        if last:
            layers.append(AttnBlock(out_ch))
    if level != 0:
        layers.append(Upsample(out_ch))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """Image (B, 3, R, R) -> latent (B, 32, R/16, R/16)."""

    def __init__(self, base: int = BASE_CHANNELS) -> None:
        super().__init__()
        widths = [base * m for m in CHANNEL_MULT]
        self.conv_in = nn.Conv2d(3, base, 3, padding=1)
        ins = [base] + widths[:-1]
        self.down = nn.Sequential(*(encoder_level(i, ins[i], widths[i]) for i in range(len(widths))))
        self.mid = middle_layers(widths[-1])
        self.norm_out = group_norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], VAE_CHANNELS, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.mid(self.down(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Latent (B, 32, r, r) -> image (B, 3, 16 r, 16 r)."""

    def __init__(self, base: int = BASE_CHANNELS) -> None:
        super().__init__()
        widths = [base * m for m in CHANNEL_MULT]
        self.conv_in = nn.Conv2d(VAE_CHANNELS, widths[-1], 3, padding=1)
        self.mid = middle_layers(widths[-1])
        levels = reversed(range(len(widths)))
        ins = {i: widths[min(i + 1, len(widths) - 1)] for i in range(len(widths))}
        self.up = nn.Sequential(*(decoder_level(i, ins[i], widths[i]) for i in levels))
        self.norm_out = group_norm(widths[0])
        self.conv_out = nn.Conv2d(widths[0], 3, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.up(self.mid(self.conv_in(z)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Phi(nn.Module):
    """Refinement after upsampling: phi(h) = 0.5 * h + 0.5 * conv3x3(h)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h: Tensor) -> Tensor:
        return 0.5 * h + 0.5 * self.conv(h)


class MultiScaleQuantizer(nn.Module):
    """Residual multi-scale quantisation with a codebook shared by all scales."""

    def __init__(self, patch_nums: tuple[int, ...]) -> None:
        super().__init__()
        self.patch_nums = patch_nums
        self.embedding = nn.Embedding(VOCAB_SIZE, VAE_CHANNELS)
        self.phis = nn.ModuleList(Phi(VAE_CHANNELS) for _ in range(4))

    def nearest_codes(self, rest_BChw: Tensor) -> Tensor:
        """Index of the nearest code (Euclidean) for every position, shape (B, h*w)."""
        batch, channels = rest_BChw.shape[:2]
        rest = rest_BChw.permute(0, 2, 3, 1).reshape(-1, channels)
        codes = self.embedding.weight
        dist = rest.pow(2).sum(dim=1, keepdim=True) + codes.pow(2).sum(dim=1)
        dist = torch.addmm(dist, rest, codes.t(), beta=1.0, alpha=-2.0)
        return dist.argmin(dim=1).view(batch, -1)

    def codes_to_map(self, idx_Bl: Tensor, side: int) -> Tensor:
        """Look up codes (B, side*side) -> (B, Cv, side, side)."""
        batch = idx_Bl.shape[0]
        return self.embedding(idx_Bl).transpose(1, 2).reshape(batch, -1, side, side)

    def add_scale(self, step: int, f_hat: Tensor, h_BChw: Tensor) -> tuple[Tensor, Tensor]:
        """Upsample the scale-``step`` codes, refine with phi; returns (new f_hat, added term)."""
        full = f_hat.shape[-1]
        if h_BChw.shape[-1] != full:
            h_BChw = F.interpolate(h_BChw, size=(full, full), mode="bicubic")
        h_BChw = self.phis[PHI_INDEX[step]](h_BChw)
        return f_hat + h_BChw, h_BChw

    def next_input(self, step: int, f_hat: Tensor) -> Tensor:
        """f_hat area-downsampled to scale ``step + 1``, flattened to (B, pn^2, Cv)."""
        side = self.patch_nums[step + 1]
        if side != f_hat.shape[-1]:
            f_hat = F.interpolate(f_hat, size=(side, side), mode="area")
        return f_hat.flatten(2).transpose(1, 2)

    def teacher_forcing_input(self, f_BChw: Tensor) -> Tensor:
        """Quantise the latent scale by scale; returns x_BLCv_wo_first_l (B, L - 1, Cv).

        Only scales 0 .. K-2 feed the input; the codes of the last scale are the training
        targets, not part of the forward pass to logits, so they are not computed here (a
        trace would drop them as dead code anyway).
        """
        f_rest = f_BChw
        f_hat = torch.zeros_like(f_BChw)
        inputs = []
        for step, side in enumerate(self.patch_nums[:-1]):
            rest = f_rest
            if side != f_rest.shape[-1]:
                rest = F.interpolate(f_rest, size=(side, side), mode="area")
            idx = self.nearest_codes(rest)
            f_hat, added = self.add_scale(step, f_hat, self.codes_to_map(idx, side))
            f_rest = f_rest - added
            inputs.append(self.next_input(step, f_hat))
        return torch.cat(inputs, dim=1)


    # ---- training: VAR's trainer quantises all K scales, then rebuilds the teacher-forcing input ----

    def image_codes(self, f_BChw: Tensor) -> list[Tensor]:
        """The code indices of every scale, each (B, pn^2), as ``f_to_idxBl_or_fhat``: at each scale the
        residual is area-downsampled (not at the last, full-size one), quantised, looked up, bicubic-upsampled
        (not at the last), refined by phi, added to f_hat and taken off the residual."""
        f_rest = f_BChw.detach().clone()
        f_hat = torch.zeros_like(f_rest)
        full, last = f_rest.shape[-1], len(self.patch_nums) - 1
        codes = []
        for step, side in enumerate(self.patch_nums):
            rest = F.interpolate(f_rest, size=(side, side), mode="area") if step != last else f_rest
            idx = self.nearest_codes(rest)
            h = self.codes_to_map(idx, side)
            if step != last:
                h = F.interpolate(h, size=(full, full), mode="bicubic")
            h = self.phis[PHI_INDEX[step]](h)
            f_hat = f_hat + h
            f_rest = f_rest - h
            codes.append(idx)
        return codes

    def var_input(self, codes: list[Tensor]) -> Tensor:
        """``idxBl_to_var_input``: f_hat rebuilt from the codes of scales 0 .. K-2 (lookup, bicubic, phi), each
        time area-downsampled to the next scale (the last one too, to its own size) and flattened: (B, L-1, Cv)."""
        batch, full = codes[0].shape[0], self.patch_nums[-1]
        f_hat = self.embedding.weight.new_zeros(batch, VAE_CHANNELS, full, full)
        inputs = []
        for step in range(len(self.patch_nums) - 1):
            h = F.interpolate(self.codes_to_map(codes[step], self.patch_nums[step]), size=(full, full), mode="bicubic")
            f_hat = f_hat + self.phis[PHI_INDEX[step]](h)
            side = self.patch_nums[step + 1]
            inputs.append(F.interpolate(f_hat, size=(side, side), mode="area").flatten(2).transpose(1, 2))
        return torch.cat(inputs, dim=1)


class VQVAE(nn.Module):
    def __init__(self, patch_nums: tuple[int, ...], base: int = BASE_CHANNELS) -> None:
        super().__init__()
        self.encoder = Encoder(base)
        self.decoder = Decoder(base)
        self.quant_conv = nn.Conv2d(VAE_CHANNELS, VAE_CHANNELS, 3, padding=1)
        self.post_quant_conv = nn.Conv2d(VAE_CHANNELS, VAE_CHANNELS, 3, padding=1)
        self.quantize = MultiScaleQuantizer(patch_nums)

    def encode(self, images: Tensor) -> Tensor:
        """Images in [-1, 1] (B, 3, R, R) -> latent (B, 32, R/16, R/16)."""
        return self.quant_conv(self.encoder(images))

    def fhat_to_img(self, f_hat: Tensor) -> Tensor:
        """Reconstruction f_hat -> image in [-1, 1]."""
        return self.decoder(self.post_quant_conv(f_hat)).clamp(-1.0, 1.0)

    def forward(self, images: Tensor) -> Tensor:
        """Images -> teacher-forcing input (B, L - 1, 32)."""
        return self.quantize.teacher_forcing_input(self.encode(images))


def build_vqvae(
    device: str | torch.device = "meta", resolution: int = 256, base_channels: int = BASE_CHANNELS
) -> VQVAE:
    """The multi-scale VQVAE; ``base_channels`` (160 released) can shrink it for a quick CPU run."""
    with _building(device):
        model = VQVAE(patch_nums_for(resolution), base_channels)
    return model.eval()


# --------------------------------------------------------------------------- pipelines


class VARImageForward(nn.Module):
    """images (B, 3, R, R) in [-1, 1], labels (B,) -> logits (B, L, V)."""

    def __init__(self, vqvae: VQVAE, var: VAR) -> None:
        super().__init__()
        self.vqvae = vqvae
        self.var = var

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:
        return self.var(labels, self.vqvae(images))


def sample_top_k_top_p(logits_BlV: Tensor, top_k: int, top_p: float) -> Tensor:
    """Top-k then top-p (nucleus) sampling, one index per position: (B, l, V) -> (B, l).

    Only ops with meta kernels (topk, sort, softmax, cumsum, scatter, multinomial), and no
    Python branching on values, so it runs on meta tensors and traces with torch.jit.
    """
    batch, tokens, vocab = logits_BlV.shape
    if 0 < top_k < vocab:
        kth = logits_BlV.topk(top_k, dim=-1).values[..., -1:]
        logits_BlV = logits_BlV.masked_fill(logits_BlV < kth, float("-inf"))
    if 0.0 < top_p < 1.0:
        sorted_logits, order = logits_BlV.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # the top token always stays
        drop_sorted = mass_before > top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits_BlV = logits_BlV.masked_fill(drop, float("-inf"))
    probs = logits_BlV.softmax(dim=-1).view(-1, vocab)
    return torch.multinomial(probs, num_samples=1).view(batch, tokens)


class VARGenerate(nn.Module):
    """Class-conditional generation of images with classifier-free guidance and a KV cache.

    ``forward(labels)`` (B,) -> images (B, 3, R, R) in [0, 1]. Each of the K steps runs the
    transformer on the new pn_k^2 tokens of the conditional and "no class" rows (batch 2B),
    mixes the logits with a guidance weight ``cfg * k / (K - 1)``, samples, updates f_hat,
    and feeds f_hat area-downsampled to the next scale through word_embed. The VQVAE
    decoder then turns f_hat into the image.
    """

    def __init__(self, vqvae: VQVAE, var: VAR, cfg: float = 4.0, top_k: int = 900, top_p: float = 0.96) -> None:
        super().__init__()
        self.vqvae = vqvae
        self.var = var
        self.cfg = cfg
        self.top_k = top_k
        self.top_p = top_p

    def guidance(self, step: int) -> float:
        return self.cfg * step / (len(self.var.patch_nums) - 1)

    def forward(self, labels: Tensor) -> Tensor:
        self.var.set_kv_cache(True)
        try:
            f_hat = self.generate_fhat(labels)
        finally:
            self.var.set_kv_cache(False)
        return self.vqvae.fhat_to_img(f_hat).add(1.0) * 0.5

    def generate_fhat(self, labels: Tensor) -> Tensor:
        var, quantize = self.var, self.vqvae.quantize
        batch, patch_nums = labels.shape[0], var.patch_nums
        no_class = torch.full_like(labels, var.num_classes)
        cond_BD = var.class_emb(torch.cat((labels, no_class)))
        lvl_pos = var.level_positions()
        tokens = cond_BD.unsqueeze(1) + var.pos_start + lvl_pos[:, :1]
        side = patch_nums[-1]
        f_hat = cond_BD.new_zeros(batch, var.vae_channels, side, side)
        start = 1
        for step, pn in enumerate(patch_nums):
            logits = var.run_blocks(tokens, cond_BD, None)
            t = self.guidance(step)
            logits = (1 + t) * logits[:batch] - t * logits[batch:]
            idx = sample_top_k_top_p(logits, self.top_k, self.top_p)
            f_hat, _ = quantize.add_scale(step, f_hat, quantize.codes_to_map(idx, pn))
            if step + 1 < len(patch_nums):
                nxt = var.word_embed(quantize.next_input(step, f_hat))
                count = patch_nums[step + 1] ** 2
                nxt = nxt + lvl_pos[:, start : start + count]
                tokens = nxt.repeat(2, 1, 1)
                start += count
        return f_hat


class VARScaleStep(nn.Module):
    """The transformer's part of one generation step, alone: ``forward(tokens, cond_BD, *cache)``.

    ``tokens`` (2B, pn_k^2, C) are the step's new tokens (conditional and "no class" rows),
    ``cond_BD`` (2B, C) their class embeddings, and ``cache`` the keys of every block, then the
    values of every block, each (2B, H, tokens of the earlier scales, 64), as the KV cache holds
    them when step k starts (empty at step 0). Returns the step's logits (2B, pn_k^2, V): what
    ``VARGenerate`` spends in ``var.run_blocks`` at step k, for per-scale figures.
    """

    def __init__(self, var: VAR) -> None:
        super().__init__()
        self.var = var

    def forward(self, tokens: Tensor, cond_BD: Tensor, *cache: Tensor) -> Tensor:
        blocks = self.var.blocks
        self.var.set_kv_cache(True)
        try:
            if cache:
                for i, block in enumerate(blocks):
                    block.attn.cached_k, block.attn.cached_v = cache[i], cache[len(blocks) + i]
            return self.var.run_blocks(tokens, cond_BD, None)
        finally:
            self.var.set_kv_cache(False)


def scale_step_inputs(var: VAR, step: int, batch: int = 1, device: str | torch.device = "meta") -> tuple[Tensor, ...]:
    """``VARScaleStep`` inputs for step ``step`` of generating ``batch`` images: (tokens, cond_BD, *cache)."""
    pns = var.patch_nums
    rows, earlier = 2 * batch, sum(pn * pn for pn in pns[:step])
    tokens = torch.zeros(rows, pns[step] ** 2, var.width, device=device)
    cond = torch.zeros(rows, var.width, device=device)
    head_dim = var.width // var.heads
    cache = [torch.zeros(rows, var.heads, earlier, head_dim, device=device) for _ in range(2 * var.depth)] if earlier else []
    return (tokens, cond, *cache)


# --------------------------------------------------------------------------- training


class VARTrainStep(nn.Module):
    """One step of VAR's trainer up to the loss: ``forward(images, labels)`` -> scalar loss.

    The VQVAE is frozen (VAR's trainer builds it in test mode, every parameter with
    ``requires_grad=False``), so the images become code indices of all K scales and the
    teacher-forcing input without any gradient. The transformer runs on the teacher-forced
    tokens; the loss is cross-entropy over the 4096 codes at each of the L positions, weighted
    1/L per position, summed per image and averaged over the batch (``loss.mul(lw).sum(-1).mean()``).
    """

    def __init__(self, vqvae: VQVAE, var: VAR) -> None:
        super().__init__()
        self.vqvae = vqvae.requires_grad_(False)
        self.var = var
        with torch.device(var.pos_1LC.device):
            self.register_buffer("loss_weight", torch.ones(1, var.length) / var.length, persistent=False)

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:
        quantize = self.vqvae.quantize
        codes = quantize.image_codes(self.vqvae.encode(images))
        logits = self.var(labels, quantize.var_input(codes))
        targets = torch.cat(codes, dim=1)
        loss = F.cross_entropy(logits.view(-1, VOCAB_SIZE), targets.view(-1), reduction="none").view(labels.shape[0], -1)
        return loss.mul(self.loss_weight).sum(dim=-1).mean()


# Parameters VAR's trainer does not decay (besides every 1-D parameter and every bias).
NO_DECAY_KEYS = (
    "cls_token", "start_token", "task_token", "cfg_uncond", "pos_embed", "pos_1LC", "pos_start", "start_pos",
    "lvl_embed", "gamma", "beta", "ada_gss", "moe_bias", "scale_mul",
)
WEIGHT_DECAY = 0.05  # twd (= twde): the decay the schedule keeps for the decayed group


def var_param_groups(var: VAR) -> list[dict]:
    """VAR's ``filter_params``: group "D" (decayed) and "ND" (1-D, biases, the no-decay keys)."""
    decay, no_decay = [], []
    for name, param in var.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim == 1 or name.endswith("bias") or any(key in name for key in NO_DECAY_KEYS):
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]


def var_optimizer(var: VAR, lr: float = 3e-4) -> torch.optim.Optimizer:
    """AdamW as VAR's trainer builds it: betas (0.9, 0.95), fused, the two parameter groups
    (lr = 1e-4 * 768 / 256 for its default batch of 768)."""
    return torch.optim.AdamW(var_param_groups(var), lr=lr, betas=(0.9, 0.95), weight_decay=0.0, fused=True)
