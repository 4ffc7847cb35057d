"""Run the model zoo: every model counted in its own process, the table written to docs/zoo.md.

    python -m zoo.run                       # the whole zoo, two workers
    python -m zoo.run --only timm/vit_* --only llama --jobs 1
    python -m zoo.run --list

Each model runs in a worker process (``zoo.worker``) with a time limit and a memory limit: a
segmentation fault, a hang or a runaway allocation is a row marked ``crash``, ``timeout`` or ``oom``,
never the end of the run. The worker counts with the default ``measure`` and compares the model (every
attribute, recursively) before and after the count. Results go to ``zoo/results.json`` (merged with
the rows already there unless ``--fresh``) and the table to ``docs/zoo.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from . import registry
from .common import VERSION_ONLY

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "zoo" / "results.json"
DOCS = ROOT / "docs" / "zoo.md"
DEFAULT_TIMEOUT_S = 300
DEFAULT_MAX_RSS_GB = 6.0
LIBRARIES = ("torch", "torchvision", "timm", "transformers", "diffusers", "pytest-flopbudget")

# Status of a row, most severe first (the row takes the first that applies).
STATUSES = ("crash", "timeout", "oom", "damaged", "touched", "unpriced", "error", "zero", "build-error", "skipped", "ok")


def versions() -> dict[str, str]:
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "not installed"
    return out


def git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except Exception:
        return "?"


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Job:
    """One worker process."""

    def __init__(self, entry: registry.Entry, tmp: Path, timeout: float, max_rss: float, quick: bool = False) -> None:
        self.entry = entry
        safe = entry.name.replace("/", "__")
        self.result_path = tmp / f"{safe}.json"
        self.stderr_path = tmp / f"{safe}.stderr"
        self.timeout = timeout
        self.max_rss = max_rss
        self.killed: str | None = None
        self.peak_rss = 0
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        # Nothing is downloaded: every model is built from a config in this repository.
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                   OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"), TOKENIZERS_PARALLELISM="false",
                   PYTHONFAULTHANDLER="1", ZOO_QUICK="1" if quick else "0")
        self.stderr = open(self.stderr_path, "w")
        self.start = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zoo.worker", entry.name, str(self.result_path)],
            cwd=str(ROOT), env=env, stdout=subprocess.DEVNULL, stderr=self.stderr, start_new_session=True,
        )

    def poll(self) -> bool:
        """True when the worker has ended (killed here on its time or memory limit)."""
        if self.proc.poll() is not None:
            return True
        rss = _rss_bytes(self.proc.pid)
        self.peak_rss = max(self.peak_rss, rss)
        if rss > self.max_rss:
            self.kill("oom")
        elif time.monotonic() - self.start > self.timeout:
            self.kill("timeout")
        return self.proc.poll() is not None

    def kill(self, why: str) -> None:
        self.killed = why
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def row(self) -> dict:
        self.stderr.close()
        wall = time.monotonic() - self.start
        try:
            raw = json.loads(self.result_path.read_text())
        except (OSError, ValueError):
            raw = {}
        stderr = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return make_row(self.entry, raw, self.proc.returncode, self.killed, stderr, wall, self.peak_rss)


def snapshot_version_only(line: str) -> bool:
    return line.endswith(VERSION_ONLY)


def _signal_name(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f"signal {-rc}"


def _tail(text: str, lines: int = 30) -> str:
    kept = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(kept[-lines:])


def _first_line(error: dict | None) -> str:
    if not error:
        return ""
    message = error.get("message", "").strip().splitlines()
    return f"{error['type']}: {message[0] if message else ''}"[:400]


def make_row(entry: registry.Entry, raw: dict, rc: int | None, killed: str | None, stderr: str,
             wall: float, peak_rss: int) -> dict:
    row: dict[str, Any] = {
        "name": entry.name, "model": entry.name.split("/", 1)[1], "family": entry.family, "group": entry.group,
        "note": entry.note, "published": raw.get("published"), "published_source": raw.get("published_source"),
        "wall_s": round(wall, 2), "peak_rss_mb": round(peak_rss / 2**20), "stage": raw.get("stage"),
        "rc": rc,
    }
    for key in ("macs", "published_macs", "by_category", "top_operators", "unpriced", "notes", "counter",
                "capture", "mode", "count_s", "count_warm_s", "bare_s", "bare_cold_s", "build_s", "build_method",
                "build_tried", "snapshot_s", "snapshot_entries", "params", "damage", "damage_warn", "damage_warm",
                "count_error", "warn_error", "warm_error", "bare_error", "build_error", "skipped", "warn_result",
                "torch_version"):
        if key in raw and raw[key] not in (None, [], {}):
            row[key] = raw[key]
    if row.get("count_s") is not None and row.get("bare_s"):
        row["ratio"] = row["count_s"] / row["bare_s"]
    damage = list(raw.get("damage") or []) + [f"(after the warn count) {d}" for d in raw.get("damage_warn") or []]
    damage += [f"(after a second count) {d}" for d in raw.get("damage_warm") or []]
    row["damage_all"] = damage

    detail = ""
    if killed == "timeout":
        status, detail = "timeout", f"killed after {wall:.0f} s in stage {raw.get('stage')!r}"
    elif killed == "oom":
        status, detail = "oom", f"killed over {peak_rss / 2**30:.1f} GiB in stage {raw.get('stage')!r}"
    elif rc is not None and rc < 0:
        status, detail = "crash", f"{_signal_name(rc)} in stage {raw.get('stage')!r}"
    elif rc not in (0, None) or raw.get("stage") != "done":
        status, detail = "crash", f"exit code {rc} in stage {raw.get('stage')!r}"
    elif raw.get("skipped"):
        status, detail = "skipped", raw["skipped"]
    elif raw.get("build_error"):
        status, detail = "build-error", _first_line(raw["build_error"])
    elif damage and all(snapshot_version_only(d) for d in damage):
        status, detail = "touched", f"version counters only; first: {damage[0]}"
    elif damage:
        status, detail = "damaged", damage[0]
    elif (raw.get("count_error") or {}).get("type") == "UnpricedOperatorError":
        status, detail = "unpriced", _first_line(raw["count_error"])
    elif raw.get("count_error"):
        status, detail = "error", _first_line(raw["count_error"])
    elif not raw.get("macs"):
        status, detail = "zero", "the count is 0 MACs"
    else:
        status = "ok"
    if status == "damaged" and raw.get("count_error"):
        detail += f"; the count also failed: {_first_line(raw['count_error'])}"
    if status in ("crash", "timeout", "oom"):
        row["stderr_tail"] = _tail(stderr)
    row["status"] = status
    row["detail"] = detail

    flags = []
    if row.get("ratio") is not None and row["ratio"] > 1.0:
        flags.append("slow")
    if row.get("mode") == "real":
        flags.append("real-pass")
    if raw.get("bare_error"):
        flags.append("bare-forward-failed")
    published, ours = row.get("published"), row.get("published_macs")
    if published and ours:
        row["published_delta_pct"] = 100.0 * (ours / 1e9 - published) / published
        # off by more than 2% beyond the rounding of the printed figure
        digits = len(repr(float(published)).split(".")[1])
        if abs(ours / 1e9 - published) > 0.02 * published + 0.5 * 10 ** -digits:
            flags.append("off-published")
    if row.get("unpriced"):
        flags.append("unpriced-ops")
    row["flags"] = flags
    return row


def run_entries(entries: list[registry.Entry], jobs: int = 2, timeout: float = DEFAULT_TIMEOUT_S,
                max_rss_gb: float = DEFAULT_MAX_RSS_GB, progress: bool = True, quick: bool = False) -> list[dict]:
    """Run each entry in its own worker process, at most ``jobs`` at once; one row per entry, in order.
    ``quick``: count and compare only (no timings)."""
    rows: dict[str, dict] = {}
    pending = list(entries)
    running: list[Job] = []
    with tempfile.TemporaryDirectory(prefix="zoo-") as tmp:
        while pending or running:
            while pending and len(running) < max(1, jobs):
                running.append(Job(pending.pop(0), Path(tmp), timeout, max_rss_gb * 2**30, quick))
            time.sleep(0.2)
            for job in list(running):
                if job.poll():
                    running.remove(job)
                    row = job.row()
                    rows[row["name"]] = row
                    if progress:
                        print(_progress_line(row, len(rows), len(entries)), flush=True)
    return [rows[e.name] for e in entries]


def _progress_line(row: dict, done: int, total: int) -> str:
    macs = f"{row['macs'] / 1e9:.3f} GMACs" if row.get("macs") else "-"
    ratio = f" ratio {row['ratio']:.2f}" if row.get("ratio") is not None else ""
    detail = f"  {row['detail'][:150]}" if row.get("detail") else ""
    return f"[{done}/{total}] {row['name']}: {row['status']} {macs}{ratio} ({row['wall_s']:.1f} s){detail}"


# ---- output -------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: list[dict]) -> str:
    head = ("| model | family | GMACs | matmul/conv GMACs | published | time (s) | second count (s) | bare meta (s) "
            "| ratio | capture | unpriced | status |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        published = ""
        if r.get("published") is not None:
            published = f"{r['published']:g}"
            if r.get("published_delta_pct") is not None:
                published += f" ({r['published_delta_pct']:+.1f}%)"
        capture = r.get("capture") or ""
        if r.get("mode") == "real":
            capture += " (real pass)"
        status = r["status"] + "".join(f", {f}" for f in r.get("flags", []) if f != "unpriced-ops")
        counted = not r.get("count_error") or r.get("warn_result")  # no time or ratio for a failed count
        lines.append("| " + " | ".join(_cell(c) for c in (
            r["model"], r["family"] + ("/" + r["group"] if r.get("group") else ""),
            _fmt(r["macs"] / 1e9 if r.get("macs") is not None else None),
            _fmt(r["published_macs"] / 1e9 if r.get("published_macs") is not None else None),
            published, _fmt(r.get("count_s") if counted else None, 2),
            _fmt(r.get("count_warm_s") if counted else None, 2), _fmt(r.get("bare_s"), 2),
            _fmt(r.get("ratio") if counted else None, 2),
            capture, ", ".join(sorted(r.get("unpriced") or {})), status,
        )) + " |")
    return "\n".join(lines)


def status_counts(rows: list[dict]) -> dict[str, int]:
    counts = {s: 0 for s in STATUSES}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return {s: n for s, n in counts.items() if n}


def timing_summary(rows: list[dict]) -> list[str]:
    """One paragraph: how the first and the second count compare with the bare meta forward."""
    timed = [r for r in rows if r.get("ratio") is not None and (not r.get("count_error") or r.get("warn_result"))]
    if not timed:
        return []
    first = sorted(timed, key=lambda r: r["ratio"])
    warm = sorted((r for r in timed if r.get("count_warm_s") is not None), key=lambda r: r["count_warm_s"] / r["bare_s"])
    text = (f"Time against the bare meta forward: the first count of the process costs less on "
            f"{sum(r['ratio'] <= 1.0 for r in first)} of {len(first)} timed models (median "
            f"{first[len(first) // 2]['ratio']:.2f}x, at most {first[-1]['ratio']:.2f}x, {first[-1]['name']})")
    if warm:
        ratios = [r["count_warm_s"] / r["bare_s"] for r in warm]
        text += (f"; the second count on {sum(x <= 1.0 for x in ratios)} of {len(ratios)} (median "
                 f"{ratios[len(ratios) // 2]:.2f}x, at most {ratios[-1]:.2f}x, {warm[-1]['name']})")
    return ["", text + "."]


# The last whole run of ``python -m zoo.paths``, as it printed its summary (written here by hand).
PATHS_RUN = (
    "Last run 2026-12-02, on commit 2ccda74 (torch 2.14.1, the same libraries): 184 ok, 0 failed,",
    "2 skipped (their plain meta forward raises: bart-base and the meta-built detector), in 277 s.",
)


def write_docs(rows: list[dict], meta: dict, path: Path = DOCS) -> None:
    counts = status_counts(rows)
    vers = meta.get("versions", {})
    problems = [r for r in rows if r["status"] not in ("ok", "skipped")]
    parts = [
        "# Model zoo",
        "",
        "Every model below is built from its architecture or a configuration written in `zoo/` (nothing is",
        "downloaded), with random weights on the meta device, and counted with the default `measure` in a",
        "process of its own (`zoo/worker.py`): a crash or a hang is a row, not the end of the run.",
        "",
        "The whole zoo: `python -m zoo.run` (options: `--only PATTERN`, repeatable; `--jobs N`;",
        "`--timeout S`; `--list`). This table was made by:",
        "",
        "```",
        *[run["command"] for run in meta.get("runs", [meta])],
        "```",
        "",
        *[f"- {run.get('models', '?')} models on {run.get('date', '?')}, zoo commit {run.get('commit', '?')}, "
          f"{run.get('jobs', '?')} workers, {run.get('elapsed_s', 0) / 60:.1f} min" for run in meta.get("runs", [meta])],
        "",
        "The paths beside the default forward: `python -m zoo.paths` (the same patterns) counts every model",
        "again with warnings raised as errors (pytest's `filterwarnings = error`): the forward, the forward",
        "with peak memory, and a training step with AdamW and peak memory, then compares the model as above.",
        *PATHS_RUN,
        "",
        ", ".join(f"{k} {v}" for k, v in vers.items())
        + (f"; {meta['host']}" if meta.get("host") else "") + ".",
        "",
        f"{len(rows)} models: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + ".",
        *timing_summary(rows),
        "",
        "Columns: **GMACs** is `FlopResult.macs` (every priced operator); **matmul/conv GMACs** is",
        "`FlopResult.published_macs` (matmul, convolution, attention, recurrent: the convention of model",
        "cards), compared with **published** (the delta in brackets). **time** is the first count in the",
        "worker (after one bare forward has warmed the process, with the plugin's engine imported like the",
        "model's library); **second count** the quicker of two more counts in the same process; **bare meta** is the same call as a plain",
        "`torch.no_grad()` forward on meta in the same process (torch's own meta kernels); **ratio** is",
        "time / bare meta. **capture** is `FlopResult.capture` (`trace` or `dispatch`). **unpriced** lists",
        "the operators without a rule. **status**: `ok`; `damaged` (the model, its config, hooks, flags or",
        "the process state differ after the count: a deep comparison of every attribute, `zoo/snapshot.py`);",
        "`touched` (only tensor version counters changed: the same tensors with the same values, written",
        "in place, which breaks a backward pending on them); `crash` (the worker died: a signal or an exit);",
        "`timeout`; `oom`; `unpriced` (the default count",
        "failed on an unpriced costly operator; the MACs shown are then those of `unpriced=\"warn\"`);",
        "`error` (the count raised); `zero`; then the flags `slow` (ratio > 1), `real-pass` (the count fell",
        "back to a real forward), `off-published` (more than 2% from the published figure, beyond its rounding),",
        "`bare-forward-failed` (the plain meta forward raised, so no ratio).",
        "",
        "Published figures: timm, its benchmark table (`results/benchmark-infer-amp-nchw-pt291-cu128-4090.csv`,",
        "`infer_gmacs`, two decimals); torchvision, `_ops` in each weights enum's meta; DiT-XL/2, the DiT",
        "paper's Table 1. Sources per model in `zoo/results.json`.",
        "",
        table(rows),
        "",
    ]
    if problems:
        parts += ["## What went wrong", ""]
        for r in problems:
            parts.append(f"- **{r['name']}** ({r['status']}): {_cell(r.get('detail', ''))[:300]}")
        parts.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))


def load_results(path: Path = RESULTS) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"meta": {}, "rows": []}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", help="run every entry (the default without --only)")
    parser.add_argument("--only", action="append", metavar="PATTERN",
                        help="a glob on family/model, a family, a group or a substring; repeatable")
    parser.add_argument("--jobs", type=int, default=2, help="workers at once (default 2)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per model")
    parser.add_argument("--max-rss-gb", type=float, default=DEFAULT_MAX_RSS_GB, help="memory per worker")
    parser.add_argument("--quick", action="store_true", help="count and compare only, no timings")
    parser.add_argument("--fresh", action="store_true", help="drop the rows of earlier runs")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--docs", type=Path, default=DOCS)
    parser.add_argument("--no-docs", action="store_true", help="write results.json only")
    parser.add_argument("--list", action="store_true", help="list the selected entries and exit")
    parser.add_argument("--docs-only", action="store_true", help="rewrite the table from the results file")
    args = parser.parse_args(argv)
    if args.docs_only:
        saved = load_results(args.results)
        write_docs(saved["rows"], saved["meta"], args.docs)
        return 0

    entries = registry.select(None if args.all else args.only)
    if args.list:
        for e in entries:
            print(f"{e.name:55s} {e.family}/{e.group}  {e.note}")
        print(f"{len(entries)} entries")
        return 0
    if not entries:
        print("no entry matches", args.only, file=sys.stderr)
        return 2
    start = time.monotonic()
    rows = run_entries(entries, jobs=args.jobs, timeout=args.timeout, max_rss_gb=args.max_rss_gb, quick=args.quick)
    elapsed = time.monotonic() - start
    command = "python -m zoo.run " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = {
        "command": command.strip(), "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(), "versions": versions(), "jobs": args.jobs, "elapsed_s": round(elapsed, 1),
        "host": f"{os.cpu_count()} CPUs",
    }
    meta["runs"] = [{"command": meta["command"], "date": meta["date"], "commit": meta["commit"],
                     "models": len(rows), "elapsed_s": meta["elapsed_s"], "jobs": args.jobs}]
    previous = {} if args.fresh else {r["name"]: r for r in load_results(args.results).get("rows", [])}
    if previous and len(entries) < len(registry.all_entries()):
        # a partial run: its rows replace those of earlier runs, the others stay
        merged = dict(previous)
        merged.update({r["name"]: r for r in rows})
        order = [e.name for e in registry.all_entries()]
        all_rows = [merged[n] for n in order if n in merged]
        old = load_results(args.results).get("meta", {})
        meta["runs"] = old.get("runs", []) + meta["runs"]
    else:
        all_rows = rows
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({"meta": meta, "rows": all_rows}, indent=1, default=str))
    if not args.no_docs:
        write_docs(all_rows, meta, args.docs)
    counts = status_counts(rows)
    print(f"{len(rows)} models in {elapsed / 60:.1f} min: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    print(f"results: {args.results}" + ("" if args.no_docs else f"; table: {args.docs}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
