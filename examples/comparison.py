"""The tables the example suites print at the end of ``pytest examples``, built from the run's records.

- ``comparison_table``: VAR d16..d36-s, DiT S/2..XL/2 and ViT B/16, L/16 side by side: parameters,
  GFLOPs (2 x MACs, every priced operator) and published-convention GMACs (matmul, conv and
  attention only) per forward and per generated image, and what the papers / model cards print.
- ``var_table``: one row per released VAR model, the way VAR users compare models: parameters and
  GFLOPs of the transformer forward, the forward on images, the generation of one image, and one
  training step (VAR's trainer, batch 1).
- ``var_shares``: where VAR's transformer forward spends its MACs at each depth, at 256 and 512 px.
- ``memory_table``: the same models' peak memory (exact, on meta) for generation or inference at batch 1
  and 16 and for VAR's training step, and whether it fits a 24 GB and an 80 GB card.

Batch-16 records (ids ending ``-b16``) feed the memory and deployment tables only (``deployment.py``).

Only plain data (``pytest_flopbudget.Record``): no torch here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from deployment import THROUGHPUT_BATCH, by_test, decode_record, model_name

SAMPLING_STEPS = 250  # DiT's sample.py default; keep equal to dit_model.SAMPLING_STEPS


# What the papers and model cards print, by the table's model name.
PUBLISHED = {
    "VAR-d16": "310M params (VAR paper)",
    "VAR-d20": "600M params (VAR paper)",
    "VAR-d24": "1.0B params (VAR paper)",
    "VAR-d30": "2.0B params (VAR paper)",
    "VAR-d36-s": "2.3B params (VAR paper)",  # 512 px
    "DiT-S/2": "6.06 Gflops (DiT paper)",
    "DiT-B/2": "23.01 Gflops (DiT paper)",
    "DiT-L/2": "80.71 Gflops (DiT paper)",
    "DiT-XL/2": "118.64 Gflops (DiT paper)",
    "ViT-B/16": "17.56 GFLOPS (torchvision)",
    "ViT-L/16": "61.55 GFLOPS (torchvision)",
}
PER_IMAGE = {
    "VAR": "measured: 10 scales x 2 rows + decode",
    "DiT": "250 x measured step (2 rows) + decode",
}


def _by_test(records: Iterable[Any], batch: int = 1) -> dict[tuple[str, str, str | None], Any]:
    """(suite, test, model parameter) -> record, for the records of one batch size."""
    return {(suite, test, param): rec for (suite, test, param, b), rec in by_test(records).items() if b == batch}


_FAMILY = {"var": "VAR", "dit": "DiT", "vit": "ViT"}
_model_name = model_name


def _rows(records: Iterable[Any]) -> list[dict[str, Any]]:
    tests = _by_test(records)
    decode = tests.get(("dit", "test_vae_decode", None))
    rows = []
    for (suite, test, param), rec in tests.items():
        if test not in ("test_transformer_forward", "test_forward") or param is None or suite not in _FAMILY:
            continue
        row = {"suite": suite, "model": _model_name(suite, param), "params": rec.params, "forward": rec}
        if suite == "var":
            gen = tests.get(("var", "test_generate", param))
            if gen is not None:
                row["image"] = (gen.macs, gen.published_macs)
        elif suite == "dit":
            step = tests.get(("dit", "test_sampling_step", param))
            if step is not None and decode is not None and step.published_macs is not None:
                row["image"] = (
                    SAMPLING_STEPS * step.macs + decode.macs,
                    SAMPLING_STEPS * step.published_macs + (decode.published_macs or 0),
                )
        rows.append(row)
    order = {"var": 0, "dit": 1, "vit": 2}
    return sorted(rows, key=lambda r: (order.get(r["suite"], 9), r["params"]))


def comparison_table(records: Iterable[Any]) -> list[str]:
    """One line per model: params, per-forward and per-image GFLOPs and published GMACs, the published figure."""
    rows = _rows(records)
    if not rows:
        return []
    head = (
        f"{'model':<10} {'params':>13}  {'forward':>9} {'fwd pub.':>9}  {'per image':>11} {'image pub.':>11}  "
        f"{'published figure (source)':<26} per image"
    )
    units = f"{'':<10} {'':>13}  {'GFLOPs':>9} {'GMACs':>9}  {'GFLOPs':>11} {'GMACs':>11}"
    lines = [head, units]
    for row in rows:
        fwd = row["forward"]
        pub = fwd.published_macs
        image = row.get("image")
        cells = [
            f"{row['model']:<10}",
            f"{row['params']:>13,}",
            f" {fwd.gflops:>9,.2f}",
            f"{pub / 1e9:>9,.2f}" if pub is not None else f"{'-':>9}",
            f" {2 * image[0] / 1e9:>11,.1f}" if image else f" {'-':>11}",
            f"{image[1] / 1e9:>11,.1f}" if image and image[1] is not None else f"{'-':>11}",
            f" {PUBLISHED.get(row['model'], '-'):<26}",
            PER_IMAGE[_FAMILY[row["suite"]]] if image else "-",
        ]
        lines.append(" ".join(cells).rstrip())
    return lines


# --------------------------------------------------------------------------- where VAR's compute goes

_RESOLUTION = {"d16": 256, "d20": 256, "d24": 256, "d30": 256, "d36-s": 512}
SHARES = ("attention", "projections", "mlp", "rest")


def shares(rec: Any) -> dict[str, int]:
    """MACs of one VAR transformer forward split four ways, from its categories and module totals.

    attention: Q K^T and A V (the fused attention operator); projections: qkv and proj Linear
    layers (with the q * scale multiply, L*C per block); mlp: fc1 and fc2; rest: AdaLN, head,
    word embedding, modulation multiplies.
    """
    modules = rec.modules
    attention = rec.categories.get("attention", 0)
    attn_module = sum(m for path, m in modules.items() if path.endswith(".attn") or ".attn." in path)
    mlp = sum(m for path, m in modules.items() if path.endswith(".ffn") or ".ffn." in path)
    projections = attn_module - attention
    return {"attention": attention, "projections": projections, "mlp": mlp, "rest": rec.macs - attn_module - mlp}


def _var_forwards(records: Iterable[Any]) -> dict[tuple[int, int], Any]:
    out = {}
    for (suite, test, param), rec in _by_test(records).items():
        if suite != "var" or param is None:
            continue
        if test == "test_transformer_forward" and param in _RESOLUTION:
            out[(int(param[1:3]), _RESOLUTION[param])] = rec
        elif test == "test_transformer_forward_at":
            depth, resolution = param.split("-")
            out[(int(depth[1:]), int(resolution))] = rec
    return out


def share_table(records: Iterable[Any]) -> list[str]:
    """Depth, resolution, tokens-weighted GFLOPs and the four shares in percent."""
    forwards = _var_forwards(records)
    if not forwards:
        return []
    lines = [f"{'depth':>5} {'px':>4} {'GFLOPs':>10}  " + " ".join(f"{s:>12}" for s in SHARES)]
    for (depth, resolution), rec in sorted(forwards.items()):
        split = shares(rec)
        cells = " ".join(f"{100 * split[s] / rec.macs:>11.1f}%" for s in SHARES)
        lines.append(f"{'d' + str(depth):>5} {resolution:>4} {rec.gflops:>10,.1f}  {cells}")
    return lines


VAR_COLUMNS = {
    "test_transformer_forward": "forward",
    "test_image_forward": "image",
    "test_generate": "generate",
    "test_train_step": "train",
}
_VAR_ID = re.compile(r"::(?P<test>\w+)\[(?P<model>[^\]]+?)\]$")
_THROUGHPUT_ID = re.compile(r"-b\d+$")


def var_table(records: list[Any]) -> list[str]:
    """Rows of ``model | params | forward | image | generate | train step`` from the suite's records."""
    rows: dict[str, dict[str, Any]] = {}
    for rec in records:
        match = _VAR_ID.search(rec.nodeid)
        if rec.key is not None or not match or match["test"] not in VAR_COLUMNS or _THROUGHPUT_ID.search(match["model"]):
            continue
        row = rows.setdefault(match["model"], {})
        row[VAR_COLUMNS[match["test"]]] = rec.gflops
        if match["test"] == "test_transformer_forward":
            row["params"] = rec.params
    if not rows:
        return []
    lines = [
        f"{'model':<7} {'params':>14} {'forward GFLOPs':>15} {'image GFLOPs':>13} {'generate GFLOPs':>16} {'train step GFLOPs':>18}",
    ]
    for model in sorted(rows, key=lambda m: (len(m), m)):
        row = rows[model]
        cells = [f"{row[c]:,.1f}" if c in row else "-" for c in ("forward", "image", "generate", "train")]
        params = f"{row['params']:,}" if "params" in row else "-"
        lines.append(f"{model:<7} {params:>14} {cells[0]:>15} {cells[1]:>13} {cells[2]:>16} {cells[3]:>18}")
    return lines


# --------------------------------------------------------------------------- memory

CARDS_GB = (24, 80)
GB = 1e9


def _fits(peak: int | None) -> str:
    """``24/80``: fits both cards; ``80``: only the 80 GB one; ``-``: neither (decimal GB, as datasheets print)."""
    if peak is None:
        return "?"
    fitting = [f"{card}" for card in CARDS_GB if peak <= card * GB]
    return "/".join(fitting) if fitting else "-"


def _inference_peak(tests: dict[tuple[str, str, str | None], Any], suite: str, param: str, batch: int) -> int | None:
    """VAR: generation; DiT: a sampling step and the VAE decode with both models loaded; ViT: the forward."""
    if suite == "var":
        rec = tests.get(("var", "test_generate", param))
        return None if rec is None else rec.peak_bytes
    if suite == "vit":
        rec = tests.get(("vit", "test_forward", param))
        return None if rec is None else rec.peak_bytes
    step = tests.get(("dit", "test_sampling_step", param))
    decode = decode_record({(*key, batch): rec for key, rec in tests.items()}, batch)
    if step is None or decode is None or step.peak_bytes is None or decode.peak_bytes is None:
        return None
    step_weights, decode_weights = step.peak_split.get("weights", 0), decode.peak_split.get("weights", 0)
    return max(step.peak_bytes + decode_weights, decode.peak_bytes + step_weights)


def memory_table(records: Iterable[Any]) -> list[str]:
    """One line per model: weights, and peak GB and the cards it fits for inference (batch 1 and 16) and training."""
    records = list(records)
    batches = {1: _by_test(records, 1), THROUGHPUT_BATCH: _by_test(records, THROUGHPUT_BATCH)}
    rows = []
    for (suite, test, param), rec in batches[1].items():
        if test not in ("test_transformer_forward", "test_forward") or param is None or suite not in _FAMILY:
            continue
        if rec.peak_bytes is None:
            continue
        cells = []
        for kind in ("inference", "train"):
            for batch, tests in batches.items():
                if kind == "inference":
                    peak = _inference_peak(tests, suite, param, batch)
                else:
                    train = tests.get(("var", "test_train_step", param)) if suite == "var" else None
                    peak = None if train is None else train.peak_bytes
                cells.append("-" if peak is None else f"{peak / GB:,.2f} {_fits(peak):>5}")
        rows.append((suite, rec.params, _model_name(suite, param), rec.peak_split.get("weights", 0), cells))
    if not rows:
        return []
    order = {"var": 0, "dit": 1, "vit": 2}
    rows.sort(key=lambda r: (order.get(r[0], 9), r[1]))
    what = ("inference b1", f"inference b{THROUGHPUT_BATCH}", "train step b1", f"train step b{THROUGHPUT_BATCH}")
    lines = [
        f"{'model':<10} {'weights GB':>10}  " + "  ".join(f"{w:>17}" for w in what),
        f"{'':<10} {'':>10}  " + "  ".join(f"{'peak GB  fits':>17}" for _ in what),
    ]
    for _, _, model, weights, cells in rows:
        lines.append(f"{model:<10} {weights / GB:>10,.2f}  " + "  ".join(f"{c:>17}" for c in cells))
    return lines
