"""Counting speed, side by side per case: this engine, a bare meta pass, torchprofile, FlopCounterMode.

Cases (batch 1):

  d16-forward   VAR-d16 transformer forward (256 px)
  d16-generate  VAR-d16 generation of one image (10 scales, KV cache, sampling, VQVAE decoder)
  scan          a Mamba-style selective scan as a per-step Python loop (2 layers, d_model 768, 256 steps)
  d16-real      VAR-d16 forward with real (random) weights, counted by this engine in a fresh
                process: the first meta operation of the process is included (compared with the
                d16-forward row's torchprofile, which runs the same real-weight model)
  d30-process   VAR-d30 whole process: python start, import, build on meta, count, exit

Methods, each in a fresh Python process (this script re-invoked with ``--child``), so the peak
RSS (``ru_maxrss``) is that method's:

  engine        ``count(model, args)`` with the defaults (the dispatch capture), model built on meta;
                the same process also times a bare meta pass (``model(*args)`` under no_grad, no
                counter) alternately with the count, best of N each: the "bare" column and the ratio
  trace         ``count(..., counter="trace")`` (the TorchScript trace capture), model on meta
  torchprofile  plain ``torchprofile.profile_macs`` on the real-weight CPU model
  flop_counter  plain ``torch.utils.flop_counter.FlopCounterMode`` on the real-weight CPU model

Run from the repository root::

    .venv/bin/python benchmarks/bench_cases.py [--repeat 3] [--cases d16-forward scan ...] [--real-generate]

The real-weight generation (torchprofile and FlopCounterMode on d16-generate) runs the whole VQVAE
decoder on the CPU; it is skipped unless ``--real-generate`` is given.
"""

from __future__ import annotations

import time

T_START = time.time()

import argparse
import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CASES = ("d16-forward", "d16-generate", "scan", "d16-real", "d30-process")
METHODS = ("engine", "trace", "torchprofile", "flop_counter")


# ---- models ------------------------------------------------------------------------------


def _scan_model(device: str) -> tuple[Any, tuple]:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class SelectiveScan(nn.Module):
        """One Mamba block's mixer, the scan written step by step as in transformers' slow path."""

        def __init__(self, d_model: int = 768, d_state: int = 16) -> None:
            super().__init__()
            d_inner, self.rank = 2 * d_model, d_model // 16
            self.d_state = d_state
            self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
            self.x_proj = nn.Linear(d_inner, self.rank + 2 * d_state, bias=False)
            self.dt_proj = nn.Linear(self.rank, d_inner)
            self.A_log = nn.Parameter(torch.zeros(d_inner, d_state))
            self.out_proj = nn.Linear(d_inner, d_model, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            hidden, gate = self.in_proj(x).chunk(2, dim=-1)
            dt, b, c = self.x_proj(hidden).split([self.rank, self.d_state, self.d_state], dim=-1)
            dt = F.softplus(self.dt_proj(dt))
            decay = torch.exp(dt[..., None] * -torch.exp(self.A_log))  # (B, L, D, N)
            drive = dt[..., None] * b[:, :, None, :] * hidden[..., None]
            state = x.new_zeros(x.shape[0], hidden.shape[-1], self.d_state)
            outputs = []
            for t in range(x.shape[1]):
                state = decay[:, t] * state + drive[:, t]
                outputs.append(torch.matmul(state, c[:, t, :, None]).squeeze(-1))
            y = torch.stack(outputs, dim=1) * F.silu(gate)
            return self.out_proj(y)

    with torch.device(device):
        model = nn.Sequential(SelectiveScan(), SelectiveScan()).eval()
        x = torch.zeros(1, 256, 768)
    return model, (x,)


def build(case: str, device: str) -> tuple[Any, tuple]:
    sys.path.insert(0, os.path.join(ROOT, "examples", "var"))
    from model import VARGenerate, build_released, build_vqvae, dummy_inputs

    if case == "scan":
        return _scan_model(device)
    name = "d30" if case == "d30-process" else "d16"
    labels, tokens, _ = dummy_inputs(256, device=device)
    if case == "d16-generate":
        return VARGenerate(build_vqvae(device=device), build_released(name, device=device)), (labels,)
    return build_released(name, device=device), (labels, tokens)


# ---- child: one method on one case -------------------------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _engine(model: Any, args: tuple, counter: str = "torchprofile") -> int:
    from pytest_flopbudget.engine.count import count

    return count(model, args, counter=counter).macs


def _torchprofile(model: Any, args: tuple) -> int:
    import warnings

    from torchprofile import profile_macs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return int(profile_macs(model, args))


def _flop_counter(model: Any, args: tuple) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as mode:
        model(*args)
    return mode.get_total_flops() // 2


COUNTERS: dict[str, Callable[..., int]] = {
    "engine": _engine,
    "trace": lambda model, args: _engine(model, args, "trace"),
    "torchprofile": _torchprofile,
    "flop_counter": _flop_counter,
}


def _bare(model: Any, args: tuple) -> float:
    import torch

    start = time.perf_counter()
    with torch.no_grad():
        model(*args)
    return time.perf_counter() - start


def run_child(method: str, case: str, repeat: int) -> None:
    t0 = time.perf_counter()
    import torch  # noqa: F401

    import pytest_flopbudget.engine.count  # noqa: F401

    t1 = time.perf_counter()
    real = method in ("torchprofile", "flop_counter") or case == "d16-real"
    model, args = build(case, "cpu" if real else "meta")
    t2 = time.perf_counter()
    macs = COUNTERS[method](model, args)
    first = time.perf_counter() - t2
    counts, bares = [first], []
    if case not in ("d16-real", "d30-process") and method in ("engine", "trace"):
        for _ in range(repeat):
            bares.append(_bare(model, args))
            start = time.perf_counter()
            if COUNTERS[method](model, args) != macs:
                raise RuntimeError("a second count differs")
            counts.append(time.perf_counter() - start)
    # count / bare of each repetition (measured back to back): a machine whose speed drifts moves both alike
    pairs = sorted(c / b for c, b in zip(counts[1:], bares))
    print(json.dumps({"import_s": t1 - t0, "build_s": t2 - t1, "first_s": first, "count_s": min(counts),
                      "bare_s": min(bares) if bares else None, "pairs": pairs, "macs": macs, "rss_mb": _peak_rss_mb(),
                      "dynamo": "torch._dynamo" in sys.modules, "sympy": "sympy" in sys.modules, "start_ts": T_START, "end_ts": time.time()}),
          flush=True)


# ---- parent ---------------------------------------------------------------------------------


def measure(method: str, case: str, repeat: int) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", method, case, "--repeat", str(repeat)]
    launched = time.time()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{method} {case} failed:\n{proc.stderr[-3000:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    data["wall_s"] = wall
    data["startup_s"] = data.pop("start_ts") - launched
    data["exit_s"] = time.time() - data.pop("end_ts")
    return data


def _cell(m: dict[str, Any] | None, first: bool = False) -> str:
    if m is None:
        return "skipped"
    seconds = m["first_s"] if first else m["count_s"]
    return f"{seconds:.2f} s, {m['rss_mb']:.0f} MB"


def _row(cells: list[str]) -> None:
    print("| " + " | ".join(cells) + " |")


def _ratio(m: dict[str, Any]) -> str:
    """best count / best bare pass of the method's own process, then the median and range of the
    ratios of the repetitions, each a count and a bare pass measured back to back."""
    pairs = m["pairs"]
    text = f"{m['count_s'] / m['bare_s']:.2f}x"
    if len(pairs) > 1:
        text += f" (pairs: median {pairs[len(pairs) // 2]:.2f}x, {pairs[0]:.2f}-{pairs[-1]:.2f})"
    return text


def report(results: dict[str, dict[str, Any]]) -> None:
    print("## Count time (best of N in one process; first call for d16-real) and process peak RSS\n")
    print("Ratios: best count / best bare pass in the same process; in parentheses the median and range of\n"
          "count / bare over the repetitions, each pair measured back to back.\n")
    _row(["case", "this engine (default)", "bare meta pass", "engine / bare", "trace capture",
          "trace / bare", "torchprofile, real", "FlopCounterMode, real", "GMACs (engine, trace, torchprofile, FlopCounterMode)"])
    _row(["---"] * 9)
    for case, row in results.items():
        if case == "d30-process":
            continue
        eng, disp = row.get("engine"), row.get("trace")
        first = case == "d16-real"
        bare = eng["bare_s"] if eng and eng["bare_s"] else None
        ratio = lambda m: _ratio(m) if m and m["bare_s"] else "-"  # noqa: E731
        macs = ", ".join("-" if row.get(m) is None else f"{row[m]['macs'] / 1e9:.2f}" for m in METHODS)
        _row([case, _cell(eng, first), f"{bare:.2f} s" if bare else "-", ratio(eng), _cell(disp, first),
              ratio(disp), _cell(row.get("torchprofile")), _cell(row.get("flop_counter")), macs])
    real = results.get("d16-real", {}).get("engine")
    plain = results.get("d16-forward", {}).get("torchprofile")
    if real and plain:
        print(f"\nd16 real weights, first call in a fresh process: this engine {real['first_s']:.2f} s, "
              f"torchprofile.profile_macs (d16-forward row) {plain['count_s']:.2f} s: {plain['count_s'] / real['first_s']:.1f}x "
              f"(torch._dynamo imported: {real['dynamo']}, sympy imported: {real['sympy']})")
    d30 = results.get("d30-process", {}).get("engine")
    if d30:
        print(f"\nd30 whole process (meta): wall {d30['wall_s']:.2f} s = start {d30['startup_s']:.2f} + import "
              f"{d30['import_s']:.2f} + build {d30['build_s']:.2f} + count {d30['first_s']:.2f} + exit "
              f"{d30['exit_s']:.2f}; peak RSS {d30['rss_mb']:.0f} MB; torch._dynamo imported: {d30['dynamo']}, sympy "
              f"imported: {d30['sympy']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--repeat", type=int, default=3, help="count/bare rounds per engine process (best of N)")
    parser.add_argument("--real-generate", action="store_true", help="also run torchprofile/FlopCounterMode on the real-weight generation")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child[0], args.child[1], args.repeat)
        return
    from importlib.metadata import version

    print(f"# {time.strftime('%Y-%m-%d %H:%M')} UTC | {os.cpu_count()} CPUs | load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} | torch {version('torch')}\n")
    results: dict[str, dict[str, Any]] = {}
    for case in args.cases:
        methods = {"d30-process": ["engine"], "d16-real": ["engine"]}.get(case, list(METHODS))
        if case == "d16-generate" and not args.real_generate:
            methods = ["engine", "trace"]
        results[case] = {m: measure(m, case, args.repeat) for m in methods}
        print(f"  measured {case}", file=sys.stderr, flush=True)
    report(results)
    print(f"\nload average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
