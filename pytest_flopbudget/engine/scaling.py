"""How a model's cost grows with one input dimension: fit the exponent, fail when it exceeds a bound.

``assert_scaling(measure_at, sizes, max_exponent=...)`` measures the model at a few sizes of one
dimension (sequence length, tokens, batch, image side), fits ``MACs ~ size ** k`` by least
squares on log-log axes, and raises ``AssertionError`` when ``k`` leaves the allowed range,
with the fitted exponent, the bound, and the MACs at each size. It catches an attention that
silently became quadratic, a batch dimension that is not linear, a resize that grew cubic.

Pure standard library: torch is imported only when ``measure_at`` returns a model to measure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_flopbudget.results import conventions

__all__ = ["Scaling", "assert_scaling", "fit_exponent"]

Metric = str | Callable[[Any], int]


@dataclass(frozen=True)
class Scaling:
    """Measured costs at each size and the fitted exponent ``k`` of ``cost ~ size ** k``."""

    dimension: str
    metric: str
    sizes: tuple[int, ...]
    macs: tuple[int, ...]
    exponent: float

    @property
    def label(self) -> str:
        """``MACs``, ``attention MACs``, ``published MACs``."""
        return "MACs" if self.metric == "macs" else f"{self.metric} MACs"

    @property
    def local_exponents(self) -> tuple[float, ...]:
        """The slope between each pair of neighbouring sizes (where the growth changes)."""
        pairs = zip(zip(self.sizes, self.macs), zip(self.sizes[1:], self.macs[1:]))
        return tuple(math.log(m1 / m0) / math.log(s1 / s0) for (s0, m0), (s1, m1) in pairs)

    def table(self) -> list[str]:
        """``size  MACs  local exponent`` lines."""
        width = max(len(self.dimension), *(len(f"{s:,}") for s in self.sizes))
        lines = [f"{self.dimension:>{width}}  {self.label:>22}  local exponent"]
        local = ("-",) + tuple(f"{k:.3f}" for k in self.local_exponents)
        for size, macs, k in zip(self.sizes, self.macs, local):
            lines.append(f"{size:>{width},}  {macs:>22,}  {k:>14}")
        return lines


def fit_exponent(sizes: Sequence[float], costs: Sequence[float]) -> float:
    """Least-squares slope of log(cost) against log(size)."""
    if len(sizes) != len(costs) or len(set(sizes)) < 2:
        raise ValueError("fit_exponent needs at least two different sizes, one cost per size")
    if any(s <= 0 for s in sizes) or any(c <= 0 for c in costs):
        raise ValueError(f"sizes and costs must be positive to fit on log-log axes, got {list(sizes)}, {list(costs)}")
    xs, ys = [math.log(s) for s in sizes], [math.log(c) for c in costs]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def _macs_of(value: Any, metric: Metric) -> int:
    """MACs of one measurement: an int, a FlopResult, or a (model, *inputs) tuple measured here."""
    if isinstance(value, tuple):
        from pytest_flopbudget.engine.count import count

        model, *inputs = value
        value = count(model, tuple(inputs), {})
    if callable(metric):
        return int(metric(value))
    if isinstance(value, int) and not isinstance(value, bool):
        if metric != "macs":
            raise TypeError(f"metric={metric!r} needs a FlopResult from measure_at, not a plain MAC count")
        return value
    if not hasattr(value, "macs"):
        raise TypeError(f"measure_at must return MACs (int), a FlopResult or (model, *inputs), got {type(value).__name__}")
    if metric == "macs":
        return int(value.macs)
    if metric == "published":
        return int(value.published_macs)
    if metric in conventions.CATEGORIES:
        return int(value.by_category[metric])
    raise ValueError(f"unknown metric {metric!r}: use 'macs', 'published', one of {', '.join(conventions.CATEGORIES)}, or a function")


def assert_scaling(
    measure_at: Callable[[int], Any],
    sizes: Sequence[int],
    *,
    max_exponent: float,
    min_exponent: float | None = None,
    metric: Metric = "macs",
    dimension: str = "size",
) -> Scaling:
    """Measure at every size, fit ``cost ~ size ** k``, and fail unless ``min_exponent <= k <= max_exponent``.

    ``measure_at(size)`` returns the MACs (int), a ``FlopResult`` (``pytest_flopbudget.measure``
    or the ``flops`` fixture's result), or a ``(model, *inputs)`` tuple to measure.
    ``metric`` picks the cost: ``"macs"`` (all), ``"published"`` (matmul, conv, attention),
    a category of :mod:`pytest_flopbudget.conventions` (``"attention"``, ``"matmul"``, ...), or a
    function of the result. ``dimension`` names the size in the message ("tokens", "batch").
    Returns the :class:`Scaling` (sizes, MACs, fitted exponent) for further checks.
    """
    __tracebackhide__ = True
    sizes = tuple(sorted(int(s) for s in sizes))
    if len(set(sizes)) < 3:
        raise ValueError(f"assert_scaling needs at least 3 different sizes to fit an exponent, got {list(sizes)}")
    if min_exponent is not None and min_exponent > max_exponent:
        raise ValueError(f"min_exponent {min_exponent:g} is above max_exponent {max_exponent:g}")
    macs = tuple(_macs_of(measure_at(size), metric) for size in sizes)
    name = metric if isinstance(metric, str) else getattr(metric, "__name__", "metric")
    if any(m <= 0 for m in macs):
        zero = [s for s, m in zip(sizes, macs) if m <= 0]
        raise AssertionError(f"{name} MACs are 0 at {dimension} {zero}: nothing to fit (wrong metric?)")
    result = Scaling(dimension, name, sizes, macs, fit_exponent(sizes, macs))
    name = result.label
    low = min_exponent is not None and result.exponent < min_exponent
    if result.exponent > max_exponent or low:
        bound = f"min {min_exponent:g}" if low else f"max {max_exponent:g}"
        verb = "slower" if low else "faster"
        head = (
            f"{name} grow {verb} than allowed with {dimension}: fitted exponent {result.exponent:.3f} "
            f"({bound}; MACs ~ {dimension}^{result.exponent:.2f} over {dimension} {sizes[0]:,}..{sizes[-1]:,})"
        )
        raise AssertionError("\n".join([head, *("  " + line for line in result.table())]))
    return result
