"""Child process for tests/test_baseline_crash.py: save a baseline, optionally stopping mid-save.

Usage: python baseline_writer.py PATH TAG N [STOP_AT SIGNAL_DIR] [REPEAT]

Saves ``make_entries(TAG, N)`` to PATH (REPEAT times). STOP_AT patches one
step of the save so the child can be caught there:

- ``write``: write half of the temporary file, create SIGNAL_DIR/ready, sleep forever
- ``fsync``: create SIGNAL_DIR/ready just before fsync of the full temp file, sleep forever
- ``replace``: create SIGNAL_DIR/ready just before os.replace, sleep forever
- ``hold``: create SIGNAL_DIR/ready just before os.replace (lock held), wait for SIGNAL_DIR/go, go on
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from pytest_flopbudget.baseline import store as baseline

META = {"counter": "torchprofile", "torch": "test"}


def make_entries(tag: str, count: int) -> dict[str, baseline.Entry]:
    """``count`` entries whose ids and numbers depend on ``tag``."""
    seed = sum(map(ord, tag))
    return {
        f"tests/test_{tag}.py::test_model[{i}]": baseline.Entry(
            macs=seed * 1_000_003 + i, modules={f"blocks.{j}.attn": seed + i + j for j in range(3)}
        )
        for i in range(count)
    }


def _signal(directory: Path, name: str) -> None:
    (directory / name).write_text(str(os.getpid()))


def _sleep_forever(*_args: object) -> None:
    while True:
        time.sleep(60)


def _stop_in_write(directory: Path) -> None:
    real_write = os.write

    def half_write(fd: int, data: bytes) -> int:
        written = real_write(fd, bytes(data[: len(data) // 2]))
        os.fsync(fd)  # make the half-written temp file visible to the parent's checks
        _signal(directory, "ready")
        _sleep_forever()
        return written

    os.write = half_write


def _stop_before(name: str, directory: Path) -> None:
    def stop(*_args: object) -> None:
        _signal(directory, "ready")
        _sleep_forever()

    setattr(os, name, stop)


def _hold_before_replace(directory: Path) -> None:
    real_replace = os.replace

    def hold(src: object, dst: object) -> None:
        _signal(directory, "ready")
        while not (directory / "go").exists():
            time.sleep(0.01)
        real_replace(src, dst)

    os.replace = hold


def _install(stop_at: str, directory: Path) -> None:
    if stop_at == "write":
        _stop_in_write(directory)
    elif stop_at in ("fsync", "replace"):
        _stop_before(stop_at, directory)
    elif stop_at == "hold":
        _hold_before_replace(directory)


def main(argv: list[str]) -> None:
    path, tag, count = Path(argv[0]), argv[1], int(argv[2])
    if len(argv) > 4:
        _install(argv[3], Path(argv[4]))
    repeat = int(argv[5]) if len(argv) > 5 else 1
    entries = make_entries(tag, count)
    for _ in range(repeat):
        print("written" if baseline.save(path, entries, META) else "unchanged", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
