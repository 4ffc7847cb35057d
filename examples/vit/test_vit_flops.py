"""FLOP budgets of ViT-B/16 and ViT-L/16 at 224 px with the ``flops`` fixture.

Built on the meta device; ceilings are the measured GFLOPs (1 MAC = 2 FLOPs) plus about 2%, the
committed ``examples/flopbudget.toml`` holds the exact counts. Each measurement is checked
against ``vit_analytic``: matmul, convolution and attention terms exactly, the LayerNorm terms
the counter adds exactly, and the published convention against torchvision's model card.
"""

from __future__ import annotations

import pytest
import vit_analytic as analytic
from flopmath import check_split
from vit_model import CONFIGS, TORCHVISION_GFLOPS, build_vit, dummy_images

from pytest_flopbudget import assert_scaling, measure

BUDGETS = {"B/16": 36, "L/16": 126}  # measured 35.135 and 123.129 GFLOPs


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.flop_budget(BUDGETS[n]), id=n.replace("/", "-")) for n in CONFIGS]
)
def test_forward(flops, name: str) -> None:
    result = flops(build_vit(name), dummy_images())
    cost = analytic.forward(name)
    check_split(result.by_category, cost)
    # torchvision's "GFLOPS" column is MACs of matmul/conv/attention: 17.56 and 61.55, to its printed precision.
    assert f"{result.published_macs / 1e9:.2f}" == f"{TORCHVISION_GFLOPS[name]:.2f}"
    assert result.gflops == pytest.approx(2 * TORCHVISION_GFLOPS[name], rel=1e-3)  # 2 x MACs, + LayerNorms


def test_cost_is_linear_in_batch() -> None:
    """ViT-B/16 at batch 1..16: exactly B times one image (fitted exponent 1, the MACs B x batch 1)."""
    model = build_vit("B/16")
    fit = assert_scaling(
        lambda batch: measure(model, dummy_images(batch)), [1, 2, 4, 8, 16],
        max_exponent=1.0001, min_exponent=0.9999, dimension="batch",
    )
    assert fit.macs == tuple(b * analytic.forward("B/16").total for b in fit.sizes)

