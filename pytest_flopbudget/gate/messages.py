"""What a measurement says: failure and warning texts, the accept command, JUnit properties.

Pure formatting of a ``Record`` (and the ``FlopResult`` behind it); no pytest hooks here.
"""

from __future__ import annotations

from pytest_flopbudget.engine.errors import NEEDS_VALUES
from pytest_flopbudget.gate.budget import Verdict, fmt_gflops, fmt_pct
from pytest_flopbudget.gate.memory import memory_lines
from pytest_flopbudget.gate.settings import Settings
from pytest_flopbudget.gate.timing import time_lines
from pytest_flopbudget.results.result import (
    FLOPS_PER_MAC,
    GIGA,
    FlopResult,
    Record,
    module_deltas,
    pct,
    rank_modules,
    same_depth,
)


def junit_properties(record: Record) -> list[tuple[str, object]]:
    prefix = "flopbudget" if record.key is None else f"flopbudget[{record.key}]"
    values: dict[str, object] = {
        "gflops": round(record.gflops, 6),
        "macs": record.macs,
        "published_macs": "" if record.published_macs is None else record.published_macs,
        "budget_gflops": "" if record.budget_gflops is None else record.budget_gflops,
        "baseline_gflops": "" if record.baseline_gflops is None else round(record.baseline_gflops, 6),
        "status": record.status,
    }
    values.update({f"{phase}_macs": macs for phase, macs in record.phases.items()})
    if record.peak_bytes is not None:  # only where memory was measured: other runs keep their properties
        values.update(peak_bytes=record.peak_bytes, bytes_moved="" if record.bytes_moved is None else record.bytes_moved)
    if record.base is not None:  # only with --flop-base-ref/--flop-base: other runs keep their properties
        values["base"] = record.base
        values["base_gflops"] = "" if record.base_gflops is None else round(record.base_gflops, 6)
        delta = record.base_delta_pct
        values["base_delta_pct"] = "new" if delta is None else "inf" if delta == float("inf") else round(delta, 4)
    return [(f"{prefix}.{name}", value) for name, value in values.items()]


# --- failure messages -------------------------------------------------------------


def explain(
    record: Record, verdict: Verdict, result: FlopResult, settings: Settings, base_source: str = "", *, default_budget: bool = False
) -> str:
    """The whole failure (or warning) text: verdict line, where the cost is, and how to accept it.

    ``base_source`` names the base file (``origin/main:flopbudget.toml``) of a ``raised`` verdict;
    ``default_budget``: the ceiling is ``flopbudget_default_gflops``, not the test's marker.
    """
    if verdict.failure is None and verdict.warning is None:
        return ""
    notes = "".join(f"\n  note: {note}" for note in result.notes)
    if record.status == "new":
        return f"{verdict.failure or verdict.warning}{notes}\n  {accept_hint(record, settings)}"
    lines = [verdict.failure or "", f"  test: {record.id}", f"  measured: {record.macs:,} MACs = {fmt_gflops(record.gflops)} GFLOPs"]
    if record.budget_gflops is not None:
        source = "flopbudget_default_gflops: no flop_budget(gflops=...) on the test" if default_budget else "@pytest.mark.flop_budget"
        lines.append(f"  budget: {fmt_gflops(record.budget_gflops)} GFLOPs ({source})")
    if record.budget_ms is not None:
        got = record.estimates.get(record.budget_device or "")
        estimated = f"; estimated {got['ms']:.4g} ms, roofline lower bound" if got else ""
        lines.append(f"  time budget: {record.budget_ms:g} ms on {record.budget_device} (@pytest.mark.flop_budget{estimated})")
    if record.baseline_macs is not None:
        lines.append(f"  baseline: {record.baseline_macs:,} MACs = {fmt_gflops(record.baseline_gflops or 0.0)} GFLOPs ({settings.baseline.name})")
    if record.base_macs is not None and record.status == "raised":
        lines.append(f"  base: {record.base_macs:,} MACs = {fmt_gflops(record.base_gflops or 0.0)} GFLOPs ({base_source})")
    lines.extend(memory_lines(record))
    lines.extend(time_lines(record))
    if record.phases:
        lines.extend(_phases(record, base_source))
    if settings.top:
        lines.extend(_top_modules(record, settings.top))
    if record.status == "regressed" and record.baseline_modules:
        lines.extend(_module_changes(record.modules, record.baseline_modules, settings.top or 5, "the baseline"))
    if record.status == "raised" and record.base_modules:
        lines.extend(_module_changes(record.modules, record.base_modules, settings.top or 5, f"the base {record.base}"))
    if record.unpriced:
        ops = ", ".join(f"{op} x{n}" for op, n in sorted(record.unpriced.items()))
        lines.append(f"  not priced by the counter (counted as 0): {ops}")
    lines.extend(f"  note: {note}" for note in result.notes)
    lines.append("  " + accept_hint(record, settings, default_budget))
    return "\n".join(lines)


def _phases(record: Record, base_source: str = "") -> list[str]:
    """A training step's MACs per phase, and each phase's change against the entry it failed against:
    the base's for a raise against the base, else the baseline's."""
    width = max(len(phase) for phase in record.phases)
    out = ["  phases of the training step:"]
    against_base = record.status == "raised" and record.base_macs is not None
    reference = record.base_phases if against_base else record.baseline_phases
    name = f"the base {record.base}" if against_base else "the baseline"
    for phase, macs in record.phases.items():
        line = f"    {phase:<{width}}  {macs:>,} MACs = {fmt_gflops(FLOPS_PER_MAC * macs / GIGA)} GFLOPs"
        if against_base and not reference:
            line += f"  (no phases in {base_source or 'the base'})"
        elif reference:
            old = reference.get(phase)
            if old is None:
                line += "  (no baseline)" if not against_base else "  (not in the base)"
            elif macs != old:
                line += f"  ({macs - old:+,} MACs, {fmt_pct(pct(macs, old))} against {name})"
            else:
                line += "  (unchanged)"
        out.append(line)
    return out


def _top_modules(record: Record, top: int) -> list[str]:
    ranked = rank_modules(record.modules, top)
    if not ranked:
        return []
    width = max(len(path) for path, _ in ranked)
    out = [f"  modules carrying the cost (top {len(ranked)} of {len(record.modules)}):"]
    for path, macs in ranked:
        share = 100.0 * macs / record.macs if record.macs else 0.0
        out.append(f"    {path:<{width}}  {fmt_gflops(FLOPS_PER_MAC * macs / GIGA):>9} GFLOPs  {share:5.1f}%")
    return out


def _module_changes(modules: dict[str, int], reference: dict[str, int], top: int, against: str) -> list[str]:
    modules, reference = same_depth(modules, reference)
    grown = module_deltas(modules, reference)[:top]
    if not grown:
        return []
    width = max(len(p) for p, _ in grown)
    out = [f"  changed against {against}:"]
    for path, delta in grown:
        old = reference.get(path, 0)
        change = fmt_pct(pct(old + delta, old)) if old else "new"
        out.append(f"    {path:<{width}}  {delta:+,} MACs ({change})")
    return out


APPROVAL_LABEL = "flops-approved"  # the pull-request label of the example workflow that lifts the base limit


def accept_hint(record: Record, settings: Settings, default_budget: bool = False) -> str:
    if record.status == "over-budget" and default_budget:
        return (f"If intended: give {record.nodeid} its own budget, @pytest.mark.flop_budget(gflops=...), or raise "
                "flopbudget_default_gflops (--flop-update never accepts a budget violation)")
    if record.status == "over-budget":
        return f"If intended: raise gflops in @pytest.mark.flop_budget on {record.nodeid} (--flop-update never accepts a budget violation)"
    if record.status == "raised":
        if record.baseline_macs == record.macs:
            recorded = f"{settings.baseline.name} already records the new count"
        else:
            recorded = f"record the new count in {settings.baseline.name} too: {settings.update_command(record.nodeid)}"
        return (
            f"If intended: get the raise approved; {settings.base_limit_text()} sets the limit, so the check runs "
            "without it for an approved change (the example workflow does that for a pull request labelled "
            f"`{APPROVAL_LABEL}`); {recorded}"
        )
    target = settings.update_command(record.nodeid)
    if record.status == "new":
        return f"Record it: {target}"
    return f"If intended: {target}  (then commit {settings.baseline.name})"


_NO_DEVICE = ("not compiled with", "no cuda gpus", "nvidia driver", "cuda is not available", "mps backend", "no xpu")


def count_hint(exc: BaseException, model: object = None) -> str:
    """The fix for the errors a model commonly raises while counted, or ""."""
    if isinstance(model, type):
        return f"\n  flops() got the class {model.__name__} itself; pass an instance: flops({model.__name__}(...), *inputs)"
    if getattr(exc, "explains_itself", False):  # its message already names the fix
        return ""
    text = str(exc).lower()
    if any(words in text for words in _NO_DEVICE):
        return (
            "\n  the model or its inputs use a device this machine does not have; skip the test where it is missing "
            "(@pytest.mark.skipif(not torch.cuda.is_available(), reason=...)) or keep model and inputs on a device "
            "that exists (counting on the meta device needs none)"
        )
    if any(words in text for words in NEEDS_VALUES):
        return (
            "\n  the forward needs real values (data-dependent control flow), which meta tensors do not have; "
            "build the model and its inputs on the CPU so --flop-mode=auto can count with a real forward pass"
        )
    return ""
