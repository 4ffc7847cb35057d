"""The decoder of the Stable Diffusion VAE (KL-f8, 4 latent channels) that DiT samples through.

Built from the published configuration of ``stabilityai/sd-vae-ft-ema`` (diffusers'
``AutoencoderKL``): block_out_channels (128, 256, 512, 512), layers_per_block 2 (so 3 ResNet
blocks per decoder up block), GroupNorm with 32 groups (eps 1e-6), SiLU, a mid block of
ResNet - single-head attention - ResNet at 512 channels, nearest 2x upsampling followed by a 3x3
conv in the first three up blocks. ``decode`` is ``AutoencoderKL.decode``: post_quant_conv
(1x1) and then the decoder. DiT's ``sample.py`` calls it on ``latents / 0.18215``.

Weights are random and everything builds on the ``meta`` device by default.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

BLOCK_OUT_CHANNELS = (128, 256, 512, 512)
LAYERS_PER_BLOCK = 2
NORM_GROUPS = 32
EPS = 1e-6
LATENT_CHANNELS = 4
SCALING_FACTOR = 0.18215


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(NORM_GROUPS, channels, eps=EPS, affine=True)


class ResnetBlock2D(nn.Module):
    """GN - SiLU - conv3x3 - GN - SiLU - conv3x3, plus a 1x1 conv shortcut when the width changes."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return shortcut + h


class AttentionBlock(nn.Module):
    """diffusers' Attention as the VAE mid block uses it: GroupNorm, one head of the full width,
    to_q / to_k / to_v / to_out Linear layers over the h*w positions, fused attention, residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.group_norm = group_norm(channels)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        h = self.group_norm(x.view(batch, channels, height * width)).transpose(1, 2)  # (B, hw, C)
        q, k, v = (proj(h).unsqueeze(1) for proj in (self.to_q, self.to_k, self.to_v))  # one head
        h = F.scaled_dot_product_attention(q, k, v).squeeze(1)
        h = self.to_out[1](self.to_out[0](h))
        return x + h.transpose(1, 2).reshape(batch, channels, height, width)


class MidBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels), ResnetBlock2D(channels, channels)])
        self.attentions = nn.ModuleList([AttentionBlock(channels)])

    def forward(self, x: Tensor) -> Tensor:
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class Upsample2D(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UpDecoderBlock2D(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, upsample: bool) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels) for i in range(LAYERS_PER_BLOCK + 1)
        )
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels)]) if upsample else None

    def forward(self, x: Tensor) -> Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class Decoder(nn.Module):
    """Latent (B, 4, h, w) -> image (B, 3, 8h, 8w)."""

    def __init__(self) -> None:
        super().__init__()
        reversed_channels = list(reversed(BLOCK_OUT_CHANNELS))
        self.conv_in = nn.Conv2d(LATENT_CHANNELS, reversed_channels[0], 3, padding=1)
        self.mid_block = MidBlock(reversed_channels[0])
        blocks, previous = [], reversed_channels[0]
        for i, channels in enumerate(reversed_channels):
            blocks.append(UpDecoderBlock2D(previous, channels, upsample=i < len(reversed_channels) - 1))
            previous = channels
        self.up_blocks = nn.ModuleList(blocks)
        self.conv_norm_out = group_norm(BLOCK_OUT_CHANNELS[0])
        self.conv_out = nn.Conv2d(BLOCK_OUT_CHANNELS[0], 3, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            h = block(h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class VAEDecode(nn.Module):
    """``AutoencoderKL.decode`` as DiT's sample.py calls it: ``decode(latents / 0.18215)``."""

    def __init__(self) -> None:
        super().__init__()
        self.post_quant_conv = nn.Conv2d(LATENT_CHANNELS, LATENT_CHANNELS, 1)
        self.decoder = Decoder()

    def forward(self, latents: Tensor) -> Tensor:
        return self.decoder(self.post_quant_conv(latents / SCALING_FACTOR))


def build_vae_decoder(device: str | torch.device = "meta") -> VAEDecode:
    with torch.device(device):
        model = VAEDecode()
    return model.eval()
