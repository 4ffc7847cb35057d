"""flops.train_step in a test suite: budgets, baselines with phases, regression messages, reports.

The model: Linear(16 -> 32), ReLU, Linear(32 -> 8) on a (4, 16) input that needs no gradient.
forward = 4*16*32 + 4*32*8 = 3072; backward = layer 2 dX + dW (2 * 4*32*8) + layer 1 dW (4*16*32) = 4096;
SGD(lr=0.1): one scaled add per parameter element = 16*32 + 32 + 32*8 + 8 = 808.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from pytest_flopbudget.baseline import store as baseline

FORWARD, BACKWARD, OPTIMIZER = 4 * 16 * 32 + 4 * 32 * 8, 2 * 4 * 32 * 8 + 4 * 16 * 32, 16 * 32 + 32 + 32 * 8 + 8
STEP = FORWARD + BACKWARD + OPTIMIZER

SUITE = """
import pytest
import torch
from torch import nn

HIDDEN = {hidden}

def model():
    return nn.Sequential(nn.Linear(16, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 8))

@pytest.mark.flop_budget(gflops=1.0)
def test_step(flops):
    m = model()
    result = flops.train_step(m, torch.randn(4, 16), optimizer=torch.optim.SGD(m.parameters(), lr=0.1))
    assert sum(result.phases.values()) == result.macs
"""


def write(pytester: pytest.Pytester, hidden: int = 32) -> None:
    pytester.makepyfile(test_train=textwrap.dedent(SUITE.format(hidden=hidden)))


def test_update_stores_phases_and_modules_per_phase(pytester: pytest.Pytester) -> None:
    write(pytester)
    pytester.runpytest("--flop-update").assert_outcomes(passed=1)
    entry = baseline.load(pytester.path / "flopbudget.toml").entries["test_train.py::test_step"]
    assert entry.macs == STEP
    assert entry.phases == {"backward": BACKWARD, "forward": FORWARD, "optimizer": OPTIMIZER}
    assert entry.modules == {
        "backward/*": BACKWARD,
        "forward/*": FORWARD,
        "optimizer/<root>": OPTIMIZER,
    }
    text = (pytester.path / "flopbudget.toml").read_text()
    assert '["test_train.py::test_step".phases]\n"backward" = 4096\n"forward" = 3072\n"optimizer" = 808\n' in text
    pytester.runpytest().assert_outcomes(passed=1)


def test_regression_names_the_phases_and_modules_that_grew(pytester: pytest.Pytester) -> None:
    write(pytester)
    pytester.runpytest("--flop-update").assert_outcomes(passed=1)
    write(pytester, hidden=40)
    result = pytester.runpytest("--flop-report-json=report.json", "--junitxml=junit.xml")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    forward = 4 * 16 * 40 + 4 * 40 * 8
    backward = 2 * 4 * 40 * 8 + 4 * 16 * 40
    optimizer = 16 * 40 + 40 + 40 * 8 + 8
    assert "FLOP regression" in out
    assert "phases of the training step:" in out
    assert f"backward   {backward:,} MACs" in out and f"({backward - BACKWARD:+,} MACs, +25.0% against the baseline)" in out
    assert f"forward    {forward:,} MACs" in out
    assert f"optimizer  {optimizer:,} MACs" in out
    changed = out.split("changed against the baseline:", 1)[1].splitlines()
    assert any(line.split() == ["backward/*", f"{backward - BACKWARD:+,}", "MACs", "(+25.0%)"] for line in changed)
    report = json.loads((pytester.path / "report.json").read_text())
    test = report["tests"][0]
    assert test["phases"] == {"forward": forward, "backward": backward, "optimizer": optimizer}
    assert test["baseline_phases"] == {"backward": BACKWARD, "forward": FORWARD, "optimizer": OPTIMIZER}
    junit = (pytester.path / "junit.xml").read_text()
    assert f'name="flopbudget.backward_macs" value="{backward}"' in junit


def test_markdown_report_has_a_phase_table(pytester: pytest.Pytester) -> None:
    write(pytester)
    pytester.runpytest("--flop-update").assert_outcomes(passed=1)
    pytester.runpytest("--flop-report-md=report.md").assert_outcomes(passed=1)
    md = (pytester.path / "report.md").read_text()
    assert "| Training step | Forward GFLOPs | Backward GFLOPs | Optimizer GFLOPs |" in md
    assert f"| `test_train.py::test_step` | {2 * FORWARD / 1e9:.9f}" not in md  # 3 significant digits, not raw
    assert "`test_train.py::test_step`" in md.split("| Training step |", 1)[1]


def test_over_budget_training_step(pytester: pytest.Pytester) -> None:
    write(pytester)
    text = (pytester.path / "test_train.py").read_text().replace("gflops=1.0", "gflops=1e-6")
    (pytester.path / "test_train.py").write_text(text)
    result = pytester.runpytest("--flop-missing=warn")
    result.assert_outcomes(failed=1)
    assert "FLOP budget exceeded" in result.stdout.str()
    assert f"forward    {FORWARD:,} MACs" in result.stdout.str()
