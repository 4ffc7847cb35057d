"""Time and peak memory of counting VAR transformer training forwards (batch 1, 256 px).

Four methods, each measured in a fresh subprocess (this script re-invoked with
the hidden ``--child`` argument), so the peak RSS is that one method's:

  meta          this engine, model built on the meta device (``count(...)`` default)
  engine-real   this engine on a real-weight CPU model (random init)
  torchprofile  plain ``torchprofile.profile_macs`` on the real-weight CPU model
  flop_counter  plain ``torch.utils.flop_counter.FlopCounterMode`` on the same model

Run from the repository root::

    .venv/bin/python benchmarks/bench_counting.py [--depths 16 20 24 30] [--real-depths 16 20] [--repeat 3]
"""

from __future__ import annotations

import time

T_START = time.time()  # first thing this process does: the parent derives python start-up from it

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("meta", "engine-real", "torchprofile", "flop_counter")
TARGET_WALL_S = 2.0
TARGET_RSS_MB = 400.0
TARGET_SPEEDUP = 10.0


# ---- child: one measurement ---------------------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _build(depth: int, device: str) -> tuple[Any, tuple[Any, Any]]:
    sys.path.insert(0, os.path.join(ROOT, "examples", "var"))
    from model import build_released, dummy_inputs

    model = build_released(f"d{depth}", device=device)
    labels, tokens, _images = dummy_inputs(resolution=256, batch=1, device=device)
    return model, (labels, tokens)


def _engine(model: Any, inputs: tuple[Any, Any]) -> int:
    from pytest_flopbudget.engine.count import count

    return count(model, inputs).macs


def _torchprofile(model: Any, inputs: tuple[Any, Any]) -> int:
    import warnings

    from torchprofile import profile_macs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No handlers found" for every unpriced operator
        return int(profile_macs(model, inputs))


def _flop_counter(model: Any, inputs: tuple[Any, Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as mode:
        model(*inputs)
    return mode.get_total_flops() // 2


COUNTERS: dict[str, Callable[[Any, tuple[Any, Any]], int]] = {
    "meta": _engine,
    "engine-real": _engine,
    "torchprofile": _torchprofile,
    "flop_counter": _flop_counter,
}


def run_child(method: str, depth: int) -> None:
    """Import, build, count once; print one JSON line of timings and the process peak RSS."""
    t0 = time.perf_counter()
    import torch  # noqa: F401  (timed: part of the whole process)

    import pytest_flopbudget.engine.count  # noqa: F401

    t1 = time.perf_counter()
    model, inputs = _build(depth, "meta" if method == "meta" else "cpu")
    rss_built = _peak_rss_mb()
    dynamo_at_build = "torch._dynamo" in sys.modules
    t2 = time.perf_counter()
    macs = COUNTERS[method](model, inputs)
    t3 = time.perf_counter()
    dynamo = "build" if dynamo_at_build else "count" if "torch._dynamo" in sys.modules else "never"
    warm = _warm_call(method, model, inputs, macs)
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"import_s": t1 - t0, "build_s": t2 - t1, "count_s": t3 - t2, "warm_s": warm,
                      "macs": macs, "params": params, "rss_built_mb": rss_built, "rss_mb": _peak_rss_mb(),
                      "dynamo": dynamo, "start_ts": T_START, "end_ts": time.time()}), flush=True)


def _warm_call(method: str, model: Any, inputs: tuple[Any, Any], macs: int) -> float | None:
    """A second count in the same process (engine only: the baselines' second real forward is too slow)."""
    if method not in ("meta", "engine-real"):
        return None
    start = time.perf_counter()
    if COUNTERS[method](model, inputs) != macs:
        raise RuntimeError("second count differs")
    return time.perf_counter() - start


# ---- parent: many measurements ------------------------------------------------


@dataclass
class Measure:
    wall_s: float
    cpu_s: float
    startup_s: float
    import_s: float
    build_s: float
    count_s: float
    warm_s: float | None
    teardown_s: float
    rss_mb: float
    rss_built_mb: float
    dynamo: str
    macs: int
    params: int


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_once(method: str, depth: int) -> Measure:
    """One fresh python process; its wall time is taken here, around the whole subprocess."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", method, str(depth)]
    cpu_before = _children_cpu_s()
    launched, start = time.time(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall, ended = time.perf_counter() - start, time.time()
    cpu = _children_cpu_s() - cpu_before
    if proc.returncode != 0:
        raise RuntimeError(f"{method} d{depth} failed:\n{proc.stderr[-3000:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return Measure(wall_s=wall, cpu_s=cpu, startup_s=data.pop("start_ts") - launched, teardown_s=ended - data.pop("end_ts"),
                   **data)


def best_of(runs: list[Measure]) -> Measure:
    """Best-of-N per field: timings are noisy on a shared machine; peak RSS barely varies."""
    def low(field: str) -> Any:
        values = [getattr(r, field) for r in runs]
        return None if None in values else min(values)

    fields = [f for f in Measure.__dataclass_fields__ if f not in ("macs", "params", "dynamo")]
    return Measure(**{f: low(f) for f in fields}, macs=runs[0].macs, params=runs[0].params, dynamo=runs[0].dynamo)


def measure(method: str, depth: int, repeat: int) -> Measure:
    runs = [measure_once(method, depth) for _ in range(repeat)]
    if len({r.macs for r in runs}) != 1:
        raise RuntimeError(f"{method} d{depth}: MACs differ between runs")
    return best_of(runs)


# ---- report ---------------------------------------------------------------------

Table = dict[int, dict[str, Measure | None]]


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _cell(m: Measure | None) -> str:
    if m is None:
        return "skipped"
    warm = f" ({m.warm_s:.2f})" if m.warm_s is not None else ""
    return f"{m.count_s:.2f}{warm} s, {m.rss_mb:.0f} MB"


def _ratio(base: Measure | None, fast: Measure | None, warm: bool = False) -> str:
    if base is None or fast is None:
        return "-"
    return f"{base.count_s / (fast.warm_s if warm else fast.count_s):.1f}x"


def _row(cells: list[str]) -> None:
    print("| " + " | ".join(cells) + " |")


def _header(cells: list[str]) -> None:
    _row(cells)
    print("|" + "|".join("---" for _ in cells) + "|")


def print_times(table: Table) -> None:
    print("## Count call: first call in a fresh process (second call in parentheses), process peak RSS\n")
    _header(["depth", "params", "(1) engine, meta model", "(2) engine, real weights", "(3) torchprofile, real",
             "(4) FlopCounterMode, real", "(3)/(1)", "(3)/(2)", "(3)/(2) 2nd call"])
    for depth, row in table.items():
        meta = row["meta"]
        _row([f"d{depth}", f"{meta.params / 1e9:.2f} B" if meta else "-",
              *(_cell(row[m]) for m in METHODS),
              _ratio(row["torchprofile"], meta), _ratio(row["torchprofile"], row["engine-real"]),
              _ratio(row["torchprofile"], row["engine-real"], warm=True)])


def _dynamo_phases(table: Table) -> str:
    return ", ".join(f"{m} d{d} {row[m].dynamo}" for d, row in table.items() for m in ("meta", "engine-real")
                     if row[m] is not None)


def print_process(table: Table) -> None:
    print("\n## (1) whole process, model built on meta: wall time by phase (s) and peak RSS\n")
    _header(["depth", "wall", "CPU (user+sys)", "python start", "import torch + engine", "build (meta)", "count", "exit",
             "peak RSS"])
    for depth, row in table.items():
        m = row["meta"]
        _row([f"d{depth}", *(_secs(v) for v in (m.wall_s, m.cpu_s, m.startup_s, m.import_s, m.build_s, m.count_s,
                                                 m.teardown_s)), f"{m.rss_mb:.0f} MB"])
    print(f"\ntorch._dynamo (~0.8 s to import) is loaded lazily by torch's first Python meta kernel"
          f" (torch._disable_dynamo); it happened during: {_dynamo_phases(table)}.")
    real = [(d, r["engine-real"]) for d, r in table.items() if r["engine-real"]]
    if real:
        print("\nBuilding the real-weight model (random init), not in any 'call' above: "
              + ", ".join(f"d{d} {m.build_s:.1f} s, {m.rss_built_mb:.0f} MB RSS after build" for d, m in real))


def print_macs(table: Table) -> None:
    print("\n## GMACs reported (1 MAC = 2 FLOPs)\n")
    _header(["depth", *METHODS])
    for depth, row in table.items():
        _row([f"d{depth}", *("-" if row[m] is None else f"{row[m].macs / 1e9:.2f}" for m in METHODS)])
    print("\nFlopCounterMode prices CPU scaled_dot_product_attention at 0, hence its lower count.")


def target_d30(table: Table) -> str:
    d30 = table.get(30, {}).get("meta")
    head = f"d30 meta, whole process <= {TARGET_WALL_S:.0f} s and < {TARGET_RSS_MB:.0f} MB"
    if d30 is None:
        return f"{head}: not measured (add 30 to --depths)"
    ok = d30.wall_s <= TARGET_WALL_S and d30.rss_mb < TARGET_RSS_MB
    return f"{head}: {'MET' if ok else 'NOT MET'} ({d30.wall_s:.2f} s, {d30.rss_mb:.0f} MB)"


def target_d16(table: Table) -> str:
    row = table.get(16, {})
    base, eng, meta = row.get("torchprofile"), row.get("engine-real"), row.get("meta")
    head = f"d16 >= {TARGET_SPEEDUP:.0f}x faster than torchprofile.profile_macs"
    if base is None or eng is None or meta is None:
        return f"{head}: not measured (add 16 to --depths and --real-depths)"
    real, cold_meta = base.count_s / eng.count_s, base.count_s / meta.count_s
    ok = "MET" if real >= TARGET_SPEEDUP else "NOT MET"
    return (f"{head}: real-weight model {ok} ({base.count_s:.2f} s vs {eng.count_s:.2f} s = {real:.1f}x; "
            f"second call {base.count_s / eng.warm_s:.1f}x); meta-built model "
            f"{'MET' if cold_meta >= TARGET_SPEEDUP else 'NOT MET'} ({cold_meta:.1f}x)")


def print_report(table: Table) -> None:
    print_times(table)
    print_process(table)
    print_macs(table)
    print("\n## Targets (best of N)\n")
    print(f"- {target_d30(table)}")
    print(f"- {target_d16(table)}")


def run_all(depths: list[int], real_depths: list[int], repeat: int, baseline_repeat: int) -> Table:
    table: Table = {}
    for depth in depths:
        table[depth] = {}
        for method in METHODS:
            if method != "meta" and depth not in real_depths:
                table[depth][method] = None
                continue
            runs = repeat if method in ("meta", "engine-real") else baseline_repeat
            table[depth][method] = measure(method, depth, runs)
            print(f"  measured d{depth} {method}", file=sys.stderr, flush=True)
    return table


def machine_line() -> str:
    from importlib.metadata import version

    cpu = platform.processor() or platform.machine()
    return (f"# {time.strftime('%Y-%m-%d %H:%M')} | {cpu}, {os.cpu_count()} CPUs | "
            f"python {platform.python_version()} | torch {version('torch')} | torchprofile {version('torchprofile')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", type=int, nargs="+", default=[16, 20, 24, 30])
    parser.add_argument("--real-depths", type=int, nargs="*", default=[16, 20],
                        help="depths that also get the real-weight columns (d30 needs ~8 GB fp32)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per engine measurement (best of N)")
    parser.add_argument("--baseline-repeat", type=int, default=1,
                        help="runs per torchprofile / FlopCounterMode measurement (real forwards, slow)")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "DEPTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child[0], int(args.child[1]))
        return
    print(machine_line() + "\n")
    print_report(run_all(args.depths, args.real_depths, args.repeat, args.baseline_repeat))


if __name__ == "__main__":
    main()
