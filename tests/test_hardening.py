"""Hardening: every bad input ends in a normal pytest outcome with a message naming the cause
and the fix, and no baseline entry is ever lost. docs/bad-input.md lists each case with the
test that covers it.

Counts are derived by hand from the shapes, as in tests/test_plugin.py: a Linear(1024 -> w)
on (1, 680, 1024) costs 680 * 1024 * w MACs; a Linear(8 -> 4) on (1, 8) costs 32 MACs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_flopbudget import baseline

TOKENS, IN = 680, 1024


def macs_of(width: int) -> int:
    return TOKENS * IN * width


MODELS = """
import torch
from torch import nn

def linear(width=4096):
    return nn.Linear(1024, width, device="meta"), torch.empty(1, 680, 1024, device="meta")
"""


def write_test(pytester: pytest.Pytester, body: str, name: str = "test_m") -> None:
    pytester.makepyfile(models=MODELS)
    pytester.makepyfile(**{name: "import pytest\nimport torch\nimport models\n\n" + textwrap.dedent(body)})


def entries(path: Path) -> dict[str, int]:
    return {k: e.macs for k, e in baseline.load(path).entries.items()}


def no_crash(result: pytest.RunResult) -> None:
    """Neither pytest nor the plugin crashed: no INTERNALERROR, no traceback anywhere."""
    for stream in (result.stdout, result.stderr):
        stream.no_fnmatch_line("*INTERNALERROR*")
        stream.no_fnmatch_line("*Traceback*")


# --- nothing lost: concurrent updates --------------------------------------------------

# Makes the race window wide: each run, when it merges its measurements into the baseline,
# first waits until the other run is about to write too, then lingers 0.5 s. Were the
# merge outside the file lock, both runs would merge into the same old file and the second
# write would drop the first run's entry; under the lock the second run merges the first's file.
BARRIER = """
import os, time
from pathlib import Path
import pytest
from pytest_flopbudget import baseline, plugin

HERE = Path(__file__).parent

_finish = plugin.FlopSession.pytest_sessionfinish

def _finish_marked(self, session, exitstatus):
    if not self.state.worker:
        (HERE / f"finished-{os.getpid()}").write_text("")
    return _finish(self, session, exitstatus)

plugin.FlopSession.pytest_sessionfinish = _finish_marked

_merge = baseline.updated

def updated(*args, **kwargs):
    deadline = time.monotonic() + 60
    while len(list(HERE.glob("finished-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)
    return _merge(*args, **kwargs)

baseline.updated = updated
"""


@pytest.mark.skipif(sys.platform == "win32", reason="the file lock is flock (POSIX)")
def test_concurrent_updates_of_different_tests_keep_both(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(BARRIER)
    write_test(pytester, "def test_a(flops):\n    flops(*models.linear(512))\n", name="test_a")
    write_test(pytester, "def test_b(flops):\n    flops(*models.linear(256))\n", name="test_b")
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--flop-update"]
    runs = [
        subprocess.Popen([*base, "test_a.py"], cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
        subprocess.Popen([*base, "-n", "2", "test_b.py"], cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
    ]
    outputs = [run.communicate(timeout=240)[0] for run in runs]
    for run, out in zip(runs, outputs):
        assert run.returncode == 0, out
        assert "INTERNALERROR" not in out and "Traceback" not in out, out
        assert "flopbudget: wrote" in out, out
    path = pytester.path / "flopbudget.toml"
    loaded = baseline.load(path)  # parses: no torn or interleaved content
    assert {k: e.macs for k, e in loaded.entries.items()} == {
        "test_a.py::test_a": macs_of(512),
        "test_b.py::test_b": macs_of(256),
    }
    assert path.read_text() == baseline.render(loaded.entries, loaded.meta)
    assert not list(pytester.path.glob(".flopbudget.toml.*.tmp"))
