"""Named hardware for time estimates: published peak rates, memory bandwidth and memory size.

Plain data: importing this never imports torch. Every figure is the vendor's published *dense*
peak (never the "with sparsity" figure, which is twice the dense one on NVIDIA's datasheets),
in the units the datasheets print: TFLOP/s (TOPS for INT8), TB/s and GB. The sources of every
entry are listed in docs/deployment.md.

The rates of a device:

- ``fp32``: the vector (non-tensor) FP32 rate, also used for FP32 matrix products when TF32 is off;
- ``tf32``, ``bf16``, ``fp16``, ``fp8``, ``int8``: the tensor-unit (matrix) rates, FP32 accumulation;
- ``vector_fp16``, ``vector_bf16``: the vector units' half-precision rates (elementwise work);
- ``fp64``: the vector FP64 rate (optional).

A rate the hardware lacks is ``None`` (no BF16 or FP8 on a T4); work of that dtype is then priced
at the ``fp32`` rate and the estimate says so in its notes.

Users add their own hardware with :func:`register_device` (a conftest) or a TOML file
(:func:`load_devices`, the ``flop_devices`` ini option), one table per device::

    [devices.my-accelerator]
    fp32 = 50.0
    bf16 = 400.0
    bandwidth = 2.0    # TB/s
    memory = 64        # GB
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["DEVICES", "Device", "device", "devices", "load_devices", "match_device", "register_device"]

TERA = 1e12

RATES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "vector_fp16", "vector_bf16", "fp64")


@dataclass(frozen=True)
class Device:
    """One device: peak dense rates in TFLOP/s (``None`` where the hardware has no such unit),
    ``bandwidth`` in TB/s, ``memory`` in GB, an ``efficiency`` in (0, 1] that scales every peak
    (1: the pure roofline, a lower bound of the time), and where the figures come from."""

    name: str
    fp32: float
    bandwidth: float
    memory: float
    tf32: float | None = None
    bf16: float | None = None
    fp16: float | None = None
    fp8: float | None = None
    int8: float | None = None
    vector_fp16: float | None = None
    vector_bf16: float | None = None
    fp64: float | None = None
    efficiency: float = 1.0
    source: str = ""
    aliases: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        _check(self)

    @property
    def bytes_per_second(self) -> float:
        """The memory bandwidth in bytes per second (before ``efficiency``)."""
        return self.bandwidth * TERA

    def peak(self, rate: str) -> float | None:
        """A rate by name (one of RATES) in FLOP/s, before ``efficiency``; None where absent."""
        if rate not in RATES:
            raise ValueError(f"unknown rate {rate!r}; choose one of {', '.join(RATES)}")
        value = getattr(self, rate)
        return None if value is None else value * TERA

    @property
    def ridge(self) -> float:
        """FLOPs per byte where the BF16 tensor rate (else FP32) meets the bandwidth: the ridge point."""
        return (self.bf16 or self.fp32) / self.bandwidth


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _check(dev: Device) -> None:
    where = f"device {dev.name!r}"
    if not isinstance(dev.name, str) or not dev.name.strip():
        raise ValueError(f"a device needs a name, got {dev.name!r}")
    for name in ("fp32", "bandwidth", "memory"):
        if not _positive(getattr(dev, name)):
            raise ValueError(f"{where}: {name} must be a positive number, got {getattr(dev, name)!r}")
    for name in RATES[1:]:
        value = getattr(dev, name)
        if value is not None and not _positive(value):
            raise ValueError(f"{where}: {name} must be a positive number or absent, got {value!r}")
    if not _positive(dev.efficiency) or dev.efficiency > 1:
        raise ValueError(f"{where}: efficiency must be in (0, 1], got {dev.efficiency!r}")


# Dense peaks from the vendors' datasheets and architecture whitepapers (docs/deployment.md cites each).
_BUILTIN = (
    Device(
        "h100-sxm", fp32=66.9, tf32=494.7, bf16=989.4, fp16=989.4, fp8=1978.9, int8=1978.9,
        vector_fp16=133.8, vector_bf16=133.8, fp64=33.5, bandwidth=3.35, memory=80,
        source="NVIDIA H100 Tensor Core GPU datasheet (SXM); NVIDIA H100 Tensor Core GPU Architecture whitepaper",
        aliases=("h100", "h100-80gb", "h100-sxm5"),
    ),
    Device(
        "h200", fp32=66.9, tf32=494.7, bf16=989.4, fp16=989.4, fp8=1978.9, int8=1978.9,
        vector_fp16=133.8, vector_bf16=133.8, fp64=33.5, bandwidth=4.8, memory=141,
        source="NVIDIA H200 Tensor Core GPU datasheet (SXM); Hopper whitepaper for the vector rates",
        aliases=("h200-sxm",),
    ),
    Device(
        "a100-80gb-sxm", fp32=19.5, tf32=156, bf16=312, fp16=312, int8=624,
        vector_fp16=78, vector_bf16=39, fp64=9.7, bandwidth=2.039, memory=80,
        source="NVIDIA A100 Tensor Core GPU datasheet (80GB SXM); NVIDIA A100 Tensor Core GPU Architecture whitepaper",
        aliases=("a100", "a100-80gb", "a100-sxm", "a100-sxm4-80gb"),
    ),
    Device(
        "l40s", fp32=91.6, tf32=183, bf16=362.05, fp16=362.05, fp8=733, int8=733,
        vector_fp16=91.6, vector_bf16=91.6, bandwidth=0.864, memory=48,
        source="NVIDIA L40S datasheet; NVIDIA Ada GPU Architecture whitepaper for the vector rates",
    ),
    Device(
        "l4", fp32=30.3, tf32=60, bf16=121, fp16=121, fp8=242.5, int8=242.5,
        vector_fp16=30.3, vector_bf16=30.3, bandwidth=0.3, memory=24,
        source="NVIDIA L4 Tensor Core GPU datasheet; NVIDIA Ada GPU Architecture whitepaper for the vector rates",
    ),
    Device(
        "t4", fp32=8.1, fp16=65, int8=130, vector_fp16=16.2, bandwidth=0.32, memory=16,
        source="NVIDIA T4 Tensor Core GPU datasheet; NVIDIA Turing GPU Architecture whitepaper for the vector FP16 rate",
    ),
    Device(
        "rtx-4090", fp32=82.6, tf32=82.6, bf16=165.2, fp16=165.2, fp8=330.3, int8=660.6,
        vector_fp16=82.6, vector_bf16=82.6, bandwidth=1.008, memory=24,
        source="NVIDIA Ada GPU Architecture whitepaper, GeForce RTX 4090 column (FP32-accumulate tensor rates)",
        aliases=("4090", "geforce-rtx-4090"),
    ),
    Device(
        "cpu", fp32=0.768, bf16=0.768, fp16=0.768, int8=0.768, vector_fp16=0.768, vector_bf16=0.768,
        fp64=0.384, bandwidth=0.0896, memory=32,
        source="generic desktop CPU, not a datasheet: 8 cores x 3.0 GHz x 2 AVX2 FMA units x 8 FP32 lanes x 2 FLOPs;"
        " dual-channel DDR5-5600 (89.6 GB/s); replace it with your own figures",
    ),
)

DEVICES: dict[str, Device] = {}
_ALIASES: dict[str, str] = {}


def _key(name: str) -> str:
    return re.sub(r"[\s_]+", "-", name.strip().lower())


def register_device(
    name: str | Device, *, replace: bool = False, **figures: Any
) -> Device:
    """Add a device (or replace one with ``replace=True``): ``register_device("my-gpu", fp32=40, bf16=300,
    bandwidth=1.5, memory=48)`` in TFLOP/s, TB/s and GB, or a :class:`Device`. Returns the device."""
    if isinstance(name, Device):
        if figures:
            raise TypeError("register_device(Device) takes no other figures")
        dev = name
    else:
        known = {f.name for f in fields(Device)} - {"name"}
        unknown = sorted(set(figures) - known)
        if unknown:
            raise ValueError(f"device {name!r}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        missing = [f for f in ("fp32", "bandwidth", "memory") if f not in figures]
        if missing:
            raise ValueError(f"device {name!r}: missing {', '.join(missing)} (fp32 in TFLOP/s, bandwidth in TB/s, memory in GB)")
        if "aliases" in figures:
            figures["aliases"] = tuple(figures["aliases"])
        dev = Device(name=name, **figures)
    key = _key(dev.name)
    taken = key in DEVICES or key in _ALIASES
    if taken and not replace:
        raise ValueError(f"device {dev.name!r} is already registered; pass replace=True to change it")
    if key in _ALIASES:  # an alias becomes its own device
        del _ALIASES[key]
    DEVICES[key] = dev
    for alias in dev.aliases:
        if _key(alias) not in DEVICES:
            _ALIASES[_key(alias)] = key
    return dev


def device(name: str | Device) -> Device:
    """The registered device called ``name`` (case, spaces and underscores ignored; aliases such as
    ``"h100"`` allowed), or ``name`` itself when it is a Device."""
    if isinstance(name, Device):
        return name
    key = _key(name)
    key = _ALIASES.get(key, key)
    if key not in DEVICES:
        raise ValueError(f"unknown device {name!r}; known: {', '.join(DEVICES)} (add one with register_device or flop_devices)")
    return DEVICES[key]


def devices() -> list[str]:
    """The names of the registered devices."""
    return list(DEVICES)


def load_devices(path: str | Path, *, replace: bool = True) -> list[Device]:
    """Register every ``[devices.NAME]`` table of a TOML file; returns them. Bad entries raise
    ValueError naming the file and the device."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read devices file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"devices file {path} is not valid TOML: {exc}") from None
    tables = data.get("devices")
    if not isinstance(tables, Mapping) or not tables:
        raise ValueError(f"devices file {path} has no [devices.NAME] tables")
    out = []
    for name, figures in tables.items():
        if not isinstance(figures, Mapping):
            raise ValueError(f"devices file {path}: devices.{name} must be a table")
        try:
            out.append(register_device(str(name), replace=replace, **dict(figures)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"devices file {path}: {exc}") from None
    return out


def match_device(name: str) -> Device | None:
    """The table entry for a name as the driver reports it (``torch.cuda.get_device_name()``:
    ``"NVIDIA H200"``, ``"NVIDIA H100 80GB HBM3"``, ``"NVIDIA A100-SXM4-80GB"``, ``"Tesla T4"``), or None
    when the table has no entry for it (an H100 PCIe or NVL, an A100 40GB: register your own).
    A registered name or alias wins."""
    key = _key(name)
    if key in DEVICES or key in _ALIASES:
        return device(name)
    words = set(re.sub(r"[^a-z0-9]+", " ", name.lower()).split())
    entry = None
    if "h200" in words:
        entry = "h200"
    elif "h100" in words and not words & {"pcie", "nvl"}:
        entry = "h100-sxm"
    elif "a100" in words and "80gb" in words and "pcie" not in words:
        entry = "a100-80gb-sxm"
    elif "l40s" in words:
        entry = "l40s"
    elif "l4" in words:
        entry = "l4"
    elif "t4" in words:
        entry = "t4"
    elif "4090" in words and "laptop" not in words:
        entry = "rtx-4090"
    return DEVICES.get(entry) if entry else None


def _reset() -> None:
    """Back to the built-in table (tests)."""
    DEVICES.clear()
    _ALIASES.clear()
    for dev in _BUILTIN:
        register_device(dev)


_reset()
