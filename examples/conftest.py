"""The example suites (VAR, DiT, ViT) run together with ``pytest examples``; this makes the
shared analytic helpers (``flopmath``) importable and prints the tables at the end (VAR's
per-model table, the comparison, peak memory, VAR's shares, the deployment tables). The tables live
here, not in the suites' own conftest files: under pytest-xdist the controller loads only the conftest
files above the paths it was given (``pytest examples -n 2`` loads this one alone), and it alone holds
every record. The deployment estimates the tests attach (``deployment.record_estimates``) reach it in
each test's report."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


def pytest_runtest_logreport(report) -> None:
    if report.when == "call" and report.user_properties:
        from deployment import collect

        collect(report.nodeid, report.user_properties)


def pytest_terminal_summary(terminalreporter, config) -> None:
    if hasattr(config, "workerinput") or not config.pluginmanager.hasplugin("flopbudget"):
        return
    from comparison import comparison_table, memory_table, share_table, var_table
    from deployment import DEVICES, THROUGHPUT_BATCH, deployment_table, dit_step_table, scale_table

    from pytest_flopbudget.plugin import records

    measured = records(config)
    sections = [
        ("VAR: GFLOPs per released model (batch 1, 1 MAC = 2 FLOPs)", var_table(measured)),
        ("VAR vs DiT vs ViT (batch 1; GFLOPs = 2 x MACs of every priced operator; pub. = published convention, "
         "GMACs of matmul/conv/attention)", comparison_table(measured)),
        ("VAR transformer forward: where the MACs go (batch 1)", share_table(measured)),
        ("Peak memory (exact on meta, float32; inference = VAR generation, DiT sampling step + VAE decode, ViT "
         f"forward; batch 1 and {THROUGHPUT_BATCH}; fits: the 24 GB / 80 GB cards it fits)", memory_table(measured)),
        (f"Deployment: ms per image on {', '.join(DEVICES)} (roofline lower bound, FP32 with TF32 matrix units; "
         "C/M: compute- or memory-bound, with its share of the time)", deployment_table(measured)),
        ("DiT: one sampling step (2 rows per image) vs the VAE decode, and the decode's share of a 250-step image",
         dit_step_table(measured)),
        ("VAR generation per scale: the transformer's step k, ms for the whole batch (C/M: compute- or memory-bound)",
         scale_table(measured)),
    ]
    for title, lines in sections:
        if lines:
            terminalreporter.write_sep("=", title)
            for line in lines:
                terminalreporter.write_line(line)
