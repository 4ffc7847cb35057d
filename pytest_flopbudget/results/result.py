"""The result of one measurement. Plain data: importing this never imports torch."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from pytest_flopbudget.results import conventions

FLOPS_PER_MAC = 2
GIGA = 1_000_000_000

# One vocabulary of verdicts, used by the terminal, JSON, Markdown and JUnit outputs.
# ``raised``: within the baseline, but raised against the base branch beyond --flop-base-rel/--flop-base-abs.
STATUSES = ("over-budget", "regressed", "raised", "new", "improved", "ok")

# How many parts of a module path the baseline, the messages and the reports keep: None keeps the
# whole path, so every leaf module (each Linear of ``transformer.h.*.mlp``: ``c_fc`` and ``c_proj``)
# is an entry of its own at any nesting; list indices are folded (``h.*``), so a model has one entry
# per distinct module of one layer. ``--flop-module-depth``/``flopbudget_module_depth`` set it.
MODULE_DEPTH: int | None = None

_INDEX = re.compile(r"(?<=\.)\d+(?=\.|$)|^\d+(?=\.|$)")


def collapse_indices(path: str) -> str:
    """``blocks.3.attn.proj`` -> ``blocks.*.attn.proj`` (ModuleList/Sequential indices folded)."""
    return _INDEX.sub("*", path)


def rollup(by_module: dict[str, int], depth: int | None = None, collapse: bool = False) -> dict[str, int]:
    """Aggregate per-module MACs to module paths of at most ``depth`` parts.

    ``by_module`` maps the path of the module that ran an operator ("" for the
    root) to the MACs counted there, excluding its submodules. The result maps
    each truncated path to the sum of everything at or below it.
    """
    out: dict[str, int] = {}
    for path, macs in by_module.items():
        if collapse:
            path = collapse_indices(path)
        if depth is not None and path:
            path = ".".join(path.split(".")[:depth])
        out[path] = out.get(path, 0) + macs
    return out


def pct(new: float, old: float) -> float:
    """Change from ``old`` to ``new`` in percent; from 0 it is 0 (no change) or infinite."""
    if old == 0:
        return 0.0 if new == 0 else math.inf
    return 100.0 * (new - old) / old


def _gflops(macs: int | None) -> float | None:
    return None if macs is None else FLOPS_PER_MAC * macs / GIGA


def rank_modules(modules: dict[str, int], n: int) -> list[tuple[str, int]]:
    """The ``n`` module paths with the most MACs, largest first (ties by path), zeros left out."""
    ranked = sorted(modules.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(path, macs) for path, macs in ranked[:n] if macs]


PHASES = ("forward", "backward", "optimizer")  # the phases of a training step, in order
MEMORY_CATEGORIES = ("weights", "activations", "gradients", "optimizer")  # the split of peak memory
MIB = 1024 * 1024


def phase_path(phase: str, path: str) -> str:
    """A module path of a training step as the baseline stores it: ``backward/blocks.*.attn``."""
    return f"{phase}/{path}"


def _split_phase(path: str) -> tuple[str, str]:
    """``("backward/", "blocks.*.attn")`` for a training step's path; ``("", path)`` otherwise."""
    phase, sep, rest = path.partition("/")
    return (phase + sep, rest) if sep and phase in PHASES else ("", path)


def path_depth(modules: dict[str, int]) -> int:
    """The most parts any path of ``modules`` has (a phase prefix ``backward/`` and ``<root>`` not counted)."""
    rests = (_split_phase(path)[1] for path in modules)
    return max((len(rest.split(".")) for rest in rests if rest != "<root>"), default=0)


def cut_paths(modules: dict[str, int], depth: int) -> dict[str, int]:
    """``modules`` with every path cut to ``depth`` parts (keeping a phase prefix), MACs summed."""
    out: dict[str, int] = {}
    for path, macs in modules.items():
        prefix, rest = _split_phase(path)
        if rest != "<root>":
            rest = ".".join(rest.split(".")[:depth])
        key = prefix + rest
        out[key] = out.get(key, 0) + macs
    return out


def same_depth(modules: dict[str, int], reference: dict[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """Both module tables cut to the shallower of their depths, so that a baseline recorded at another
    ``--flop-module-depth`` (an older file cut at 4 parts) compares path for path instead of showing
    every module as gone and new. The depth of a table is the most parts any of its paths has."""
    if not modules or not reference:
        return modules, reference
    mine, theirs = path_depth(modules), path_depth(reference)
    if mine > theirs:
        return cut_paths(modules, theirs), reference
    if theirs > mine:
        return modules, cut_paths(reference, mine)
    return modules, reference


def module_deltas(modules: dict[str, int], reference: dict[str, int]) -> list[tuple[str, int]]:
    """``(path, MACs now - MACs in reference)`` of every module path that changed, largest change first.
    Tables of different depths are compared at the shallower one (``same_depth``)."""
    modules, reference = same_depth(modules, reference)
    paths = set(modules) | set(reference)
    changes = [(p, modules.get(p, 0) - reference.get(p, 0)) for p in paths]
    return sorted((c for c in changes if c[1] != 0), key=lambda c: (-abs(c[1]), c[0]))


@dataclass(frozen=True)
class OpCost:
    """What the calls of one operator cost, for memory traffic and time estimates.

    Calls of the same ``operator`` in the same ``module`` and ``phase``, with the same ``dtype``
    and the same per-call figures, are one entry with their number in ``calls``. ``macs``,
    ``bytes_read`` (the bytes of the tensor inputs the call reads) and ``bytes_written`` (of the
    tensors it writes) are per call. ``dtype`` is the dtype the operator computes in (its first
    floating-point input, else its first output), as ``torch.dtype`` prints without ``torch.``.
    """

    operator: str
    module: str = ""
    phase: str = ""  # "" for a forward; "forward", "backward" or "optimizer" in a training step
    dtype: str = "float32"
    macs: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    calls: int = 1

    @property
    def category(self) -> str:
        return conventions.category(self.operator)

    @property
    def bytes_moved(self) -> int:
        """Bytes read and written by all the calls (the unfused lower bound of memory traffic)."""
        return (self.bytes_read + self.bytes_written) * self.calls

    @property
    def total_macs(self) -> int:
        return self.macs * self.calls


@dataclass(frozen=True)
class FlopResult:
    """Cost of one call of a model (a forward pass), or of one training step.

    ``macs`` is exact; ``flops`` is ``2 * macs``; ``gflops`` is ``flops / 1e9``.
    A training step (``measure_train_step``, ``flops.train_step``) also has
    ``phases``: MACs of ``"forward"`` (forward and loss), ``"backward"`` and
    ``"optimizer"``, summing to ``macs``, and ``phase_modules``: each phase's
    per-module MACs. ``by_module`` and ``by_operator`` hold the whole step.
    """

    macs: int
    params: int = 0
    by_module: dict[str, int] = field(default_factory=dict)
    by_operator: dict[str, int] = field(default_factory=dict)
    unpriced: dict[str, int] = field(default_factory=dict)
    counter: str = "torchprofile"
    mode: str = "meta"
    notes: tuple[str, ...] = ()
    capture: str = "trace"  # what saw the operators: "trace" (TorchScript) or "dispatch" (every op that ran)
    phases: dict[str, int] = field(default_factory=dict)
    phase_modules: dict[str, dict[str, int]] = field(default_factory=dict)
    costs: tuple[OpCost, ...] = ()  # per-operator costs with bytes moved (empty where not recorded)
    # Peak memory (see docs/memory.md); None where not measured. ``peak_at``: (module, operator) where the
    # peak was reached; ``peak_split``: its bytes per MEMORY_CATEGORIES entry; ``peak_by_module``: the most
    # live bytes while an operator of each module (itself, not its submodules) ran; ``memory_timeline``:
    # live bytes after each operator that allocated.
    peak_bytes: int | None = None
    peak_at: tuple[str, str] = ("", "")
    peak_split: dict[str, int] = field(default_factory=dict)
    peak_by_module: dict[str, int] = field(default_factory=dict)
    memory_timeline: tuple[int, ...] = field(default=(), repr=False)

    @property
    def bytes_moved(self) -> int:
        """Bytes read and written by every operator (the unfused lower bound of memory traffic)."""
        return sum(c.bytes_moved for c in self.costs)

    def _bytes_by(self, key: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.costs:
            name = getattr(c, key)
            out[name] = out.get(name, 0) + c.bytes_moved
        return dict(sorted(out.items()))

    @property
    def bytes_by_module(self) -> dict[str, int]:
        """Bytes moved per module path (the module itself, not its submodules)."""
        return self._bytes_by("module")

    @property
    def bytes_by_operator(self) -> dict[str, int]:
        return self._bytes_by("operator")

    @property
    def bytes_by_category(self) -> dict[str, int]:
        """Bytes moved per kind of operator (``conventions.category``; copies count as ``elementwise``)."""
        return self._bytes_by("category")

    @property
    def bytes_by_dtype(self) -> dict[str, int]:
        return self._bytes_by("dtype")

    @property
    def intensity(self) -> float | None:
        """Arithmetic intensity: FLOPs per byte moved (None where no bytes were recorded)."""
        moved = self.bytes_moved
        return self.flops / moved if moved else None

    @property
    def peak_mib(self) -> float | None:
        return None if self.peak_bytes is None else self.peak_bytes / MIB

    def bytes_module_totals(self, depth: int | None = MODULE_DEPTH) -> dict[str, int]:
        """Bytes moved per module path as ``module_totals`` shapes MACs (indices folded, cut at ``depth`` parts)."""
        if not self.phases:
            return _module_totals(self.bytes_by_module, depth)
        out: dict[str, int] = {}
        for phase in PHASES:
            part: dict[str, int] = {}
            for c in self.costs:
                if c.phase == phase:
                    part[c.module] = part.get(c.module, 0) + c.bytes_moved
            for path, moved in _module_totals(part, depth).items():
                out[phase_path(phase, path)] = moved
        return dict(sorted(out.items()))

    def peak_module_totals(self) -> dict[str, int]:
        """Peak live bytes per module path, indices folded and cut at ``MODULE_DEPTH`` (the largest of those
        folded together, and of a module's submodules), the root as ``<root>``."""
        out: dict[str, int] = {}
        for path, live in self.peak_by_module.items():
            parts = collapse_indices(path).split(".")[:MODULE_DEPTH] if path else []
            for n in range(len(parts) + 1):
                key = ".".join(parts[:n]) or "<root>"
                out[key] = max(out.get(key, 0), live)
        return dict(sorted(out.items()))

    @property
    def flops(self) -> int:
        return FLOPS_PER_MAC * self.macs

    @property
    def gflops(self) -> float:
        return self.flops / GIGA

    @property
    def gmacs(self) -> float:
        return self.macs / GIGA

    @property
    def by_category(self) -> dict[str, int]:
        """MACs per kind of compute (``matmul``, ``conv``, ``attention``, ``recurrent``, ``norm``,
        ``elementwise``; see :mod:`pytest_flopbudget.conventions`), every category a key."""
        return conventions.by_category(self.by_operator)

    @property
    def published_macs(self) -> int:
        """MACs of matmul, convolution, attention and recurrent operators only: the convention of
        model cards and papers (torchvision's GFLOPS, timm's GMACs, fvcore), no elementwise terms."""
        return conventions.published_macs(self.by_category)

    def module_totals(self, depth: int | None = MODULE_DEPTH) -> dict[str, int]:
        """MACs per module path as the baseline stores them: list indices folded (``blocks.*.attn``),
        cut at ``depth`` parts (None: the whole path), zeros dropped, the root module as ``<root>``. For a training
        step each path is prefixed with its phase (``backward/blocks.*.attn``), so a change says
        which phase and which modules grew."""
        if not self.phases:
            return _module_totals(self.by_module, depth)
        out = {}
        for phase in PHASES:
            for path, macs in _module_totals(self.phase_modules.get(phase, {}), depth).items():
                out[phase_path(phase, path)] = macs
        return dict(sorted(out.items()))

    def top_modules(self, n: int = 5, depth: int | None = MODULE_DEPTH) -> list[tuple[str, int]]:
        """The ``n`` entries of ``module_totals(depth)`` with the most MACs."""
        return rank_modules(self.module_totals(depth), n)

    def __repr__(self) -> str:
        phases = "".join(f", {phase}={macs:,}" for phase, macs in self.phases.items())
        memory = "" if self.peak_bytes is None else f", peak_mib={self.peak_bytes / MIB:.1f}"
        moved = f", bytes_moved={self.bytes_moved:,}" if self.costs else ""
        return (f"FlopResult(macs={self.macs:,}, gflops={self.gflops:.3f}{phases}, params={self.params:,}{moved}{memory}, "
                f"counter={self.counter!r})")


def _module_totals(by_module: dict[str, int], depth: int | None) -> dict[str, int]:
    totals = rollup(by_module, depth=depth, collapse=True)
    return {path or "<root>": macs for path, macs in sorted(totals.items()) if macs}


@dataclass
class Record:
    """One measurement as the reports see it: what was measured, against what, and the verdict.

    ``id`` is the baseline key: the test's nodeid, or ``nodeid#key`` for a keyed measurement.
    Records travel from xdist workers to the controller as ``to_json()`` dicts.
    """

    id: str
    nodeid: str
    macs: int
    status: str
    key: str | None = None
    params: int = 0
    budget_gflops: float | None = None
    baseline_macs: int | None = None
    message: str = ""
    location: tuple[str, int] | None = None
    modules: dict[str, int] = field(default_factory=dict)
    baseline_modules: dict[str, int] = field(default_factory=dict)
    unpriced: dict[str, int] = field(default_factory=dict)
    categories: dict[str, int] = field(default_factory=dict)  # MACs per conventions.CATEGORIES entry
    phases: dict[str, int] = field(default_factory=dict)  # a training step's MACs per phase (PHASES)
    baseline_phases: dict[str, int] = field(default_factory=dict)


    # Memory, where measured (memory=True, a memory limit, or a baseline entry with memory figures):
    peak_bytes: int | None = None
    bytes_moved: int | None = None
    peak_at: tuple[str, str] | None = None  # (module, operator) of the peak
    peak_split: dict[str, int] = field(default_factory=dict)
    budget_peak_mib: float | None = None
    budget_bytes_gb: float | None = None
    baseline_peak_bytes: int | None = None
    baseline_bytes_moved: int | None = None
    memory_timeline: list[int] = field(default_factory=list)  # live bytes over the call, downsampled (the chart)
    base: str | None = None  # the base compared with (--flop-base-ref/--flop-base), None without one
    base_macs: int | None = None  # the test's MACs in the base; None: new against the base (or no base)
    base_modules: dict[str, int] = field(default_factory=dict)
    base_phases: dict[str, int] = field(default_factory=dict)  # a training step's MACs per phase in the base
    # time estimates (docs/deployment.md): device -> {"ms", "bound", "share"}, for --flop-device and a marker's device
    estimates: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (plus "ns", the estimate in whole nanoseconds as the baseline keeps it, and "figures", the fingerprint of
    # the device figures it was made with)
    budget_ms: float | None = None  # the marker's ms= ceiling on the estimate on budget_device
    budget_device: str | None = None
    baseline_time_ns: dict[str, int] = field(default_factory=dict)  # device -> the baseline's time (same figures only)
    time_notes: list[str] = field(default_factory=list)  # why a time was not compared (other figures, unknown device)

    @property
    def gflops(self) -> float:
        return FLOPS_PER_MAC * self.macs / GIGA

    @property
    def published_macs(self) -> int | None:
        """MACs of the published convention (matmul, conv, attention, recurrent); None when not recorded."""
        return conventions.published_macs(self.categories) if self.categories else None

    @property
    def published_gmacs(self) -> float | None:
        """``published_macs`` in billions: the unit of model cards and papers (GMACs)."""
        macs = self.published_macs
        return None if macs is None else macs / GIGA

    @property
    def baseline_gflops(self) -> float | None:
        return _gflops(self.baseline_macs)

    @property
    def delta_pct(self) -> float | None:
        """Change against the baseline in percent (None without a baseline)."""
        return None if self.baseline_macs is None else pct(self.macs, self.baseline_macs)

    @property
    def base_gflops(self) -> float | None:
        return _gflops(self.base_macs)

    @property
    def base_delta_pct(self) -> float | None:
        """Change against the base in percent (None without a base entry)."""
        return None if self.base_macs is None else pct(self.macs, self.base_macs)

    def base_module_changes(self) -> list[tuple[str, int]]:
        """Module paths whose MACs changed against the base, largest change first."""
        return module_deltas(self.modules, self.base_modules) if self.base_macs is not None else []

    def reference(self) -> tuple[str, int | None, dict[str, int]]:
        """What the charts compare this record with: the base where the run has one (``("base",
        base MACs, base phases)``), else the baseline."""
        if self.base is not None:
            return "base", self.base_macs, self.base_phases
        return "baseline", self.baseline_macs, self.baseline_phases

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["location"] = list(self.location) if self.location else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        data = dict(data)
        loc = data.get("location")
        data["location"] = (loc[0], int(loc[1])) if loc else None
        if data.get("peak_at") is not None:
            data["peak_at"] = tuple(data["peak_at"])
        return cls(**data)
