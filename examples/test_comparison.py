"""The comparison tables read the run's records: per-image DiT cost is 250 measured steps plus one decode."""

from __future__ import annotations

from comparison import comparison_table, share_table, shares

from pytest_flopbudget import Record

CATS = {"matmul": 0, "conv": 0, "attention": 0, "recurrent": 0, "norm": 0, "elementwise": 0}


def record(nodeid: str, macs: int, params: int = 0, **categories: int) -> Record:
    return Record(id=nodeid, nodeid=nodeid, macs=macs, status="ok", params=params, categories={**CATS, **categories})


def test_dit_per_image_is_250_steps_plus_one_decode() -> None:
    g = 1_000_000_000
    records = [
        record("dit/test_dit_flops.py::test_forward[XL-2]", g, params=675_129_632, matmul=990_000_000),
        record("dit/test_dit_flops.py::test_sampling_step[XL-2]", 2 * g, matmul=1_980_000_000),
        record("dit/test_dit_flops.py::test_vae_decode", 5 * g, conv=4_900_000_000),
    ]
    row = next(line for line in comparison_table(records) if line.startswith("DiT-XL/2"))
    # per image: 250 x 2 G + 5 G = 505 G MACs = 1,010.0 GFLOPs; published 250 x 1.98 G + 4.9 G = 499.9 G
    assert row.split()[:6] == ["DiT-XL/2", "675,129,632", "2.00", "0.99", "1,010.0", "499.9"]
    assert "118.64 Gflops (DiT paper)" in row and "250 x measured step" in row


def test_var_shares_split_the_forward_four_ways() -> None:
    rec = record(
        "var/test_var_flops.py::test_transformer_forward[d16]", 1_000, attention=100,
    )
    rec.modules = {"blocks.*.attn": 400, "blocks.*.attn.proj": 100, "blocks.*.ffn.fc1": 200, "blocks.*.ffn.fc2": 200, "head": 100}
    assert shares(rec) == {"attention": 100, "projections": 400, "mlp": 400, "rest": 100}
    lines = share_table([rec])
    assert lines[1].split() == ["d16", "256", "0.0", "10.0%", "40.0%", "40.0%", "10.0%"]
