"""Crash safety and locking of baseline.save, with real child processes (POSIX only)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_flopbudget.baseline import store as baseline

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from baseline_writer import META, make_entries

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and flock are POSIX")

WRITER = Path(__file__).resolve().parents[1] / "baseline_writer.py"
LARGE = 5000


def start(path: Path, tag: str, count: int, *extra: str) -> subprocess.Popen:
    args = [sys.executable, str(WRITER), str(path), tag, str(count), *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(flag: Path, child: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not flag.exists():
        if child.poll() is not None:
            raise AssertionError(f"child exited early ({child.returncode}): {child.stderr.read()}")
        if time.monotonic() > deadline:
            child.kill()
            raise AssertionError(f"child never reached {flag.name}")
        time.sleep(0.01)


def finish(child: subprocess.Popen) -> str:
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    return out


def temp_files(directory: Path, name: str) -> list[Path]:
    return sorted(directory.glob(f".{name}.*.tmp"))


@pytest.fixture
def old(tmp_path: Path) -> Path:
    path = tmp_path / "flopbudget.toml"
    assert baseline.save(path, make_entries("old", 3), META)
    return path


@pytest.mark.parametrize("stop_at", ["write", "fsync", "replace"])
def test_sigkill_mid_save_keeps_old_file(old: Path, tmp_path: Path, stop_at: str) -> None:
    before = old.read_bytes()
    signals = tmp_path / "signals"
    signals.mkdir()
    child = start(old, "new", LARGE, stop_at, str(signals))
    wait_for(signals / "ready", child)

    [temp] = temp_files(tmp_path, old.name)  # the child is stuck with its temp file open
    full = len(baseline.render(make_entries("new", LARGE), META).encode())
    if stop_at == "write":
        assert 0 < temp.stat().st_size < full
    else:
        assert temp.stat().st_size == full
    assert old.read_bytes() == before

    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL

    assert old.read_bytes() == before
    loaded = baseline.load(old)
    assert loaded.entries == make_entries("old", 3)
    assert loaded.meta == {"schema": 1, **META}

    # The next save cleans up the dead writer's temp file and writes normally.
    assert baseline.save(old, make_entries("next", 2), META)
    assert baseline.load(old).entries == make_entries("next", 2)
    assert temp_files(tmp_path, old.name) == []


def test_lock_serializes_two_writers(old: Path, tmp_path: Path) -> None:
    """A holds the lock (stopped just before os.replace); B must wait for it, then write its own content."""
    before = old.read_bytes()
    signals = tmp_path / "signals"
    signals.mkdir()
    first = start(old, "aaa", 200, "hold", str(signals))
    wait_for(signals / "ready", first)
    second = start(old, "bbb", 200)

    time.sleep(0.7)
    assert second.poll() is None, "second writer did not wait for the lock"
    assert old.read_bytes() == before

    (signals / "go").touch()
    assert finish(first).split() == ["written"]
    assert finish(second).split() == ["written"]
    assert old.read_bytes() == baseline.render(make_entries("bbb", 200), META).encode()
    assert temp_files(tmp_path, old.name) == []


def test_concurrent_writers_never_interleave(old: Path, tmp_path: Path) -> None:
    """Two processes save different large baselines over and over; readers only ever see whole files."""
    texts = {baseline.render(make_entries(tag, 1000), META).encode() for tag in ("left", "right")}
    writers = [start(old, tag, 1000, "none", str(tmp_path), "8") for tag in ("left", "right")]
    start_text = old.read_bytes()
    while any(w.poll() is None for w in writers):
        assert old.read_bytes() in texts | {start_text}
        baseline.load(old)  # always parses
        time.sleep(0.005)
    for writer in writers:
        assert "written" in finish(writer)
    assert old.read_bytes() in texts
    assert temp_files(tmp_path, old.name) == []
