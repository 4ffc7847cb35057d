"""The example suites (VAR, DiT, ViT) run together with ``pytest examples``; this makes the
shared analytic helpers (``flopmath``) importable and prints the tables at the end (VAR's
per-model table, the comparison, VAR's shares). The tables live here, not in the suites' own
conftest files: under pytest-xdist the controller loads only the conftest files above the paths it
was given (``pytest examples -n 2`` loads this one alone), and it alone holds every record."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


def pytest_terminal_summary(terminalreporter, config) -> None:
    if hasattr(config, "workerinput") or not config.pluginmanager.hasplugin("flopbudget"):
        return
    from comparison import comparison_table, share_table, var_table

    from pytest_flopbudget.plugin import records

    measured = records(config)
    sections = [
        ("VAR: GFLOPs per released model (batch 1, 1 MAC = 2 FLOPs)", var_table(measured)),
        ("VAR vs DiT vs ViT (batch 1; GFLOPs = 2 x MACs of every priced operator; pub. = published convention, "
         "GMACs of matmul/conv/attention)", comparison_table(measured)),
        ("VAR transformer forward: where the MACs go (batch 1)", share_table(measured)),
    ]
    for title, lines in sections:
        if lines:
            terminalreporter.write_sep("=", title)
            for line in lines:
                terminalreporter.write_line(line)
