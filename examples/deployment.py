"""The deployment tables the example suites print at the end of ``pytest examples`` (README, "Deployment").

Each table test attaches the roofline estimate of its measurement on three devices of
``pytest_flopbudget.deploy``'s table (``record_estimates``, a ``record_property`` that reaches the
controller under pytest-xdist too); ``examples/conftest.py`` collects them, and the tables here join them
with the run's records (peak memory):

- ``deployment_table``: VAR d16..d36-s and DiT S/2..XL/2 per generated image, ViT per image, at batch 1
  and at the throughput batch (16): milliseconds per image (the roofline lower bound), the bound that
  binds most of that time, the peak memory, and whether it fits the card.
- ``scale_table``: VAR's generation step by step (the transformer on each scale's tokens): where the
  early scales (a few tokens through all the weights) are memory-bound and the last ones compute-bound.

The estimate is FP32 as measured, with TF32 matrix units (both VAR's and DiT's sampling scripts turn
TF32 on): ``estimate(result, device, tf32=True)``. Only plain data here: no torch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

DEVICES = ("h100-sxm", "l4", "rtx-4090")
PROPERTY = "flopbudget_deployment"
THROUGHPUT_BATCH = 16
SAMPLING_STEPS = 250  # DiT's sample.py default; keep equal to dit_model.SAMPLING_STEPS
GB = 1e9

# nodeid -> what its test attached (a list: a test may attach one entry per measurement); filled by
# examples/conftest.py's pytest_runtest_logreport on the process that prints the tables.
COLLECTED: dict[str, list[dict[str, Any]]] = {}


def device_estimates(result: Any) -> dict[str, dict[str, float]]:
    """``{device: {"ms", "compute_ms", "memory_ms"}}`` of one FlopResult on ``DEVICES`` (TF32 on)."""
    from pytest_flopbudget.deploy import estimate

    out = {}
    for name in DEVICES:
        est = estimate(result, name, tf32=True)
        out[name] = {"ms": est.ms, "compute_ms": est.compute_ms, "memory_ms": est.memory_ms}
    return out


def record_estimates(record_property: Any, result: Any, **facts: Any) -> None:
    """Attach the estimates of ``result`` (and ``facts``: plain values) to the running test's report."""
    record_property(PROPERTY, {"estimates": device_estimates(result), **facts})


def collect(nodeid: str, user_properties: Iterable[tuple[str, Any]]) -> None:
    """Keep what a test's report carries under ``PROPERTY`` (called once per report on the controller)."""
    found = [value for name, value in user_properties if name == PROPERTY]
    if found:
        COLLECTED[nodeid] = found


# --------------------------------------------------------------------------- combining estimates


class Time:
    """Milliseconds split into the compute-bound and memory-bound parts (sums and multiples stay exact)."""

    def __init__(self, compute_ms: float = 0.0, memory_ms: float = 0.0) -> None:
        self.compute_ms, self.memory_ms = compute_ms, memory_ms

    @classmethod
    def of(cls, estimate: Mapping[str, float]) -> Time:
        return cls(estimate["compute_ms"], estimate["memory_ms"])

    @property
    def ms(self) -> float:
        return self.compute_ms + self.memory_ms

    @property
    def bound(self) -> str:
        return "compute" if self.compute_ms >= self.memory_ms else "memory"

    @property
    def share(self) -> float:
        """The binding bound's share of the time."""
        return max(self.compute_ms, self.memory_ms) / self.ms if self.ms else 0.0

    def __add__(self, other: Time) -> Time:
        return Time(self.compute_ms + other.compute_ms, self.memory_ms + other.memory_ms)

    def times(self, factor: float) -> Time:
        return Time(self.compute_ms * factor, self.memory_ms * factor)


_ID = re.compile(r"^(?P<suite>\w+)/test_\w+\.py::(?P<test>\w+)(?:\[(?P<param>[^\]]+)\])?$")
_BATCH = re.compile(r"^(?P<param>.*?)-?b(?P<batch>\d+)$")


def split_batch(param: str | None) -> tuple[str | None, int]:
    """``d16`` -> (``d16``, 1); ``d16-b16`` -> (``d16``, 16); ``b16`` -> (None, 16)."""
    if param is None:
        return None, 1
    match = _BATCH.match(param)
    if not match:
        return param, 1
    return match["param"] or None, int(match["batch"])


def by_test(records: Iterable[Any]) -> dict[tuple[str, str, str | None, int], Any]:
    """(suite, test, model parameter, batch) -> record, for the unkeyed records of the example suites."""
    out = {}
    for rec in records:
        match = _ID.match(rec.nodeid)
        if rec.key is None and match:
            param, batch = split_batch(match["param"])
            out[(match["suite"], match["test"], param, batch)] = rec
    return out


_FAMILY = {"var": "VAR", "dit": "DiT", "vit": "ViT"}


def model_name(suite: str, param: str) -> str:
    """``var, d36-s`` -> ``VAR-d36-s``; ``dit, XL-2`` -> ``DiT-XL/2``; ``vit, B-16`` -> ``ViT-B/16``."""
    return f"{_FAMILY[suite]}-{param if suite == 'var' else param.replace('-', '/')}"


def decode_record(tests: Mapping[tuple[str, str, str | None, int], Any], batch: int) -> Any:
    """DiT's VAE decode of ``batch`` latents: ``test_vae_decode`` (batch 1) or ``test_vae_decode_batch[b16]``."""
    return tests.get(("dit", "test_vae_decode" if batch == 1 else "test_vae_decode_batch", None, batch))


_ORDER = {"var": 0, "dit": 1, "vit": 2}


def _time(rec: Any, device: str) -> Time | None:
    attached = COLLECTED.get(rec.nodeid) if rec is not None else None
    if not attached:
        return None
    return Time.of(attached[0]["estimates"][device])


def _weights(rec: Any) -> int:
    return int(rec.peak_split.get("weights", 0)) if rec.peak_split else 0


def _peak_gb(peak: int | None) -> str:
    return "-" if peak is None else f"{peak / GB:,.2f}"


def _ms(ms: float) -> str:
    if ms < 10:
        return f"{ms:.2f}"
    if ms < 1000:
        return f"{ms:.1f}"
    return f"{ms:,.0f}"


def _cell(time: Time | None, peak: int | None, memory_gb: float) -> str:
    if time is None:
        return "-"
    fits = "" if peak is None or peak <= memory_gb * GB else " (no fit)"
    return f"{_ms(time.ms)} {time.bound[0].upper()}{100 * time.share:.0f}%{fits}"


# Tests whose one call makes an image, and what the row says it is.
_ONE_CALL = {("var", "test_generate"): "image: 10 scales + decode", ("vit", "test_forward"): "image: forward"}


def _rows(records: Iterable[Any]) -> list[tuple[str, str, int, Time | None, dict[str, Time], int | None]]:
    """(model, what, batch, -, per-device per-image time, peak bytes) for every row of the deployment table."""
    tests = by_test(records)
    rows: list[tuple[str, str, int, Time | None, dict[str, Time], int | None]] = []
    for (suite, test, param, batch), rec in sorted(tests.items(), key=lambda kv: (_ORDER.get(kv[0][0], 9), kv[1].params, kv[0][3])):
        if param is None:
            continue
        times: dict[str, Time] = {}
        if (suite, test) in _ONE_CALL:  # the image is one measured call
            what, peak = _ONE_CALL[suite, test], rec.peak_bytes
            for dev in DEVICES:
                time = _time(rec, dev)
                if time is not None:
                    times[dev] = time.times(1 / batch)
        elif suite == "dit" and test == "test_sampling_step":
            decode = decode_record(tests, batch)
            what = f"image: {SAMPLING_STEPS} steps + decode"
            peak = None
            if rec.peak_bytes is not None and decode is not None and decode.peak_bytes is not None:
                # both models stay loaded: the larger of each call's peak plus the other's weights
                peak = max(rec.peak_bytes + _weights(decode), decode.peak_bytes + _weights(rec))
            for dev in DEVICES:
                step, dec = _time(rec, dev), _time(decode, dev)
                if step is not None and dec is not None:
                    times[dev] = (step.times(SAMPLING_STEPS) + dec).times(1 / batch)
        else:
            continue
        rows.append((model_name(suite, param), what, batch, None, times, peak))
    return rows


def deployment_table(records: Iterable[Any], devices: Mapping[str, float] | None = None) -> list[str]:
    """One line per model and batch: per-image lower bound on each device, its bound and share, peak memory.

    ``devices``: device name -> memory in GB (default: the deploy table's, for ``DEVICES``)."""
    if devices is None:
        from pytest_flopbudget.deploy.devices import device

        devices = {name: device(name).memory for name in DEVICES}
    rows = _rows(records)
    if not any(row[4] for row in rows):
        return []
    width = 22
    head = f"{'model':<10} {'per':<26} {'batch':>5} {'peak GB':>8}  " + " ".join(
        f"{f'{name} ({memory:g} GB)':>{width}}" for name, memory in devices.items()
    )
    lines = [head, f"{'':<10} {'':<26} {'':>5} {'':>8}  " + " ".join(f"{'ms/image, bound':>{width}}" for _ in devices)]
    for model, what, batch, _, times, peak in rows:
        cells = " ".join(f"{_cell(times.get(name), peak, memory):>{width}}" for name, memory in devices.items())
        lines.append(f"{model:<10} {what:<26} {batch:>5} {_peak_gb(peak):>8}  {cells}")
    return lines


def dit_step_table(records: Iterable[Any]) -> list[str]:
    """DiT: one sampling step (2 rows per image) against a whole image, per device at batch 1 and 16."""
    tests = by_test(records)
    lines: list[str] = []
    for (suite, test, param, batch), rec in sorted(tests.items(), key=lambda kv: (kv[1].params, kv[0][3])):
        if suite != "dit" or test != "test_sampling_step" or param is None:
            continue
        decode = decode_record(tests, batch)
        cells = []
        for dev in DEVICES:
            step, dec = _time(rec, dev), _time(decode, dev)
            if step is None or dec is None:
                cells.append(f"{'-':>34}")
                continue
            share = 100 * dec.ms / (SAMPLING_STEPS * step.ms + dec.ms)
            cells.append(
                f"{_ms(step.ms):>8} {step.bound[0].upper()}{100 * step.share:>3.0f}%  "
                f"{_ms(dec.ms):>7} {dec.bound[0].upper()}  {share:>4.1f}%"
            )
        lines.append(f"{model_name(suite, param):<9} {batch:>5}  " + "  ".join(cells))
    if not lines:
        return []
    head = f"{'model':<9} {'batch':>5}  " + "  ".join(f"{name:>34}" for name in DEVICES)
    units = f"{'':<9} {'':>5}  " + "  ".join(f"{'step ms, bound  decode ms  decode%':>34}" for _ in DEVICES)
    return [head, units, *lines]


def scale_table(records: Iterable[Any] = ()) -> list[str]:
    """VAR generation, the transformer at each scale: ms per step on each device and its bound (C/M)."""
    steps: dict[tuple[str, int], dict[int, dict[str, Any]]] = {}
    for attached in COLLECTED.values():
        for entry in attached:
            if "scale" in entry:
                steps.setdefault((entry["model"], entry["batch"]), {})[entry["scale"]] = entry
    if not steps:
        return []
    scales = sorted({k for by_scale in steps.values() for k in by_scale})
    lines = [f"{'model':<9} {'batch':>5} {'device':<9} " + " ".join(f"{'k=' + str(k + 1):>8}" for k in scales)]
    order = {"d16": 0, "d20": 1, "d24": 2, "d30": 3, "d36-s": 4}
    shown = None
    for model, batch in sorted(steps, key=lambda mb: (order.get(mb[0], 9), mb[1])):
        by_scale = steps[(model, batch)]
        if model != shown:  # the new tokens per row at each scale (256 px and 512 px models differ)
            tokens = " ".join(f"{by_scale[k]['tokens'] if k in by_scale else '-':>8}" for k in scales)
            lines.append(f"{'VAR-' + model:<9} {'':>5} {'tokens':<9} {tokens}")
            shown = model
        for dev in DEVICES:
            cells = []
            for k in scales:
                if k not in by_scale:
                    cells.append(f"{'-':>8}")
                    continue
                time = Time.of(by_scale[k]["estimates"][dev])
                cells.append(f"{_ms(time.ms) + ' ' + time.bound[0].upper():>8}")
            lines.append(f"{'':<9} {batch:>5} {dev:<9} " + " ".join(cells))
    return lines
