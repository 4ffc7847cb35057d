"""The JSON report (``--flop-report-json``): schema 1, tests sorted by id, no inf/nan.

The base comparison (``--flop-base-ref``/``--flop-base``) adds keys to schema 1, never
changing an existing one: a top-level ``base`` object (null without a base) and, per test,
``base_macs``, ``base_gflops``, ``base_delta_pct`` and ``base_module_changes``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from pytest_flopbudget.report.common import (
    BaseSummary,
    base_changes,
    base_headline,
    status_counts,
)
from pytest_flopbudget.results.result import FLOPS_PER_MAC, GIGA, Record, rank_modules

TOP_MODULES = 10



def _json_safe(value: Any) -> Any:
    """Replace inf/nan by None and tuples by lists, recursively, so json.dumps(allow_nan=False) works."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def top_modules(modules: dict[str, int], n: int = TOP_MODULES) -> list[dict[str, Any]]:
    """The ``n`` module paths with the most MACs, largest first."""
    return [
        {"module": path or "<root>", "macs": macs, "gflops": FLOPS_PER_MAC * macs / GIGA}
        for path, macs in rank_modules(modules, n)
    ]


def _test_json(record: Record) -> dict[str, Any]:
    location = {"path": record.location[0], "line": record.location[1]} if record.location else None
    return {
        "id": record.id,
        "nodeid": record.nodeid,
        "key": record.key,
        "macs": record.macs,
        "flops": FLOPS_PER_MAC * record.macs,
        "gflops": record.gflops,
        "published_macs": record.published_macs,
        "published_gmacs": record.published_gmacs,  # the published convention in its unit: GMACs
        "categories": dict(record.categories),
        "params": record.params,
        "budget_gflops": record.budget_gflops,
        "baseline_macs": record.baseline_macs,
        "baseline_gflops": record.baseline_gflops,
        "delta_pct": record.delta_pct,
        "status": record.status,
        "message": record.message,
        "location": location,
        "unpriced": dict(sorted(record.unpriced.items())),
        "top_modules": top_modules(record.modules),
        "phases": dict(record.phases),  # a training step's MACs per phase; {} for a forward pass
        "baseline_phases": dict(record.baseline_phases),
        "estimates": {name: dict(est) for name, est in record.estimates.items()},  # device -> ms, bound, share, ns, figures
        "baseline_time_ns": dict(record.baseline_time_ns),  # device -> the baseline's time (same device figures)
        "time_notes": list(record.time_notes),
        "budget_ms": record.budget_ms,
        "budget_device": record.budget_device,
        "base_macs": record.base_macs,
        "base_gflops": record.base_gflops,
        "base_delta_pct": record.base_delta_pct,
        "base_module_changes": [
            {"module": path, "base_macs": record.base_modules.get(path, 0), "macs": record.modules.get(path, 0), "delta_macs": delta}
            for path, delta in record.base_module_changes()
        ],
        **_memory_json(record),
    }


def _memory_json(record: Record) -> dict[str, Any]:
    """Peak memory and bytes moved, where the test measured them (docs/memory.md); nothing otherwise."""
    if record.peak_bytes is None:
        return {}
    module, operator = record.peak_at or ("", "")
    return {"memory": {
        "peak_bytes": record.peak_bytes,
        "peak_at": {"module": module or "<root>", "operator": operator},
        "peak_split": dict(record.peak_split),
        "bytes_moved": record.bytes_moved,
        "baseline_peak_bytes": record.baseline_peak_bytes,
        "baseline_bytes_moved": record.baseline_bytes_moved,
        "budget_peak_mib": record.budget_peak_mib,
        "budget_bytes_gb": record.budget_bytes_gb,
    }}


def json_report(
    records: Iterable[Record],
    env: dict[str, str],
    baseline_path: str | None,
    extra: dict[str, Any] | None = None,
    base: BaseSummary | None = None,
) -> dict[str, Any]:
    """A JSON-ready dict (schema 1); tests sorted by id. ``extra`` keys are added but never replace core keys."""
    records = list(records)
    report: dict[str, Any] = {
        "schema": 1,
        "env": dict(env),
        "baseline": baseline_path,
        "summary": status_counts(records),
        "base": None if base is None else _base_json(records, base),
        "tests": [_test_json(r) for r in sorted(records, key=lambda r: r.id)],
    }
    for key, value in (extra or {}).items():
        report.setdefault(key, value)
    safe: dict[str, Any] = _json_safe(report)
    return safe


def _base_json(records: list[Record], base: BaseSummary) -> dict[str, Any]:
    changes = base_changes(records)
    return {
        **base.to_json(),
        "headline": base_headline(records, base),
        "raised": [r.id for r in changes.raised],
        "lowered": [r.id for r in changes.lowered],
        "new": [r.id for r in changes.new],
    }
