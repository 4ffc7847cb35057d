"""Command-line options, their ini twins, and the effective settings of a run.

Precedence, lowest first: built-in default < ini (``[tool.pytest.ini_options]``,
``pytest.ini``, ...) < command line < the test's ``flop_budget`` marker.
Every value is validated once, at configure time, so a bad one is a usage
error before any test runs.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_flopbudget.engine.options import OPTIONS as MEASURE_OPTIONS
from pytest_flopbudget.gate.budget import BudgetError, fraction, text_number

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Option:
    name: str  # attribute and ini suffix: --flop-<name with dashes>, flopbudget_<name>
    kind: str  # flag | path | text | fraction | number | int | choice | depth
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--flop-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        """The ini key, also the option's ``dest``: ``config.getoption("flopbudget_rel")``."""
        return "flopbudget_" + self.name


OPTIONS = (
    Option("report", "flag", False, "print the FLOP REPORT table at the end of the run"),
    Option("report_json", "path", None, "write the FLOP report as JSON to PATH", metavar="PATH"),
    Option("report_md", "path", None, "write the FLOP report as Markdown (for a pull-request comment) to PATH", metavar="PATH"),
    Option("report_html", "path", None, "write the FLOP report as one self-contained HTML page with charts to PATH", metavar="PATH"),
    Option("baseline", "path", "flopbudget.toml", "baseline file (default: flopbudget.toml in the rootdir)", metavar="PATH"),
    Option("update", "flag", False, "write the measured counts of the tests that ran into the baseline (accepts growth, never a budget violation)"),
    Option("prune", "flag", False, "remove baseline entries of tests that no longer exist (only on a run of every test)"),
    Option("rel", "fraction", 0.0, "allowed growth over the baseline as a fraction (0.02) or percentage (2%%); default 0", metavar="REL"),
    Option("abs", "number", 0.0, "allowed growth over the baseline in GFLOPs; default 0", metavar="GFLOPS"),
    Option("missing", "choice", "auto", "a test without baseline entry: fail, warn, or auto (fail when $CI is set, else warn)", ("fail", "warn", "auto")),
    Option("counter", "choice", "torchprofile", "how operators are captured: torchprofile (default: torchprofile's numbers from every dispatched aten op), flop_counter (the same capture) or trace (the TorchScript trace torchprofile runs, slower); all priced by one rule registry", MEASURE_OPTIONS["counter"]),
    Option("mode", "choice", "auto", "where to count: auto (meta device, real run only when the model needs values), meta, or real", MEASURE_OPTIONS["mode"]),
    Option("unpriced", "choice", "fail", "a matmul/conv/attention/recurrent-class operator without a rule: fail the measurement (default) or warn and count without it", MEASURE_OPTIONS["unpriced"]),
    Option("top", "int", 5, "how many modules a failure message lists; default 5", metavar="N"),
    Option("base", "path", None, "compare every test with a baseline file taken from the base branch (reports only, unless --flop-base-rel/--flop-base-abs)", metavar="PATH"),
    Option("base_ref", "text", None, "compare every test with the baseline file as it is at a git ref such as origin/main (read with git show; reports only, unless --flop-base-rel/--flop-base-abs)", metavar="REF"),
    Option("base_rel", "fraction", None, "fail a test raised against the base by more than REL, a fraction (0.02) or percentage (2%%); default: the base only informs", metavar="REL"),
    Option("base_abs", "number", None, "fail a test raised against the base by more than GFLOPS; default: the base only informs", metavar="GFLOPS"),
    Option("memory", "flag", False, "measure peak memory and bytes moved in every test and keep them in the baseline (a test measures them anyway when its marker sets peak_mib= or bytes_gb=, or its baseline entry has them)"),
    Option("module_depth", "depth", "all", "how many parts of a module path the baseline, messages and reports keep: all (default; every Linear of a layer is its own entry: h.*.mlp.c_fc, h.*.mlp.c_proj) or N (h.*.mlp at 3); a baseline recorded at another depth is compared at the shallower one", metavar="N|all"),
    Option("default_gflops", "number", None, "GFLOPs ceiling of every measurement whose flop_budget marker sets no gflops (tests without a marker too); default: none", metavar="GFLOPS"),
    Option("github", "choice", "auto", "GitHub Actions output (step summary, ::error annotations): auto (when $GITHUB_ACTIONS is true) or off", ("auto", "off")),
    Option("device", "text", None, "estimate each measurement's time on these devices (comma-separated names of the device table, e.g. h100-sxm,l4) and show it in the reports", metavar="NAMES"),
    Option("devices", "path", None, "a TOML file of [devices.NAME] tables added to (or replacing entries of) the device table", metavar="PATH"),
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("flopbudget", "FLOP budgets and baselines (pytest-flopbudget)")
    for opt in OPTIONS:
        if opt.kind == "flag":
            group.addoption(opt.flag, action="store_true", default=None, dest=opt.ini, help=opt.help)
        else:
            kw: dict[str, Any] = {"metavar": opt.metavar} if opt.metavar else {}
            if opt.choices:
                kw["choices"] = opt.choices
            group.addoption(opt.flag, action="store", default=None, dest=opt.ini, help=opt.help, **kw)
        default = "" if opt.default in (None, False) else str(opt.default)
        ini_help = opt.help.replace("%%", "%")  # argparse formats option help with %; ini help is shown as is
        parser.addini(opt.ini, f"{ini_help} (ini twin of {opt.flag})", default=default)


def ci_is_set(environ: Any = os.environ) -> bool:
    """True when the CI variable is set to anything but empty, 0 or false."""
    return environ.get("CI", "").strip().lower() not in ("", "0", "false")


@dataclass(frozen=True)
class Settings:
    report: bool
    report_json: Path | None
    report_md: Path | None
    report_html: Path | None
    baseline: Path
    update: bool
    prune: bool
    rel: float
    abs: float
    missing: str  # as configured: fail | warn | auto
    counter: str
    mode: str
    unpriced: str
    top: int
    github: str
    baseline_arg: str | None = None  # --flop-baseline as typed on the command line
    base: Path | None = None  # --flop-base: a baseline file of the base branch
    base_ref: str | None = None  # --flop-base-ref: a git ref whose baseline file is the base
    base_rel: float | None = None  # a raise against the base beyond these fails; None: not set
    base_abs: float | None = None
    memory: bool = False  # --flop-memory: measure memory in every test
    device: str | None = None  # --flop-device: devices to estimate the time on, comma-separated
    devices: Path | None = None  # --flop-devices: a TOML file of devices

    @property
    def device_names(self) -> tuple[str, ...]:
        """The table names of --flop-device, in the order given, without repeats."""
        if not self.device:
            return ()
        from pytest_flopbudget.deploy.devices import device

        names = (device(part).name for part in self.device.split(",") if part.strip())
        return tuple(dict.fromkeys(names))
    module_depth: int | None = None  # None: whole module paths
    default_gflops: float | None = None  # the ceiling where no marker gives one

    @property
    def base_gate(self) -> bool:
        """True when a raise against the base can fail a test (--flop-base-rel or --flop-base-abs given)."""
        return self.base_rel is not None or self.base_abs is not None

    def base_limit_text(self) -> str:
        """The base gate as the options spell it: ``--flop-base-rel=2%``, ``--flop-base-abs=0.5``."""
        parts = []
        if self.base_rel is not None:
            parts.append(f"--flop-base-rel={100 * self.base_rel:g}%")
        if self.base_abs is not None:
            parts.append(f"--flop-base-abs={self.base_abs:g}")
        return " ".join(parts)

    def update_command(self, nodeid: str | None = None) -> str:
        """The command that records measured counts (for one test when ``nodeid`` is given)."""
        target = f' "{nodeid}"' if nodeid else ""
        where = f" --flop-baseline={self.baseline_arg}" if self.baseline_arg else ""
        return f"pytest{target} --flop-update{where}"

    @property
    def missing_policy(self) -> str:
        """``missing`` with auto resolved against the CI environment variable."""
        if self.missing == "auto":
            return "fail" if ci_is_set() else "warn"
        return self.missing

    def header(self, entries: int, exists: bool) -> str:
        base = f"{self.baseline} ({entries} entries)" if exists else f"{self.baseline} (not found: empty)"
        missing = self.missing_policy + (" [auto, CI]" if self.missing == "auto" and ci_is_set() else " [auto]" if self.missing == "auto" else "")
        write = "update" + (" + prune" if self.prune else "") if self.update or self.prune else "read-only"
        return (
            f"flopbudget: baseline {base}, {write}; rel={self.rel:g} abs={self.abs:g} GFLOPs; "
            f"missing={missing}; counter={self.counter} mode={self.mode}"
            + ("" if self.default_gflops is None else f"; default budget {self.default_gflops:g} GFLOPs")
            + ("" if self.module_depth is None else f"; module depth {self.module_depth}")
        )


def _convert(opt: Option, raw: str, where: str, base: Path) -> Any:
    what = f"{where} {opt.flag if where == 'option' else opt.ini}"
    if opt.kind == "flag":
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise BudgetError(f"{what} must be true or false, got {raw!r}")
    if opt.kind == "path":
        return (base / raw).resolve() if raw.strip() else None
    if opt.kind == "text":
        return raw.strip() or None
    if opt.kind == "fraction":
        return fraction(raw, what)
    if opt.kind == "number":
        return text_number(raw, what)
    if opt.kind == "depth":
        text = raw.strip().lower()
        if text in ("all", "0"):
            return None
        try:
            depth = int(text)
        except ValueError:
            raise BudgetError(f"{what} must be a whole number of path parts (1, 2, ...) or all, got {raw!r}") from None
        if depth < 1:
            raise BudgetError(f"{what} must be >= 1 or all, got {depth}")
        return depth
    if opt.kind == "int":
        try:
            value = int(raw.strip())
        except ValueError:
            raise BudgetError(f"{what} must be a whole number, got {raw!r}") from None
        if value < 0:
            raise BudgetError(f"{what} must be >= 0, got {value}")
        return value
    if raw.strip() not in opt.choices:
        raise BudgetError(f"{what} must be one of {', '.join(opt.choices)}, got {raw!r}")
    return raw.strip()


def resolve(config: pytest.Config) -> Settings:
    """Read every option (command line over ini over default); raise UsageError on a bad value."""
    values: dict[str, Any] = {}
    ini_dir = config.inipath.parent if config.inipath else config.rootpath
    for opt in OPTIONS:
        cli = config.getoption(opt.ini)
        ini = config.getini(opt.ini)
        try:
            if cli is not None:
                value = True if cli is True else _convert(opt, str(cli), "option", config.invocation_params.dir)
            elif isinstance(ini, str) and ini.strip():
                value = _convert(opt, ini, "ini", ini_dir)
            elif opt.kind == "path" and opt.default:
                value = config.rootpath / opt.default
            elif opt.kind == "depth":
                value = _convert(opt, str(opt.default), "option", ini_dir)
            else:
                value = opt.default
        except BudgetError as exc:
            raise pytest.UsageError(f"pytest-flopbudget: {exc}") from None
        values[opt.name] = value
    settings = Settings(**values, baseline_arg=config.getoption("flopbudget_baseline"))
    _check_paths(settings)
    _check_devices(settings)
    given = {opt.name for opt in OPTIONS if config.getoption(opt.ini) is not None}
    return _check_base(settings, given)


def _check_base(settings: Settings, given: set[str]) -> Settings:
    """Validate the base options. A base limit set only in the ini file is inactive in a run without a
    base (a local run of a repository whose CI passes --flop-base-ref); on the command line it is an error."""
    if settings.base is not None and settings.base_ref is not None:
        raise pytest.UsageError(
            "pytest-flopbudget: --flop-base and --flop-base-ref both name a base (options or ini); "
            "give one: --flop-base-ref=origin/main reads the base through git, --flop-base=PATH takes a file"
        )
    if settings.base_gate and settings.base is None and settings.base_ref is None:
        if not given & {"base_rel", "base_abs"}:
            return dataclasses.replace(settings, base_rel=None, base_abs=None)
        raise pytest.UsageError(
            f"pytest-flopbudget: {settings.base_limit_text()} limits a raise against the base, but no base "
            "is given; add --flop-base-ref=origin/main (or --flop-base=PATH)"
        )
    if settings.base is not None and settings.base.is_dir():
        raise pytest.UsageError(
            f"pytest-flopbudget: --flop-base {settings.base} is a directory; give the base's baseline file"
        )
    return settings


def _check_devices(settings: Settings) -> None:
    """Load --flop-devices and check every --flop-device name; a bad file or name is a usage error."""
    from pytest_flopbudget.deploy.devices import load_devices

    try:
        if settings.devices is not None:
            load_devices(settings.devices)
        settings.device_names  # noqa: B018 - resolves every name
    except ValueError as exc:
        raise pytest.UsageError(f"pytest-flopbudget: --flop-device/--flop-devices: {exc}") from None


def _check_paths(settings: Settings) -> None:
    if settings.baseline.is_dir():
        raise pytest.UsageError(
            f"pytest-flopbudget: baseline path {settings.baseline} is a directory; "
            "--flop-baseline/flopbudget_baseline take a file path such as flopbudget.toml"
        )
    for opt_name in ("report_json", "report_md", "report_html"):
        path = getattr(settings, opt_name)
        if path is None:
            continue
        flag = "--flop-" + opt_name.replace("_", "-")
        if path.is_dir():
            raise pytest.UsageError(f"pytest-flopbudget: {flag} {path} is a directory; give a file path")
        if not path.parent.is_dir():
            raise pytest.UsageError(
                f"pytest-flopbudget: {flag} {path}: directory {path.parent} does not exist; create it first"
            )


