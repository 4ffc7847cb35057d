"""What counting memory costs: VAR d16 (batch 1, 256 px), forward and training step, in one process.

For each case, the best of N runs of:

  flops      the count with the memory hooks stubbed out (bytes moved not recorded): the FLOP count alone
  +bytes     the default count: bytes moved per operator recorded (``FlopResult.costs``)
  +peak      ``memory=True``: bytes moved and peak memory (storage liveness)

and the ratios to ``flops``. The target: counting memory costs at most 1.3x the FLOP count alone.

Run from the repository root::

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_memory.py [--depth 16] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = 1.3


@contextmanager
def _no_bytes() -> Iterator[None]:
    """Stub the per-operator byte hooks of both captures (the FLOP count as it was before memory)."""
    from pytest_flopbudget.engine.capture import dispatch, trace

    saved = trace.node_bytes, dispatch.call_bytes
    trace.node_bytes = lambda *a: None  # type: ignore[assignment]
    dispatch.call_bytes = lambda *a: None  # type: ignore[assignment]
    try:
        yield
    finally:
        trace.node_bytes, dispatch.call_bytes = saved


def _best(fn: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    opts = parser.parse_args()
    sys.path.insert(0, os.path.join(ROOT, "examples", "var"))
    import torch
    from model import build_released, dummy_inputs

    from pytest_flopbudget.engine.capture.training import count_train_step
    from pytest_flopbudget.engine.count import count, warm_up

    warm_up()
    model = build_released(f"d{opts.depth}", device="meta")
    labels, tokens, _ = dummy_inputs(resolution=256, batch=1, device="meta")
    cases: dict[str, Callable[[bool], Any]] = {
        "forward (default)": lambda memory: count(model, (labels, tokens), memory=memory),
        "forward (trace)": lambda memory: count(model, (labels, tokens), counter="trace", memory=memory),
        "training step, AdamW": lambda memory: count_train_step(
            model, (labels, tokens), optimizer=lambda p: torch.optim.AdamW(p), memory=memory),
    }
    print(f"VAR d{opts.depth}, batch 1, 256 px; best of {opts.repeat}; torch {torch.__version__}")
    print(f"{'case':<24} {'flops s':>9} {'+bytes s':>9} {'ratio':>6} {'+peak s':>9} {'ratio':>6}  peak MiB / bytes moved GB")
    for name, run in cases.items():
        run(True)  # warm
        with _no_bytes():
            alone = _best(lambda run=run: run(False), opts.repeat)
        moved = _best(lambda run=run: run(False), opts.repeat)
        peak = _best(lambda run=run: run(True), opts.repeat)
        result = run(True)
        print(f"{name:<24} {alone:9.3f} {moved:9.3f} {moved / alone:6.2f} {peak:9.3f} {peak / alone:6.2f}  "
              f"{result.peak_bytes / 2**20:.1f} / {result.bytes_moved / 1e9:.3f}")
    print(f"target: +bytes (the default) <= {TARGET}x; +peak is opt-in (memory=True)")


if __name__ == "__main__":
    main()
