"""The comparison tables read the run's records: per-image DiT cost is 250 measured steps plus one decode;
the memory and deployment tables read peak memory and the attached estimates."""

from __future__ import annotations

import deployment
from comparison import comparison_table, memory_table, share_table, shares, var_table
from deployment import DEVICES, PROPERTY, Time, collect, deployment_table, scale_table, split_batch

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


# --------------------------------------------------------------------------- memory and deployment tables


def test_split_batch_reads_the_throughput_ids() -> None:
    assert split_batch("d16") == ("d16", 1)
    assert split_batch("d36-s-b16") == ("d36-s", 16)
    assert split_batch("XL-2-b16") == ("XL-2", 16)
    assert split_batch("B-16") == ("B-16", 1)  # ViT-B/16 is not a batch
    assert split_batch("b16") == (None, 16)
    assert split_batch(None) == (None, 1)


def with_memory(rec: Record, peak: int, weights: int) -> Record:
    rec.peak_bytes, rec.peak_split = peak, {"weights": weights, "activations": peak - weights}
    return rec


def test_memory_table_says_which_cards_fit() -> None:
    g = 10**9
    var = "var/test_var_flops.py::"
    records = [
        with_memory(record(var + "test_transformer_forward[d30]", 1, params=2_000_000_000), 9 * g, 8 * g),
        with_memory(record(var + "test_generate[d30]", 1), 9 * g, 8 * g),
        with_memory(record(var + "test_generate[d30-b16]", 16), 24 * g, 8 * g),  # exactly 24 GB: fits
        with_memory(record(var + "test_train_step[d30]", 1), 32 * g, 8 * g),
        with_memory(record(var + "test_train_step[d30-b16]", 16), 80 * g + 1, 8 * g),  # one byte over 80 GB
        with_memory(record("dit/test_dit_flops.py::test_forward[XL-2]", 1, params=675_000_000), 3 * g, 2 * g),
        with_memory(record("dit/test_dit_flops.py::test_sampling_step[XL-2]", 1), 3 * g, 2 * g),
        with_memory(record("dit/test_dit_flops.py::test_vae_decode", 1), g, g // 4),
    ]
    lines = memory_table(records)
    var_row = next(line for line in lines if line.startswith("VAR-d30"))
    assert var_row.split() == ["VAR-d30", "8.00", "9.00", "24/80", "24.00", "24/80", "32.00", "80", "80.00", "-"]
    # DiT inference: both models loaded, max(step peak + decoder weights, decode peak + DiT weights) = 3.25 GB
    dit_row = next(line for line in lines if line.startswith("DiT-XL/2"))
    assert dit_row.split() == ["DiT-XL/2", "2.00", "3.25", "24/80", "-", "-", "-"]


def attach(nodeid: str, compute_ms: float, memory_ms: float, **facts: object) -> None:
    estimates = {dev: {"ms": compute_ms + memory_ms, "compute_ms": compute_ms, "memory_ms": memory_ms} for dev in DEVICES}
    collect(nodeid, [("other", 1), (PROPERTY, {"estimates": estimates, **facts})])


def test_deployment_table_composes_dit_images_and_divides_by_the_batch(monkeypatch) -> None:
    monkeypatch.setattr(deployment, "COLLECTED", {})
    g = 10**9
    step, decode = "dit/test_dit_flops.py::test_sampling_step[XL-2-b16]", "dit/test_dit_flops.py::test_vae_decode_batch[b16]"
    var = "var/test_var_flops.py::test_generate[d16]"
    records = [
        with_memory(record(step, 1, params=675_000_000), 30 * g, 3 * g),
        with_memory(record(decode, 1), 10 * g, g),
        with_memory(record(var, 1, params=310_000_000), 2 * g, g),
    ]
    attach(step, compute_ms=2.0, memory_ms=0.4)  # 250 steps: 500 ms compute, 100 ms memory
    attach(decode, compute_ms=20.0, memory_ms=60.0)
    attach(var, compute_ms=1.0, memory_ms=3.0)
    lines = deployment_table(records, devices={"h100-sxm": 80, "l4": 24, "rtx-4090": 24})
    dit = next(line for line in lines if line.startswith("DiT-XL/2"))
    # per image: (250 x 2.4 + 80) / 16 = 42.5 ms; compute 520 of 680 ms = 76%; peak max(30 + 1, 10 + 3) = 31 GB
    assert dit.split()[-12:] == ["16", "31.00", "42.5", "C76%", "42.5", "C76%", "(no", "fit)", "42.5", "C76%", "(no", "fit)"]
    row = next(line for line in lines if line.startswith("VAR-d16"))
    assert row.split()[-6:] == ["4.00", "M75%", "4.00", "M75%", "4.00", "M75%"]


def test_scale_table_shows_each_scales_bound(monkeypatch) -> None:
    monkeypatch.setattr(deployment, "COLLECTED", {})
    nodeid = "var/test_var_scales.py::test_generation_scales[d16-b1]"
    estimates = {dev: {"ms": 1.0, "compute_ms": 0.0, "memory_ms": 1.0} for dev in DEVICES}
    late = {dev: {"ms": 3.0, "compute_ms": 2.0, "memory_ms": 1.0} for dev in DEVICES}
    collect(nodeid, [
        (PROPERTY, {"estimates": estimates, "model": "d16", "batch": 1, "scale": 0, "tokens": 1}),
        (PROPERTY, {"estimates": late, "model": "d16", "batch": 1, "scale": 1, "tokens": 4}),
    ])
    lines = scale_table()
    assert lines[1].split() == ["VAR-d16", "tokens", "1", "4"]
    assert lines[2].split() == ["1", DEVICES[0], "1.00", "M", "3.00", "C"]


def test_time_keeps_the_bound_of_its_parts() -> None:
    total = Time(2.0, 1.0) + Time(0.0, 1.0).times(0.5)  # compute 2, memory 1 + 0.5
    assert (total.compute_ms, total.memory_ms, total.ms, total.bound) == (2.0, 1.5, 3.5, "compute")
    assert total.share == 2.0 / 3.5


def test_throughput_records_stay_out_of_the_batch_1_tables() -> None:
    g = 1_000_000_000
    var = "var/test_var_flops.py::"
    records = [
        record(var + "test_transformer_forward[d16]", g, params=310_283_520, matmul=g),
        record(var + "test_transformer_forward[d16-b16]", 16 * g, params=310_283_520, matmul=16 * g),
    ]
    assert [line.split()[0] for line in var_table(records)[1:]] == ["d16"]
    assert [line.split()[0] for line in comparison_table(records)[2:]] == ["VAR-d16"]
    assert [line.split()[:2] for line in share_table(records)[1:]] == [["d16", "256"]]
