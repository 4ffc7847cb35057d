"""ViT (An Image is Worth 16x16 Words, Dosovitskiy et al. 2021), rebuilt in torchvision's layout.

``vit_b_16`` and ``vit_l_16`` at 224 px: a 16x16 conv patch embedding (196 patches), a class
token (197 tokens), a learned positional embedding, pre-norm encoder blocks (LayerNorm,
``nn.MultiheadAttention``, LayerNorm, MLP with GELU), a final LayerNorm and a 1000-class
Linear head on the class token. Module and parameter names follow torchvision's
``VisionTransformer``. Weights are random; everything builds on ``meta`` by default.

- ``build_vit(name, device="meta")`` for "B/16", "L/16"; ``dummy_images(batch=1, device="meta")``
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

IMAGE_SIZE = 224
PATCH = 16
NUM_CLASSES = 1000
LN_EPS = 1e-6

# name -> (layers, hidden, heads, mlp)
CONFIGS = {"B/16": (12, 768, 12, 3072), "L/16": (24, 1024, 16, 4096)}
# torchvision's model cards: parameters (num_params) and "GFLOPS" (_ops).
TORCHVISION_PARAMS = {"B/16": 86_567_656, "L/16": 304_326_632}
TORCHVISION_GFLOPS = {"B/16": 17.56, "L/16": 61.55}


class MLPBlock(nn.Sequential):
    def __init__(self, hidden: int, mlp: int) -> None:
        super().__init__(nn.Linear(hidden, mlp), nn.GELU(), nn.Dropout(0.0), nn.Linear(mlp, hidden), nn.Dropout(0.0))


class EncoderBlock(nn.Module):
    def __init__(self, hidden: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden, eps=LN_EPS)
        self.self_attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.dropout = nn.Dropout(0.0)
        self.ln_2 = nn.LayerNorm(hidden, eps=LN_EPS)
        self.mlp = MLPBlock(hidden, mlp)

    def forward(self, x: Tensor) -> Tensor:
        h = self.ln_1(x)
        h, _ = self.self_attention(h, h, h, need_weights=False)
        x = x + self.dropout(h)
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    def __init__(self, tokens: int, layers: int, hidden: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, tokens, hidden).normal_(std=0.02))
        self.dropout = nn.Dropout(0.0)
        self.layers = nn.Sequential(*(EncoderBlock(hidden, heads, mlp) for _ in range(layers)))
        self.ln = nn.LayerNorm(hidden, eps=LN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


class VisionTransformer(nn.Module):
    """``forward(images (B, 3, 224, 224))`` -> logits (B, 1000)."""

    def __init__(self, layers: int, hidden: int, heads: int, mlp: int, image_size: int = IMAGE_SIZE) -> None:
        super().__init__()
        self.hidden = hidden
        self.conv_proj = nn.Conv2d(3, hidden, PATCH, stride=PATCH)
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden))
        self.tokens = (image_size // PATCH) ** 2 + 1
        self.encoder = Encoder(self.tokens, layers, hidden, heads, mlp)
        self.heads = nn.Sequential()
        self.heads.add_module("head", nn.Linear(hidden, NUM_CLASSES))

    def forward(self, images: Tensor) -> Tensor:
        x = self.conv_proj(images).flatten(2).transpose(1, 2)  # (B, 196, hidden)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.heads(self.encoder(x)[:, 0])


def build_vit(name: str, device: str | torch.device = "meta", image_size: int = IMAGE_SIZE) -> VisionTransformer:
    with torch.device(device):
        model = VisionTransformer(*CONFIGS[name], image_size=image_size)
    return model.eval()


def dummy_images(batch: int = 1, device: str | torch.device = "meta", image_size: int = IMAGE_SIZE) -> Tensor:
    return torch.zeros(batch, 3, image_size, image_size, device=device)
