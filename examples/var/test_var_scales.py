"""VAR's generation scale by scale: the transformer's part of each of the K steps, measured alone.

Generation runs the transformer K times: step k on the pn_k^2 new tokens of the conditional and
"no class" rows, attending to every token so far through the KV cache. Early scales push a handful
of tokens through all the weights; the last ones hundreds. ``VARScaleStep`` runs step k alone (the
cache filled with the earlier scales' keys and values), so each step has its own count, checked
against ``analytic.generation_step``'s transformer terms, and its own roofline estimate for the
deployment table (``deployment.scale_table``): which bound binds at which scale, at batch 1 and 16.
These are not baselined (``measure``, not the fixture): the generation tests are.
"""

from __future__ import annotations

import analytic
import pytest
from deployment import record_estimates
from model import RELEASED, VARScaleStep, build_released, scale_step_inputs
from test_var_flops import THROUGHPUT_BATCH, check_analytic

from pytest_flopbudget import measure

MODELS = ("d16", "d36-s")  # the smallest (256 px) and the largest (512 px)


@pytest.mark.parametrize("batch", [1, THROUGHPUT_BATCH], ids=lambda b: f"b{b}")
@pytest.mark.parametrize("name", MODELS)
def test_generation_scales(record_property, name: str, batch: int) -> None:
    var = build_released(name)
    shape = analytic.var_shape(*RELEASED[name])
    pns = shape.patch_nums
    # every step reads every weight of the blocks and the head at least once: the floor of its memory traffic
    weights = 4 * sum(p.numel() for part in (var.shared_ada_lin, var.blocks, var.head_nm, var.head) for p in part.parameters())
    for step, pn in enumerate(pns):
        result = measure(VARScaleStep(var), *scale_step_inputs(var, step, batch))
        rows, keys = 2 * batch, sum(p * p for p in pns[: step + 1])
        cost = analytic.blocks_cost(shape, rows, pn * pn, keys) + analytic.head_cost(shape, rows, pn * pn)
        check_analytic(result.by_operator, cost)
        assert result.bytes_moved >= weights
        record_estimates(record_property, result, model=name, batch=batch, scale=step, tokens=pn * pn)
