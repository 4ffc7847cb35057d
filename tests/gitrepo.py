"""Real git repositories for the base-comparison tests: a base commit and a pull request on top.

``make_repo(root)`` commits on ``main`` a flopbudget.toml and a suite, then on ``pr`` (left
checked out) widens one model, narrows another, adds a test, deletes one, and commits the
raised flopbudget.toml (what ``--flop-update`` writes). git gets its identity from the
environment and no global or system configuration (GIT_CONFIG_GLOBAL=/dev/null): no
configuration file is touched.

Counts are derived from the shapes, on an input of (1, 680, 1024):

- ``EncoderHead``: enc = Linear(1024 -> 1024), head = Linear(1024 -> W):
  680 * 1024 * 1024 + 680 * 1024 * W MACs; W = 4096 at the base, 4224 in the PR (+2.5%).
- ``Linear(1024 -> w)``: 680 * 1024 * w MACs (the bias adds no MAC).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pytest_flopbudget.baseline import store as baseline

TOKENS, IN = 680, 1024
G = 500_000_000  # MACs in one GFLOP


def lin(width: int) -> int:
    """MACs of Linear(1024 -> width) on (1, 680, 1024)."""
    return TOKENS * IN * width


def encoder_head(width: int) -> dict[str, int]:
    return {"enc": lin(1024), "head": lin(width)}


BASE_W, PR_W = 4096, 4224
GROW_BASE = sum(encoder_head(BASE_W).values())  # 3,565,158,400 MACs = 7.130 GFLOPs
GROW_PR = sum(encoder_head(PR_W).values())  # 3,654,287,360 MACs = 7.309 GFLOPs (+2.5%)

MODELS = """
import torch
from torch import nn

WIDTH = {width}
SHRINK = {shrink}


class EncoderHead(nn.Module):
    def __init__(self, width=WIDTH):
        super().__init__()
        self.enc = nn.Linear(1024, 1024)
        self.head = nn.Linear(1024, width)

    def forward(self, x):
        return self.head(self.enc(x))


def encoder_head():
    with torch.device("meta"):
        return EncoderHead(), torch.empty(1, 680, 1024)


def linear(width):
    return nn.Linear(1024, width, device="meta"), torch.empty(1, 680, 1024, device="meta")
"""

SHARED_TESTS = """
import models


def test_grow(flops):
    flops(*models.encoder_head())


def test_shrink(flops):
    flops(*models.linear(models.SHRINK))


def test_same(flops):
    flops(*models.linear(512))
"""
BASE_TESTS = SHARED_TESTS + "\n\ndef test_gone(flops):\n    flops(*models.linear(8))\n"
PR_TESTS = SHARED_TESTS + "\n\ndef test_fresh(flops):\n    flops(*models.linear(16))\n"

BASE_ENTRIES = {
    "test_m.py::test_grow": baseline.Entry(GROW_BASE, encoder_head(BASE_W)),
    "test_m.py::test_shrink": baseline.Entry(lin(256), {"<root>": lin(256)}),
    "test_m.py::test_same": baseline.Entry(lin(512), {"<root>": lin(512)}),
    "test_m.py::test_gone": baseline.Entry(lin(8), {"<root>": lin(8)}),
}
PR_ENTRIES = {
    "test_m.py::test_grow": baseline.Entry(GROW_PR, encoder_head(PR_W)),
    "test_m.py::test_shrink": baseline.Entry(lin(128), {"<root>": lin(128)}),
    "test_m.py::test_same": baseline.Entry(lin(512), {"<root>": lin(512)}),
    "test_m.py::test_fresh": baseline.Entry(lin(16), {"<root>": lin(16)}),
}


def git_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """An identity for the test commits and no user or system git configuration (environment only)."""
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "flopbudget tests")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "tests@flopbudget.invalid")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path_factory.getbasetemp()))


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def make_repo(root: Path, *, base_toml: bool = True, baseline_name: str = "flopbudget.toml") -> None:
    """``main``: the base commit; ``pr`` (checked out): the pull request on top of it."""
    write(root, ".gitignore", ".pytest_cache/\n__pycache__/\n*.md\n*.json\n*.xml\n")
    write(root, "models.py", MODELS.format(width=BASE_W, shrink=256))
    write(root, "test_m.py", BASE_TESTS)
    if base_toml:
        write(root, baseline_name, baseline.render(BASE_ENTRIES, {}))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    git(root, "checkout", "-q", "-b", "pr")
    write(root, "models.py", MODELS.format(width=PR_W, shrink=128))
    write(root, "test_m.py", PR_TESTS)
    write(root, baseline_name, baseline.render(PR_ENTRIES, {}))
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "wider head, accepted with --flop-update")
