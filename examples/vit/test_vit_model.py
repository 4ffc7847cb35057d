"""Plain pytest checks of the ViT rebuild: parameter counts by formula, shapes on CPU."""

from __future__ import annotations

import pytest
import torch
from vit_model import CONFIGS, TORCHVISION_PARAMS, build_vit, dummy_images

IDS = [name.replace("/", "-") for name in CONFIGS]


def params_from_shapes(layers: int, d: int, m: int, tokens: int = 197, classes: int = 1000) -> int:
    """per layer: 2 LayerNorms 4d; in_proj 3d^2 + 3d; out_proj d^2 + d; MLP dm + m + md + d.
    conv_proj 3*16*16 d + d; class token d; positions tokens * d; final LayerNorm 2d; head d*1000 + 1000."""
    per_layer = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (2 * d * m + m + d)
    return layers * per_layer + (768 * d + d) + d + tokens * d + 2 * d + (d * classes + classes)


@pytest.mark.parametrize("name", CONFIGS, ids=IDS)
def test_parameter_count_matches_formula_and_torchvision(name: str) -> None:
    layers, d, _, m = CONFIGS[name]
    params = sum(p.numel() for p in build_vit(name).parameters())
    assert params == params_from_shapes(layers, d, m) == TORCHVISION_PARAMS[name]


def test_cpu_forward_small() -> None:
    torch.manual_seed(0)
    from vit_model import VisionTransformer

    model = VisionTransformer(layers=2, hidden=64, heads=4, mlp=128, image_size=32).eval()
    with torch.no_grad():
        logits = model(dummy_images(batch=2, device="cpu", image_size=32))
    assert logits.shape == (2, 1000) and torch.isfinite(logits).all()
