"""The example suites (VAR, DiT, ViT) run together with ``pytest examples``; this makes the
shared analytic helpers (``flopmath``) importable and prints the comparison table at the end."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


def pytest_terminal_summary(terminalreporter, config) -> None:
    if hasattr(config, "workerinput") or not config.pluginmanager.hasplugin("flopbudget"):
        return
    from comparison import comparison_table, share_table

    from pytest_flopbudget.plugin import records

    measured = records(config)
    sections = [
        ("VAR vs DiT vs ViT (batch 1; GFLOPs = 2 x MACs of every priced operator; pub. = published convention, "
         "GMACs of matmul/conv/attention)", comparison_table(measured)),
        ("VAR transformer forward: where the MACs go (batch 1)", share_table(measured)),
    ]
    for title, lines in sections:
        if lines:
            terminalreporter.write_sep("=", title)
            for line in lines:
                terminalreporter.write_line(line)
