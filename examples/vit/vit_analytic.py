"""Analytic MAC model of ViT, from the architecture (not from a trace).

Per image, L layers of width D, MLP width M, N = 196 + 1 tokens, 1000 classes:

    exact = L * (4 N D^2 + 2 N M D + 2 N^2 D)    in-projection 3, out-projection 1; fc1, fc2;
                                                 attention Q K^T + A V (all heads: N^2 D each)
          + 196 D (3 * 16 * 16)                  patch embedding conv
          + D * 1000                             head, on the class token
    elementwise = (2 L + 1) N D                  the affine LayerNorms, one MAC per element

This "exact" part is what torchvision prints as GFLOPS (17.56 for B/16, 61.55 for L/16).
"""

from __future__ import annotations

from flopmath import Cost
from vit_model import CONFIGS, IMAGE_SIZE, NUM_CLASSES, PATCH


def forward(name: str, batch: int = 1, image_size: int = IMAGE_SIZE) -> Cost:
    layers, d, _, m = CONFIGS[name]
    patches = (image_size // PATCH) ** 2
    n = patches + 1
    block = 4 * n * d * d + 2 * n * m * d + 2 * n * n * d
    exact = layers * block + patches * d * 3 * PATCH * PATCH + d * NUM_CLASSES
    return Cost(exact, (2 * layers + 1) * n * d).times(batch)
