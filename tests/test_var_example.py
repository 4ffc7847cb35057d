"""The VAR example suite as a gate: it passes on its committed baseline and fails on added compute."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FC1 = "self.fc1 = nn.Linear(width, 4 * width)"
FC2 = "self.fc2 = nn.Linear(4 * width, width)"


def copy_example(pytester: pytest.Pytester) -> Path:
    """The examples folder as the rootdir it is (pytest.ini, conftest, shared helpers, baseline) with the VAR suite."""
    for name in ("pytest.ini", "conftest.py", "comparison.py", "deployment.py", "flopmath.py", "flopbudget.toml"):
        shutil.copy(EXAMPLES / name, pytester.path / name)
    target = pytester.path / "var"
    shutil.copytree(EXAMPLES / "var", target, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    return target


def test_committed_baseline_matches_the_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """In CI (missing entries fail) every measurement equals its committed entry exactly."""
    monkeypatch.setenv("CI", "true")
    copy_example(pytester)
    result = pytester.runpytest_subprocess("var/test_var_flops.py", "--flop-report", "-n", "2")
    # 5 models x (forward, image forward, generation, training step) at batch 1, and forward, generation
    # and training step again at batch 16
    result.assert_outcomes(passed=35)
    result.stdout.fnmatch_lines(["*0 over-budget, 0 regressed, 0 new, 0 improved, 35 ok*"])


def test_dispatch_capture_matches_the_committed_trace_counts(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """One registry, two captures: the dispatch counter reproduces the baseline the trace recorded, exactly.

    (d16 here to keep the suite fast; all 15 forward entries agree: ``--flop-counter=flop_counter`` in
    examples/var. The training step is counted by dispatch capture under either counter.) Peak memory agrees
    to the byte too; bytes moved do not, by design (the trace prices reshape/contiguous as views, the
    dispatch capture sees the copies they make: docs/memory.md), so the copy's baseline drops them."""
    monkeypatch.setenv("CI", "true")
    copy_example(pytester)
    baseline = pytester.path / "flopbudget.toml"
    lines = baseline.read_text().splitlines(keepends=True)
    baseline.write_text("".join(line for line in lines if not line.startswith("bytes_moved = ")))
    result = pytester.runpytest_subprocess("var/test_var_flops.py", "-k", "d16", "--flop-report", "--flop-counter=flop_counter")
    result.assert_outcomes(passed=7)  # d16's forward, image forward, generation, training step; three at batch 16 too
    result.stdout.fnmatch_lines(["*0 over-budget, 0 regressed, 0 new, 0 improved, 7 ok*"])


def test_one_more_hidden_unit_per_block_fails_the_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    var = copy_example(pytester)
    source = (var / "model.py").read_text()
    assert FC1 in source and FC2 in source, "the MLP definition moved; update this test"
    widened = source.replace(FC1, "self.fc1 = nn.Linear(width, 4 * width + 1)").replace(FC2, "self.fc2 = nn.Linear(4 * width + 1, width)")
    (var / "model.py").write_text(widened)

    result = pytester.runpytest("var/test_var_flops.py", "-k", "test_transformer_forward and d16 and not b16")
    result.assert_outcomes(failed=1)

    # One hidden unit more in each of the 16 blocks of d16 (C = 1024, L = 680 tokens):
    # fc1 gains L*C MACs, fc2 gains L*C MACs -> 16 * 2 * 680 * 1024 = 22,282,240 MACs.
    depth, width, tokens = 16, 1024, 680
    growth = depth * 2 * tokens * width
    baseline = 155_087_544_320  # committed entry, = analytic.transformer_forward(d16) + elementwise terms
    text = result.stdout.str()
    assert f"baseline: {baseline:,} MACs" in text
    assert f"measured: {baseline + growth:,} MACs" in text
    assert re.search(r"FLOP regression: 310\.18 -> 310\.22 GFLOPs \(\+0\.0144%, allowed \+0%\)", text), text
    result.stdout.fnmatch_lines(
        [
            "*changed against the baseline:*",
            f"*blocks.*.ffn.fc1 *+{tokens * width * depth:,} MACs*",
            f"*blocks.*.ffn.fc2 *+{tokens * width * depth:,} MACs*",
            '*If intended: pytest "var/test_var_flops.py::test_transformer_forward?d16?" --flop-update*',
        ]
    )
    assert "blocks.*.attn" not in text.split("changed against the baseline:")[1].split("If intended")[0]
