"""The roofline estimate of a measured call on a named device, and model FLOPs utilisation.

Plain arithmetic over :class:`~pytest_flopbudget.results.result.OpCost` records (never torch):

    time(op) = calls * max(2 * MACs / (peak(unit, dtype) * eff), bytes moved / (bandwidth * eff))

summed over the operators of the call. Matrix work (matmul, conv, attention, recurrent) runs on
the tensor units at the dtype's rate; norms and elementwise work on the vector units. The sum is a
**lower bound** of the real time: no kernel launch overhead, no fusion (every operator reads its
inputs and writes its outputs to memory once, and no more), compute and memory traffic perfectly
overlapped inside each operator, peak clocks. ``efficiency`` (per device or per call) scales both
peaks down for a less optimistic figure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pytest_flopbudget.deploy.attention import AttentionPattern
from pytest_flopbudget.deploy.devices import RATES, Device, device
from pytest_flopbudget.results.result import FLOPS_PER_MAC, MODULE_DEPTH, FlopResult, OpCost, collapse_indices, phase_path

__all__ = ["MODEL", "Estimate", "OpTime", "estimate", "figures_id", "mfu", "peak_rate"]

TENSOR_CATEGORIES = frozenset({"matmul", "conv", "attention", "recurrent"})

_TENSOR_RATE = {"bfloat16": "bf16", "float16": "fp16", "int8": "int8", "uint8": "int8", "float64": "fp64"}
_VECTOR_RATE = {"float16": "vector_fp16", "bfloat16": "vector_bf16", "float64": "fp64"}

# The estimate's model, part of every figures_id: change it when the arithmetic of estimate() changes,
# so baselines recorded with the old arithmetic are not compared with the new.
MODEL = "roofline-1"

AttentionOption = None | float | AttentionPattern | Callable[[OpCost], "float | AttentionPattern"]


def peak_rate(dev: Device | str, dtype: str, unit: str = "tensor", *, tf32: bool = False) -> tuple[float, str, str]:
    """``(FLOP/s, rate name, note)``: the peak of ``dev`` for work of ``dtype`` on ``unit``
    (``"tensor"`` or ``"vector"``), before efficiency. FP32 matrix work runs at the ``tf32`` rate
    when ``tf32``, else at ``fp32``. A rate the device lacks falls back to ``fp32`` with a note."""
    dev = device(dev)
    dtype = dtype.removeprefix("torch.")
    if unit == "tensor":
        if dtype.startswith("float8"):
            rate = "fp8"
        elif dtype == "float32":
            rate = "tf32" if tf32 else "fp32"
        else:
            rate = _TENSOR_RATE.get(dtype, "fp32")
    elif unit == "vector":
        rate = _VECTOR_RATE.get(dtype, "fp32")
    else:
        raise ValueError(f"unit must be 'tensor' or 'vector', got {unit!r}")
    value = dev.peak(rate)
    if value is None:
        return dev.fp32 * 1e12, "fp32", f"{dev.name} has no {rate} rate: {dtype} {unit} work priced at its fp32 rate"
    return value, rate, ""


@dataclass(frozen=True)
class OpTime:
    """The estimate of one OpCost entry (all its calls): seconds, and which bound binds."""

    cost: OpCost
    seconds: float
    compute_seconds: float
    memory_seconds: float
    flops: float  # FLOPs of all calls after the attention convention
    rate: str

    @property
    def bound(self) -> str:
        """``"compute"`` when compute takes at least as long as memory traffic, else ``"memory"``."""
        return "compute" if self.compute_seconds >= self.memory_seconds else "memory"


@dataclass(frozen=True)
class Estimate:
    """A roofline lower bound of one call's time on one device.

    ``ms``: the sum over operators of ``max(compute, memory)``; ``compute_ms`` and ``memory_ms``:
    the parts of ``ms`` spent in operators where compute, or memory traffic, binds.
    """

    device: str
    ms: float
    compute_ms: float
    memory_ms: float
    flops: float
    bytes_moved: int
    efficiency: float
    attention: str
    by_category: dict[str, float]
    by_module: dict[str, float]
    ops: tuple[OpTime, ...]
    notes: tuple[str, ...] = ()

    @property
    def compute_share(self) -> float:
        """Share of the time in compute-bound operators (0 for an empty estimate)."""
        return self.compute_ms / self.ms if self.ms else 0.0

    @property
    def memory_share(self) -> float:
        return self.memory_ms / self.ms if self.ms else 0.0

    @property
    def bound(self) -> str:
        """The bound that binds most of the time: ``"compute"`` or ``"memory"``."""
        return "compute" if self.compute_ms >= self.memory_ms else "memory"

    @property
    def intensity(self) -> float:
        """FLOPs per byte moved over the whole call."""
        return self.flops / self.bytes_moved if self.bytes_moved else float("inf")

    def top_modules(self, n: int = 5) -> list[tuple[str, float]]:
        """The ``n`` module paths with the most estimated milliseconds, largest first."""
        ranked = sorted(self.by_module.items(), key=lambda kv: (-kv[1], kv[0]))
        return [kv for kv in ranked[:n] if kv[1] > 0]

    def summary(self) -> str:
        """One line: ``"h100-sxm: 1.234 ms (lower bound), 80% memory-bound"``."""
        share = self.memory_share if self.bound == "memory" else self.compute_share
        return f"{self.device}: {self.ms:.4g} ms (lower bound), {100 * share:.0f}% {self.bound}-bound"


def _fraction(option: AttentionOption, cost: OpCost) -> tuple[float, str]:
    if option is None:
        return 1.0, "full"
    if callable(option) and not isinstance(option, AttentionPattern):
        return _fraction(option(cost), cost)
    if isinstance(option, AttentionPattern):
        return option.fraction, str(option)
    if isinstance(option, (int, float)) and not isinstance(option, bool) and 0 <= option <= 1:
        return float(option), f"{100 * option:.1f}% of the full matrix"
    raise ValueError(f"attention must be None, a fraction in [0, 1], an AttentionPattern or a function of the OpCost, got {option!r}")


def _module_key(cost: OpCost) -> str:
    path = collapse_indices(cost.module)
    path = ".".join(path.split(".")[:MODULE_DEPTH]) if path else "<root>"
    return phase_path(cost.phase, path) if cost.phase else path


def estimate(
    result: FlopResult | Iterable[OpCost],
    dev: Device | str,
    *,
    efficiency: float | None = None,
    tf32: bool | None = None,
    attention: AttentionOption = None,
) -> Estimate:
    """The roofline lower bound of ``result`` (a FlopResult with ``costs``, or OpCost records) on ``dev``.

    ``efficiency`` overrides the device's (1.0 in the table). ``tf32``: FP32 matrix work on the
    TF32 tensor rate; ``None`` follows torch's defaults (convolutions yes, matmul and attention no).
    ``attention``: the effective-attention convention for attention operators: ``None`` (the full
    matrix), a fraction, an :class:`AttentionPattern` (``causal(n)``, ``sliding_window(...)``) or a
    function of the OpCost returning either (per layer). Bytes moved are not scaled by it.
    """
    d = device(dev)
    eff = d.efficiency if efficiency is None else efficiency
    if not isinstance(eff, (int, float)) or isinstance(eff, bool) or not 0 < eff <= 1:
        raise ValueError(f"efficiency must be in (0, 1], got {eff!r}")
    if isinstance(result, FlopResult):
        costs = tuple(result.costs)
        if not costs and result.macs:
            raise ValueError(
                "this FlopResult has no per-operator costs (FlopResult.costs is empty): its capture did not "
                "record bytes moved, so no time can be estimated"
            )
    else:
        costs = tuple(result)
        bad = [c for c in costs if not isinstance(c, OpCost)]
        if bad:
            raise ValueError(f"estimate() takes a FlopResult or OpCost records, got {type(bad[0]).__name__}")
    bandwidth = d.bytes_per_second * eff
    notes: list[str] = []
    ops: list[OpTime] = []
    by_category: dict[str, float] = {}
    by_module: dict[str, float] = {}
    conventions: set[str] = set()
    for cost in costs:
        cat = cost.category
        unit = "tensor" if cat in TENSOR_CATEGORIES else "vector"
        use_tf32 = (cat == "conv") if tf32 is None else tf32
        rate, rate_name, note = peak_rate(d, cost.dtype, unit, tf32=use_tf32)
        if note and note not in notes:
            notes.append(note)
        macs = float(cost.macs)
        if cat == "attention":
            fraction, label = _fraction(attention, cost)
            macs *= fraction
            conventions.add(label)
        flops = FLOPS_PER_MAC * macs * cost.calls
        compute = flops / (rate * eff)
        memory = cost.bytes_moved / bandwidth
        seconds = max(compute, memory)
        ops.append(OpTime(cost, seconds, compute, memory, flops, rate_name))
        by_category[cat] = by_category.get(cat, 0.0) + 1e3 * seconds
        key = _module_key(cost)
        by_module[key] = by_module.get(key, 0.0) + 1e3 * seconds
    ms = 1e3 * sum(op.seconds for op in ops)
    compute_ms = 1e3 * sum(op.seconds for op in ops if op.bound == "compute")
    return Estimate(
        device=d.name,
        ms=ms,
        compute_ms=compute_ms,
        memory_ms=ms - compute_ms,
        flops=sum(op.flops for op in ops),
        bytes_moved=sum(c.bytes_moved for c in costs),
        efficiency=eff,
        attention=", ".join(sorted(conventions)) if conventions else "full",
        by_category=by_category,
        by_module=by_module,
        ops=tuple(ops),
        notes=tuple(notes),
    )


def figures_id(dev: Device | str) -> str:
    """A short fingerprint (8 hex digits) of what a time estimate on ``dev`` depends on: every peak rate,
    the bandwidth, the efficiency and :data:`MODEL`. Not the name, memory, source or aliases. The
    baseline stores it beside each time, so that times made with other figures (a device replaced
    with ``register_device(..., replace=True)`` or a devices TOML) are never compared as if alike."""
    d = device(dev)
    values = ((name, getattr(d, name)) for name in (*RATES, "bandwidth", "efficiency"))
    text = ";".join([MODEL, *(f"{name}={None if v is None else float(v)!r}" for name, v in values)])
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:8]


def mfu(work: FlopResult | int | float, seconds: float, dev: Device | str, dtype: str = "bfloat16", *, tf32: bool = False) -> float:
    """Model FLOPs utilisation: ``FLOPs / (seconds * peak tensor rate of dtype)`` on ``dev``.

    ``work`` is a FlopResult (its full-matrix ``flops``: a training step counts forward, backward and
    optimizer) or a FLOP count; ``seconds`` the measured time of that work. The peak is the dense
    tensor rate, before any efficiency factor (that is what MFU compares with)."""
    flops: Any = work.flops if isinstance(work, FlopResult) else work
    if not isinstance(flops, (int, float)) or isinstance(flops, bool) or flops < 0:
        raise ValueError(f"work must be a FlopResult or a non-negative FLOP count, got {work!r}")
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not seconds > 0:
        raise ValueError(f"seconds must be a positive measured time, got {seconds!r}")
    rate, _, _ = peak_rate(dev, dtype, "tensor", tf32=tf32)
    return float(flops) / (seconds * rate)
