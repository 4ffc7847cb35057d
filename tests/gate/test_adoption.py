"""What a team meets in its first runs: where the baseline lives, module depth, a default budget,
report files' modes, the summary after --flop-update, and a training step gated against the base.

The model of the module-depth tests: ``transformer.h`` holds two blocks, each ``mlp.c_fc``
(Linear(8 -> W)) then ``mlp.c_proj`` (Linear(W -> 8)), on a (1, 4, 8) input: per block
c_fc costs 4 * 8 * W MACs and c_proj 4 * W * 8 (biases add no MAC), so each folded path
``transformer.h.*.mlp.c_fc`` holds 2 * 32 * W MACs.
"""

from __future__ import annotations

import os
import shutil
import stat
import textwrap

import pytest

from pytest_flopbudget.baseline import store as baseline

GPT_LIKE = """
import torch
from torch import nn

W = {width}

class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_fc = nn.Linear(8, W)
        self.c_proj = nn.Linear(W, 8)

    def forward(self, x):
        return self.c_proj(self.c_fc(x))

class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = MLP()

    def forward(self, x):
        return self.mlp(x)

class Body(nn.Module):
    def __init__(self):
        super().__init__()
        self.h = nn.ModuleList([Block(), Block()])

class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.transformer = Body()

    def forward(self, x):
        for block in self.transformer.h:
            x = block(x)
        return x

def test_gpt(flops):
    flops(GPT().to("meta"), torch.empty(1, 4, 8, device="meta"))
"""


def per_path(width: int) -> int:
    return 2 * 4 * 8 * width


def write_gpt(pytester: pytest.Pytester, width: int = 32) -> None:
    pytester.makepyfile(test_gpt=textwrap.dedent(GPT_LIKE.format(width=width)))


def entry(pytester: pytest.Pytester) -> baseline.Entry:
    return baseline.load(pytester.path / "flopbudget.toml").entries["test_gpt.py::test_gpt"]


# ------------------------------------------------------------------ where the baseline lives


def test_header_shows_the_absolute_baseline_path_and_warns_without_a_config_file(pytester: pytest.Pytester) -> None:
    write_gpt(pytester)
    result = pytester.runpytest()
    out = result.stdout.str()
    assert f"flopbudget: baseline {pytester.path / 'flopbudget.toml'} (not found: empty)" in out
    assert out.count("WARNING no pytest configuration file") == 1
    assert "add a [tool.pytest.ini_options] table to pyproject.toml" in out
    pytester.makepyprojecttoml("[tool.pytest.ini_options]\n")
    out = pytester.runpytest().stdout.str()
    assert "no pytest configuration file" not in out
    assert f"flopbudget: baseline {pytester.path / 'flopbudget.toml'} (not found: empty)" in out


# ------------------------------------------------------------------ module depth


def test_default_depth_keeps_every_linear_of_a_layer_apart(pytester: pytest.Pytester) -> None:
    write_gpt(pytester)
    pytester.makeini("[pytest]\n")
    pytester.runpytest("--flop-update").assert_outcomes(passed=1)
    assert entry(pytester).modules == {"transformer.h.*.mlp.c_fc": per_path(32), "transformer.h.*.mlp.c_proj": per_path(32)}


def test_module_depth_option_and_ini(pytester: pytest.Pytester) -> None:
    write_gpt(pytester)
    pytester.makeini("[pytest]\nflopbudget_module_depth = 3\n")
    pytester.runpytest("--flop-update").assert_outcomes(passed=1)
    assert entry(pytester).modules == {"transformer.h.*": 2 * per_path(32)}
    pytester.runpytest("--flop-update", "--flop-module-depth=4").assert_outcomes(passed=1)  # the option wins
    assert entry(pytester).modules == {"transformer.h.*.mlp": 2 * per_path(32)}
    result = pytester.runpytest("--flop-module-depth=deep")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--flop-module-depth must be a whole number of path parts (1, 2, ...) or all, got 'deep'*"])


def test_a_baseline_recorded_at_another_depth_compares_at_the_shallower_one(pytester: pytest.Pytester) -> None:
    write_gpt(pytester)
    pytester.makeini("[pytest]\n")
    pytester.runpytest("--flop-update", "--flop-module-depth=4").assert_outcomes(passed=1)  # as an old file: 4 parts
    write_gpt(pytester, width=40)
    result = pytester.runpytest()  # whole paths now
    result.assert_outcomes(failed=1)
    changed = result.stdout.str().split("changed against the baseline:", 1)[1].splitlines()
    grown = 2 * per_path(40) - 2 * per_path(32)
    assert changed[1].split() == ["transformer.h.*.mlp", f"{grown:+,}", "MACs", "(+25.0%)"]
    assert not any("c_fc" in line for line in changed[1:4])  # not "gone and new" path by path


# ------------------------------------------------------------------ a default budget


DEFAULT_SUITE = """
import pytest
import torch
from torch import nn

def run(flops):
    flops(nn.Linear(1000, 1000, device="meta"), torch.empty(10, 1000, device="meta"))  # 1e7 MACs = 0.02 GFLOPs

def test_plain(flops):
    run(flops)

@pytest.mark.flop_budget(gflops=0.03)
def test_own_ceiling(flops):
    run(flops)

@pytest.mark.flop_budget(rel="5%")
def test_growth_only(flops):
    run(flops)
"""


def test_default_budget_applies_where_no_marker_sets_a_ceiling(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_default=DEFAULT_SUITE)
    pytester.makeini("[pytest]\nflopbudget_default_gflops = 0.01\nflopbudget_missing = warn\n")
    result = pytester.runpytest("-rf")
    result.assert_outcomes(passed=1, failed=2, warnings=1)
    out = result.stdout.str()
    assert "FAILED test_default.py::test_plain" in out and "FAILED test_default.py::test_growth_only" in out
    assert "FLOP budget exceeded: 0.02 GFLOPs > 0.01 GFLOPs (+100.0%)" in out
    assert "budget: 0.01 GFLOPs (flopbudget_default_gflops: no flop_budget(gflops=...) on the test)" in out
    assert "give test_default.py::test_plain its own budget" in out
    assert "default budget 0.01 GFLOPs" in out  # the header says so
    pytester.runpytest("--flop-default-gflops=0.025").assert_outcomes(passed=3, warnings=3)  # the option over the ini


def test_default_growth_limit_is_flopbudget_rel_and_the_marker_overrides_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_default=DEFAULT_SUITE)
    pytester.makeini("[pytest]\nflopbudget_rel = 1%\n")
    pytester.runpytest("--flop-update").assert_outcomes(passed=3)
    # the model grows 4%: over the run's 1% but within test_growth_only's own 5%
    pytester.makepyfile(test_default=DEFAULT_SUITE.replace("nn.Linear(1000, 1000", "nn.Linear(1000, 1040"))
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=2)
    assert "FLOP regression: 0.020 -> 0.021 GFLOPs (+4.0%, allowed +1.0%)" in result.stdout.str()


# ------------------------------------------------------------------ papercuts


def test_report_files_and_baseline_respect_the_umask(pytester: pytest.Pytester) -> None:
    write_gpt(pytester)
    pytester.makeini("[pytest]\n")
    old = os.umask(0o022)
    try:
        pytester.runpytest("--flop-update", "--flop-report-json=r.json", "--flop-report-md=r.md", "--flop-report-html=r.html")
        os.umask(0o027)
        pytester.runpytest("--flop-report-json=s.json")
    finally:
        os.umask(old)
    for name in ("r.json", "r.md", "r.html", "flopbudget.toml"):
        assert stat.S_IMODE(os.stat(pytester.path / name).st_mode) == 0o644, name
    assert stat.S_IMODE(os.stat(pytester.path / "s.json").st_mode) == 0o640


def test_no_stale_new_after_an_update(pytester: pytest.Pytester) -> None:
    write_gpt(pytester)
    pytester.makeini("[pytest]\n")
    for args in ((), ("--flop-report",)):
        if (pytester.path / "flopbudget.toml").exists():
            os.unlink(pytester.path / "flopbudget.toml")
        out = pytester.runpytest("--flop-update", *args).stdout.str()
        assert "records them" not in out and "New (" not in out
        assert "wrote" in out and "(1 entries; 1 added or changed, 0 removed)" in out
    assert "New (1): no baseline entry yet" in pytester.runpytest("--flop-baseline=other.toml").stdout.str()


# ------------------------------------------------------------------ a training step against the base

STEP = """
import torch
from torch import nn

def test_step(flops):
    m = nn.Sequential(nn.Linear(16, {hidden}), nn.ReLU(), nn.Linear({hidden}, 8))
    flops.train_step(m, torch.randn(4, 16), optimizer=torch.optim.SGD(m.parameters(), lr=0.1))
"""


def phases(hidden: int) -> dict[str, int]:
    """Forward 4*16*H + 4*H*8; backward dX and dW of layer 2 plus dW of layer 1; SGD one MAC per parameter."""
    return {
        "forward": 4 * 16 * hidden + 4 * hidden * 8,
        "backward": 2 * 4 * hidden * 8 + 4 * 16 * hidden,
        "optimizer": 16 * hidden + hidden + hidden * 8 + 8,
    }


def test_training_step_failing_the_base_gate_compares_phases_with_the_base(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_train=STEP.format(hidden=32))
    pytester.runpytest("--flop-update").assert_outcomes(passed=1)
    shutil.copy(pytester.path / "flopbudget.toml", pytester.path / "base.toml")
    pytester.makepyfile(test_train=STEP.format(hidden=40))
    pytester.runpytest("--flop-update").assert_outcomes(passed=1)  # the raise is accepted locally
    result = pytester.runpytest("--flop-base=base.toml", "--flop-base-rel=1%", "--flop-report-md=r.md", "--flop-report-html=r.html")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    old, new = phases(32), phases(40)
    assert "FLOP raise against the base base.toml" in out
    for phase in ("forward", "backward", "optimizer"):
        change = f"({new[phase] - old[phase]:+,} MACs, +{100 * (new[phase] - old[phase]) / old[phase]:.1f}% against the base base.toml)"
        assert change in out, phase
    assert "(unchanged)" not in out
    md = (pytester.path / "r.md").read_text()
    assert "line 1: base base.toml" in md
    html = (pytester.path / "r.html").read_text()
    assert 'class="fb-base" ' in html and f'data-macs="{sum(old.values())}"' in html
