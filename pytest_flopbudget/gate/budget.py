"""Marker arguments and verdicts: is a measurement within its budget and its baseline?

Pure logic, no pytest and no torch: the plugin turns a ``Verdict`` into a test outcome.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_flopbudget.results.result import FLOPS_PER_MAC, GIGA, pct

MARKER = "flop_budget"
MARKER_HELP = (
    "flop_budget(gflops=None, *, rel=None, abs=None, ms=None, device=None): hard ceiling of the test's forward pass "
    "in GFLOPs (1 GFLOP = 1e9 FLOPs = 5e8 MACs); rel (fraction or 'N%') and abs (GFLOPs) are the "
    "growth allowed over the test's baseline entry (rel also for the memory figures and the time estimates). peak_mib (peak memory in "
    "MiB) and bytes_gb (bytes moved in GB, 1e9 bytes) are hard ceilings of the memory the call takes; "
    "either one makes the test measure memory. ms with device: a ceiling on the roofline lower bound "
    "of the time on that device (docs/deployment.md). The closest marker wins."
)
_PERCENT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*%\s*$")


class BudgetError(ValueError):
    """A marker, option or ini value that cannot be used; the message names the fix."""


@dataclass(frozen=True)
class Budget:
    """What a ``flop_budget`` marker asks for. ``None`` means "not set here"."""

    gflops: float | None = None
    rel: float | None = None
    abs: float | None = None
    peak_mib: float | None = None  # peak memory ceiling, MiB (gate/memory.py)
    bytes_gb: float | None = None  # bytes moved ceiling, GB (1e9 bytes)
    ms: float | None = None  # a ceiling on the estimated time (roofline lower bound) on ``device``
    device: str | None = None


def number(value: Any, what: str) -> float:
    """A finite, non-negative real number (bools and strings are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BudgetError(f"{what} must be a number, got {value!r} ({type(value).__name__})")
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise BudgetError(f"{what} must be a finite number, got {number!r}")
    if number < 0:
        raise BudgetError(f"{what} must be >= 0, got {number!r}")
    return number


def fraction(value: Any, what: str) -> float:
    """A relative tolerance: ``0.02``, ``"0.02"`` or ``"2%"`` all mean two percent."""
    if isinstance(value, str):
        text = value.strip()
        match = _PERCENT.match(text)
        try:
            value = float(match.group(1)) / 100 if match else float(text)
        except ValueError:
            raise BudgetError(f"{what} must be a fraction like 0.02 or a percentage like 2%, got {text!r}") from None
    return number(value, what)


def text_number(text: str, what: str) -> float:
    """A number given as text on the command line or in an ini file."""
    try:
        value = float(text.strip())
    except ValueError:
        raise BudgetError(f"{what} must be a number, got {text!r}") from None
    return number(value, what)


def from_marker(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Budget:
    """Validate ``flop_budget(gflops=None, *, rel=None, abs=None)`` arguments."""
    unknown = sorted(set(kwargs) - {"gflops", "rel", "abs", "peak_mib", "bytes_gb", "ms", "device"})
    if unknown:
        raise BudgetError(
            f"unknown argument(s) {', '.join(unknown)} to @pytest.mark.{MARKER}; "
            "it takes gflops=, rel=, abs=, peak_mib=, bytes_gb=, ms= and device="
        )
    if len(args) > 1:
        raise BudgetError(f"@pytest.mark.{MARKER} takes at most one positional argument (gflops), got {len(args)}")
    if args and "gflops" in kwargs:
        raise BudgetError(f"@pytest.mark.{MARKER} got gflops both as positional and as keyword argument")
    gflops = args[0] if args else kwargs.get("gflops")
    rel, abs_ = kwargs.get("rel"), kwargs.get("abs")
    peak_mib, bytes_gb = kwargs.get("peak_mib"), kwargs.get("bytes_gb")
    ms = kwargs.get("ms")
    device = _time_device(ms, kwargs.get("device"))
    if gflops is None and rel is None and abs_ is None and peak_mib is None and bytes_gb is None and ms is None:
        raise BudgetError(f"@pytest.mark.{MARKER} needs at least one of gflops=, rel=, abs=, peak_mib=, bytes_gb=, ms=")
    return Budget(
        peak_mib=None if peak_mib is None else number(peak_mib, f"{MARKER} peak_mib"),
        bytes_gb=None if bytes_gb is None else number(bytes_gb, f"{MARKER} bytes_gb"),
        gflops=None if gflops is None else number(gflops, f"{MARKER} gflops"),
        rel=None if rel is None else fraction(rel, f"{MARKER} rel"),
        abs=None if abs_ is None else number(abs_, f"{MARKER} abs"),
        ms=None if ms is None else number(ms, f"{MARKER} ms"),
        device=device,
    )


def _time_device(ms: Any, name: Any) -> str | None:
    """The table name of a time budget's device; ``ms=`` and ``device=`` go together."""
    if ms is None and name is None:
        return None
    if ms is None:
        raise BudgetError(f"@pytest.mark.{MARKER}: device= goes with ms= (a time budget on that device)")
    if name is None:
        raise BudgetError(f"@pytest.mark.{MARKER}: ms= needs device=, the device the time is estimated on (e.g. device='h100-sxm')")
    if not isinstance(name, str):
        raise BudgetError(f"@pytest.mark.{MARKER} device must be a device name, got {name!r}")
    from pytest_flopbudget.deploy.devices import device

    try:
        return device(name).name
    except ValueError as exc:
        raise BudgetError(f"@pytest.mark.{MARKER}: {exc}") from None


def judge_time(ms: float, budget_ms: float, device: str, bound: str, share: float) -> Verdict | None:
    """A time budget: the roofline lower bound over ``budget_ms`` is over budget (the real time can only be longer)."""
    if ms <= budget_ms:
        return None
    return Verdict(
        "over-budget",
        f"time budget exceeded on {device}: roofline lower bound {ms:.4g} ms > ms={budget_ms:g} "
        f"({fmt_pct(pct(ms, budget_ms))}; {100 * share:.0f}% {bound}-bound)",
    )


def fmt_gflops(value: float) -> str:
    """Readable GFLOPs with enough digits to see a small change."""
    if value >= 100:
        return f"{value:,.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.4g}"


def fmt_pair(old: float, new: float) -> tuple[str, str]:
    """Both values with the fewest decimals (2 to 6) that still show they differ."""
    for decimals in range(2, 7):
        a, b = f"{old:,.{decimals}f}", f"{new:,.{decimals}f}"
        if a != b:
            return a, b
    return fmt_gflops(old), fmt_gflops(new)


def fmt_pct(value: float) -> str:
    if math.isinf(value):
        return "+inf%"
    return f"{value:+.1f}%" if abs(value) >= 0.05 else f"{value:+.3g}%"


@dataclass(frozen=True)
class Verdict:
    """The status of one measurement and, when the test must fail, the first line of its failure."""

    status: str
    failure: str | None = None
    warning: str | None = None


def judge(
    macs: int,
    *,
    ceiling_gflops: float | None,
    baseline_macs: int | None,
    rel: float,
    abs_gflops: float,
    missing: str,
    updating: bool,
    baseline_name: str,
) -> Verdict:
    """Compare one measurement with its ceiling and its baseline entry.

    ``missing`` is "fail" or "warn" (already resolved from "auto"). Under
    ``updating`` growth and new entries are accepted, a ceiling never is.
    """
    gflops = FLOPS_PER_MAC * macs / GIGA
    if ceiling_gflops is not None and gflops > ceiling_gflops:
        over = pct(gflops, ceiling_gflops)
        return Verdict(
            "over-budget",
            f"FLOP budget exceeded: {fmt_gflops(gflops)} GFLOPs > {fmt_gflops(ceiling_gflops)} GFLOPs ({fmt_pct(over)})",
        )
    if baseline_macs is None:
        text = f"no FLOP baseline in {baseline_name} (measured {fmt_gflops(gflops)} GFLOPs, {macs:,} MACs)"
        if updating:
            return Verdict("new")
        if missing == "fail":
            return Verdict("new", text)
        return Verdict("new", warning=text)
    allowed = max(rel * baseline_macs, abs_gflops * GIGA / FLOPS_PER_MAC)
    growth = macs - baseline_macs
    if growth > allowed:
        base_g = FLOPS_PER_MAC * baseline_macs / GIGA
        limit = f"allowed {fmt_pct(100.0 * allowed / baseline_macs)}" if baseline_macs else "allowed +0"
        before, after = fmt_pair(base_g, gflops)
        text = (
            f"FLOP regression: {before} -> {after} GFLOPs "
            f"({fmt_pct(pct(macs, baseline_macs))}, {limit}) against {baseline_name}"
        )
        return Verdict("regressed", None if updating else text)
    if growth < 0:
        return Verdict("improved")
    return Verdict("ok")


def judge_base(
    macs: int,
    *,
    base_macs: int | None,
    rel: float | None,
    abs_gflops: float | None,
    base_label: str,
    updating: bool,
) -> Verdict | None:
    """Compare one measurement with its entry in the base branch's baseline.

    Returns a ``raised`` verdict when the growth over the base exceeds the larger of
    ``rel * base`` and ``abs_gflops`` (a limit not set counts as 0); None when there is
    no limit (``rel`` and ``abs_gflops`` both None: the base only informs), no base entry
    (a test new against the base is listed, not judged), or the growth is within it.
    Under ``updating`` the verdict carries no failure, as for a regression.
    """
    if base_macs is None or (rel is None and abs_gflops is None):
        return None
    allowed = max((rel or 0.0) * base_macs, (abs_gflops or 0.0) * GIGA / FLOPS_PER_MAC)
    if macs - base_macs <= allowed:
        return None
    base_g, gflops = FLOPS_PER_MAC * base_macs / GIGA, FLOPS_PER_MAC * macs / GIGA
    before, after = fmt_pair(base_g, gflops)
    limit = f"allowed {fmt_pct(100.0 * allowed / base_macs)}" if base_macs else "allowed +0"
    text = (
        f"FLOP raise against the base {base_label}: {before} -> {after} GFLOPs "
        f"({fmt_pct(pct(macs, base_macs))}, {limit}); needs approval"
    )
    return Verdict("raised", None if updating else text)
