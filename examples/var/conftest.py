"""The VAR example suite: imports of the local modules, and a per-model GFLOPs table at the end.

The table lays out the suite's measurements the way VAR users compare models: one row per
released model, with parameters and GFLOPs of the transformer forward, the forward on
images, the generation of one image, and one training step (VAR's trainer, batch 1). It reads ``pytest_flopbudget.plugin.records``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

COLUMNS = {
    "test_transformer_forward": "forward",
    "test_image_forward": "image",
    "test_generate": "generate",
    "test_train_step": "train",
}
_ID = re.compile(r"::(?P<test>\w+)\[(?P<model>[^\]]+)\]$")


def var_table(records: list[Any]) -> list[str]:
    """Rows of ``model | params | forward | image | generate | train step`` from the suite's records."""
    rows: dict[str, dict[str, Any]] = {}
    for rec in records:
        match = _ID.search(rec.nodeid)
        if rec.key is not None or not match or match["test"] not in COLUMNS:
            continue
        row = rows.setdefault(match["model"], {})
        row[COLUMNS[match["test"]]] = rec.gflops
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


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or not config.pluginmanager.hasplugin("flopbudget"):
        return
    from pytest_flopbudget.plugin import records

    lines = var_table(records(config))
    if lines:
        terminalreporter.write_sep("=", "VAR: GFLOPs per released model (batch 1, 1 MAC = 2 FLOPs)")
        for line in lines:
            terminalreporter.write_line(line)
