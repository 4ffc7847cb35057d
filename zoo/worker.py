"""Count one zoo entry in this process: ``python -m zoo.worker NAME RESULT.json``.

Stages, each recorded in RESULT.json before it starts (so a crash or a hang leaves the stage it
reached): build the model on meta; a bare forward (``torch.no_grad()``, torch's own meta kernels; it
also warms the process); a deep snapshot of the model; the count with the default ``measure``; a
second snapshot and the difference; where the count failed for an unpriced operator, a count with
``unpriced="warn"`` (for the MACs); two more counts (the warm time, the quicker) where the first was quick; the
timed bare forward. ``faulthandler`` prints the Python stack of a segmentation fault to stderr.
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
import time
import traceback
from typing import Any

# ZOO_QUICK=1 (the CI sample): the count and the comparisons only, no timings (no bare forwards, no
# second count).
QUICK = os.environ.get("ZOO_QUICK") == "1"
WARM_COUNT_LIMIT_S = 20.0  # a second (warm) count only where the first took less
BARE_REPEAT_LIMIT_S = 5.0  # the bare forward is timed twice (the minimum kept) where it is quicker


class _Skipped(Exception):
    pass


class Recorder:
    def __init__(self, path: str) -> None:
        self.path = path
        self.data: dict[str, Any] = {}

    def stage(self, name: str) -> None:
        self.data["stage"] = name
        self.write()

    def write(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1, default=str)
        os.replace(tmp, self.path)


def _error(exc: BaseException) -> dict:
    message = str(exc).strip()
    return {
        "type": type(exc).__name__,
        "message": message[:2000],
        "traceback": traceback.format_exc()[-4000:],
    }


def _result_fields(result: Any) -> dict:
    by_op = dict(sorted(result.by_operator.items(), key=lambda kv: -kv[1])[:12])
    return {
        "macs": int(result.macs),
        "published_macs": int(result.published_macs),
        "by_category": {k: int(v) for k, v in result.by_category.items()},
        "top_operators": by_op,
        "unpriced": dict(result.unpriced),
        "notes": list(result.notes),
        "counter": result.counter,
        "capture": getattr(result, "capture", None),
        "mode": result.mode,
    }


def _bare(model: Any, args: tuple, kwargs: dict) -> float:
    import torch

    start = time.perf_counter()
    with torch.no_grad():
        model(*args, **kwargs)
    return time.perf_counter() - start


def run(name: str, path: str) -> int:
    faulthandler.enable(file=sys.stderr, all_threads=True)
    rec = Recorder(path)
    data = rec.data
    data.update(name=name, pid=os.getpid())
    rec.stage("import")
    from . import registry
    from .common import BUILD

    entry = registry.by_name()[name]
    data.update(family=entry.family, group=entry.group, note=entry.note)
    try:
        import torch

        # The engine, which measure() imports on first use, is loaded here like torch and the model's
        # library, so that the first count's time is the count's own.
        import pytest_flopbudget
        import pytest_flopbudget.engine.count
        from pytest_flopbudget import measure

        from . import snapshot
    except Exception as exc:
        data["build_error"] = _error(exc)
        rec.stage("done")
        return 0

    rec.stage("build")
    start = time.perf_counter()
    try:
        published = entry.published_gmacs()
        data.update(published=published, published_source=entry.published_source if published else None)
        model, args, kwargs = entry.build()
    except ImportError as exc:
        data["skipped"] = f"{type(exc).__name__}: {exc}"
        rec.stage("done")
        return 0
    except Exception as exc:
        data["build_error"] = _error(exc)
        data["build_tried"] = list(BUILD["tried"])
        rec.stage("done")
        return 0
    data["build_s"] = time.perf_counter() - start
    data["build_method"] = BUILD["method"]
    data["build_tried"] = list(BUILD["tried"])
    data["params"] = sum(p.numel() for p in model.parameters())

    rec.stage("bare-cold")
    try:
        if QUICK:
            raise _Skipped()
        data["bare_cold_s"] = _bare(model, args, kwargs)
    except _Skipped:
        pass
    except Exception as exc:
        data["bare_error"] = _error(exc)

    rec.stage("snapshot")
    start = time.perf_counter()
    before = snapshot.take(model, args, kwargs)
    data["snapshot_s"] = time.perf_counter() - start
    data["snapshot_entries"] = len(before.entries)

    rec.stage("count")
    start = time.perf_counter()
    try:
        result = measure(model, *args, **kwargs)
    except Exception as exc:
        data["count_s"] = time.perf_counter() - start
        data["count_error"] = _error(exc)
        result = None
    else:
        data["count_s"] = time.perf_counter() - start
        data.update(_result_fields(result))

    rec.stage("compare")
    data["damage"] = snapshot.diff(before, snapshot.take(model, args, kwargs))

    error = data.get("count_error")
    if error and error["type"] == "UnpricedOperatorError":
        rec.stage("count-warn")
        try:
            warned = measure.using(unpriced="warn")(model, *args, **kwargs)
        except Exception as exc:
            data["warn_error"] = _error(exc)
        else:
            data["warn_result"] = True
            data.update(_result_fields(warned))
        rec.stage("compare-warn")
        data["damage_warn"] = snapshot.diff(before, snapshot.take(model, args, kwargs))

    if result is not None and data["count_s"] < WARM_COUNT_LIMIT_S and not QUICK:
        rec.stage("count-warm")
        try:
            warm = []
            for _ in range(2):  # the minimum of two, as for the bare forward
                start = time.perf_counter()
                measure(model, *args, **kwargs)
                warm.append(time.perf_counter() - start)
                if warm[0] > BARE_REPEAT_LIMIT_S:
                    break
            data["count_warm_s"] = min(warm)
        except Exception as exc:
            data["warm_error"] = _error(exc)
        rec.stage("compare-warm")
        data["damage_warm"] = snapshot.diff(before, snapshot.take(model, args, kwargs))

    if "bare_error" not in data and not QUICK:
        rec.stage("bare")
        try:
            times = [_bare(model, args, kwargs)]
            if times[0] < BARE_REPEAT_LIMIT_S:
                times.append(_bare(model, args, kwargs))
            data["bare_s"] = min(times)
        except Exception as exc:
            data["bare_error"] = _error(exc)
    data["torch_version"] = torch.__version__
    data["flopbudget_version"] = getattr(pytest_flopbudget, "__version__", "?")
    rec.stage("done")
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1], sys.argv[2]))
