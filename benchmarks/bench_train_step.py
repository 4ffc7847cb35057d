"""Time and peak memory of counting one VAR training step on meta (batch 1, 256 px).

The step of ``examples/var``'s ``test_train_step``: frozen VQVAE codes and teacher-forcing
input, transformer forward, weighted cross-entropy, backward, one fused AdamW step. Each
depth runs in a fresh subprocess (this script re-invoked with ``--child``), so its peak RSS
is that one count's (python, torch and the model on meta included). The time is the
count alone: torch's first-use imports happen in a warm-up before the clock starts.

Run from the repository root::

    .venv/bin/python benchmarks/bench_train_step.py [--depths 16 20 24 30]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(depth: int) -> dict:
    sys.path.insert(0, os.path.join(ROOT, "examples", "var"))
    from model import (
        VARTrainStep,
        build_released,
        build_vqvae,
        dummy_inputs,
        var_optimizer,
    )

    from pytest_flopbudget import measure_train_step
    from pytest_flopbudget.engine.count import warm_up

    warm_up()  # torch's lazy imports (dispatch modes, meta kernels) happen before the clock starts
    start = time.perf_counter()
    var = build_released(f"d{depth}")
    step = VARTrainStep(build_vqvae(), var)
    labels, _, images = dummy_inputs(256)
    built = time.perf_counter()
    result = measure_train_step(step, images, labels, optimizer=var_optimizer(var))
    done = time.perf_counter()
    return {
        "depth": depth,
        "build_s": built - start,
        "count_s": done - built,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "params": sum(p.numel() for p in var.parameters()),
        "phases_gflops": {phase: 2 * macs / 1e9 for phase, macs in result.phases.items()},
        "gflops": result.gflops,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[16, 20, 24, 30])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child)))
        return
    print(f"{'model':<6} {'params':>14} {'count s':>8} {'peak RSS MB':>12} {'forward':>10} {'backward':>10} {'optimizer':>10} {'step GFLOPs':>12}")
    for depth in args.depths:
        out = subprocess.run([sys.executable, __file__, "--child", str(depth)], capture_output=True, text=True, check=True, cwd=ROOT)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        phases = row["phases_gflops"]
        print(
            f"d{depth:<5} {row['params']:>14,} {row['count_s']:>8.2f} {row['peak_rss_mb']:>12.0f} "
            f"{phases['forward']:>10,.1f} {phases['backward']:>10,.1f} {phases['optimizer']:>10,.2f} {row['gflops']:>12,.1f}"
        )


if __name__ == "__main__":
    main()
