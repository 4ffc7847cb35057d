"""FLOP budgets of ViT-B/16 and ViT-L/16 at 224 px with the ``flops`` fixture.

Built on the meta device; ceilings are the measured GFLOPs (1 MAC = 2 FLOPs) plus about 2%, the
committed ``examples/flopbudget.toml`` holds the exact counts. Each measurement is checked
against ``vit_analytic``: matmul, convolution and attention terms exactly, the LayerNorm terms
the counter adds exactly, and the published convention against torchvision's model card.
"""

from __future__ import annotations

import pytest
import vit_analytic as analytic
from deployment import record_estimates
from flopmath import check_split, weight_bytes
from vit_model import CONFIGS, TORCHVISION_GFLOPS, build_vit, dummy_images

from pytest_flopbudget import assert_scaling, measure

BUDGETS = {"B/16": 36, "L/16": 126}  # measured 35.135 and 123.129 GFLOPs
THROUGHPUT_BATCH = 16


@pytest.mark.parametrize(
    "name, batch",
    [
        pytest.param(
            n, batch, marks=pytest.mark.flop_budget(batch * BUDGETS[n]),
            id=n.replace("/", "-") if batch == 1 else f"{n.replace('/', '-')}-b{batch}",
        )
        for n in CONFIGS
        for batch in (1, THROUGHPUT_BATCH)
    ],
)
def test_forward(flops, record_property, name: str, batch: int) -> None:
    """Batch 1 and the throughput batch 16 (ids ``B-16-b16``), with peak memory and bytes moved."""
    model = build_vit(name)
    result = flops.using(memory=True)(model, dummy_images(batch))
    cost = analytic.forward(name, batch)
    check_split(result.by_category, cost)
    # torchvision's "GFLOPS" column is MACs of matmul/conv/attention: 17.56 and 61.55, to its printed precision.
    assert f"{result.published_macs / 1e9 / batch:.2f}" == f"{TORCHVISION_GFLOPS[name]:.2f}"
    assert result.gflops / batch == pytest.approx(2 * TORCHVISION_GFLOPS[name], rel=1e-3)  # 2 x MACs, + LayerNorms
    assert result.peak_split["weights"] == weight_bytes(model)
    assert result.peak_bytes >= weight_bytes(model) + 4 * batch * 3 * 224 * 224  # and the input images
    record_estimates(record_property, result)


def test_cost_is_linear_in_batch() -> None:
    """ViT-B/16 at batch 1..16: exactly B times one image (fitted exponent 1, the MACs B x batch 1)."""
    model = build_vit("B/16")
    fit = assert_scaling(
        lambda batch: measure(model, dummy_images(batch)), [1, 2, 4, 8, 16],
        max_exponent=1.0001, min_exponent=0.9999, dimension="batch",
    )
    assert fit.macs == tuple(b * analytic.forward("B/16").total for b in fit.sizes)

