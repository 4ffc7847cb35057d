"""pytest hooks of pytest-flopbudget: options, marker, the ``flops`` fixture, baseline and report glue.

Importing this module does not import torch: pytest loads it in every run of an
environment that has the plugin installed. torch is imported on the first
measurement. Under pytest-xdist the workers measure and check; the controller
gathers the records (they ride on the test reports), prints the report and is
the only process that writes files.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Generator
from typing import Any

import pytest

from pytest_flopbudget.baseline import base as base_file
from pytest_flopbudget.baseline import store as baseline_file
from pytest_flopbudget.gate import hookspecs
from pytest_flopbudget.gate.budget import (
    MARKER,
    MARKER_HELP,
    Budget,
    BudgetError,
    Verdict,
    from_marker,
    judge,
    judge_base,
    judge_time,
)
from pytest_flopbudget.gate.memory import judge_memory, judge_memory_base
from pytest_flopbudget.gate.messages import count_hint, explain, junit_properties
from pytest_flopbudget.gate.session import (
    STATE,
    FlopSession,
    RunState,
    capture_of,
    environment,
    other_capture,
    records,
)
from pytest_flopbudget.gate.settings import Settings, add_options, resolve
from pytest_flopbudget.gate.timing import comparable, judge_time_base, judge_time_growth, to_ns
from pytest_flopbudget.report.memory import downsample
from pytest_flopbudget.results.result import FlopResult, Record

__all__ = ["FlopBudgetWarning", "FlopMeter", "records"]

ITEM_RECORDS = pytest.StashKey[list[Any]]()
ITEM_BUDGET = pytest.StashKey[Budget]()
WORKER_BASE = "flopbudget_base"  # workerinput key: the controller's base as plain data


class FlopBudgetWarning(pytest.PytestWarning):
    """A measurement that is not a failure but needs attention (for example: no baseline entry yet)."""


# --- configuration -----------------------------------------------------------


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    settings = resolve(config)
    if settings.prune:
        _refuse_filtered_prune(config)
    try:
        loaded = baseline_file.load(settings.baseline)
    except baseline_file.BaselineError as exc:
        raise pytest.UsageError(f"pytest-flopbudget: {exc}") from None
    worker = hasattr(config, "workerinput")
    state = RunState(settings, loaded, worker=worker, env=environment(settings), base=_load_base(config, settings))
    config.stash[STATE] = state
    config.pluginmanager.register(FlopSession(config), "flopbudget-session")
    _register_pytest_html(config)


def _register_pytest_html(config: pytest.Config) -> None:
    """FLOP columns in pytest-html's report: only when it is installed, enabled and writing one (--html),
    and only on the controller, which writes it."""
    if hasattr(config, "workerinput") or not config.pluginmanager.hasplugin("html"):
        return
    if not config.getoption("htmlpath", None):
        return
    from pytest_flopbudget.gate import htmlplugin

    config.pluginmanager.register(htmlplugin, "flopbudget-html")


def _load_base(config: pytest.Config, settings: Settings) -> base_file.Base | None:
    """The base of this run; an xdist worker gets the controller's (it never runs git itself)."""
    shipped = getattr(config, "workerinput", {}).get(WORKER_BASE)
    if shipped is not None:
        return base_file.Base.from_json(shipped)
    try:
        return base_file.for_settings(settings, config.rootpath)
    except base_file.BaseError as exc:
        raise pytest.UsageError(f"pytest-flopbudget: {exc}") from None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist, on the controller: hand the base to the worker as plain data."""
    state = node.config.stash.get(STATE, None)
    if state is not None and state.base is not None:
        node.workerinput[WORKER_BASE] = state.base.to_json()


def _refuse_filtered_prune(config: pytest.Config) -> None:
    opt = config.option
    filters = [
        ("-k", getattr(opt, "keyword", "")),
        ("-m", getattr(opt, "markexpr", "")),
        ("--deselect", getattr(opt, "deselect", None)),
        ("--lf", getattr(opt, "lf", False)),
        ("--sw", getattr(opt, "stepwise", False)),
        ("a test id argument", any("::" in str(arg) for arg in config.args)),
    ]
    used = [name for name, value in filters if value]
    if used:
        raise pytest.UsageError(
            f"pytest-flopbudget: --flop-prune needs a run of every test, but this run is filtered by "
            f"{', '.join(used)}; run without the filter to prune (or drop --flop-prune)"
        )


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = config.stash.get(STATE, None)
    if state is None:
        return []
    lines = [state.settings.header(len(state.baseline.entries), state.baseline.exists)]
    if config.inipath is None and config.getoption("flopbudget_baseline") is None:
        lines.append(no_ini_warning(config))
    if state.base is not None:
        gate = state.settings.base_limit_text()
        lines.append(state.base.header() + (f"; a raise beyond {gate} fails" if gate else "; reports only"))
    recorded, now = state.baseline.meta, state.env
    for name in ("counter", "torch", "torchprofile"):
        if recorded.get(name) and now.get(name) and recorded[name] != now[name]:
            lines.append(f"flopbudget: WARNING baseline recorded with {name} {recorded[name]}, this run uses {now[name]}: counts may differ")
    lines.extend(f"flopbudget: WARNING {note}" for note in _capture_notes(state) if note)
    return lines


def no_ini_warning(config: pytest.Config) -> str:
    """The header's warning for a run without a configuration file: pytest then picks the rootdir from
    where it runs and what it is given, and the baseline path moves with it."""
    return (
        f"flopbudget: WARNING no pytest configuration file (pytest.ini, pyproject.toml [tool.pytest.ini_options], "
        f"tox.ini, setup.cfg): the baseline path depends on where pytest is run from (here {config.rootpath}); "
        "add a [tool.pytest.ini_options] table to pyproject.toml at the repository root to fix it there"
    )


# --- the marker, checked before the test runs --------------------------------


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return
    try:
        item.stash[ITEM_BUDGET] = from_marker(marker.args, marker.kwargs)
        problem = None
    except BudgetError as exc:
        problem = str(exc)
    if problem:
        pytest.fail(f"invalid flop_budget marker on {item.nodeid}: {problem}", pytrace=False)
    if "flops" not in getattr(item, "fixturenames", ()):
        pytest.fail(
            f"{item.nodeid} has a flop_budget marker but does not use the flops fixture, so nothing "
            "would be checked; add a `flops` argument and call flops(model, *inputs)",
            pytrace=False,
        )


# --- the fixture --------------------------------------------------------------


class FlopMeter:
    """The ``flops`` fixture: ``flops(model, *args, key=None, **kwargs) -> FlopResult``.

    Profiles one forward pass ``model(*args, **kwargs)`` (``flops.train_step(...)``: one
    training step), records it against the running test (baseline key: the test id, or
    ``"<test id>#<key>"``) and checks it at once against the ``flop_budget`` ceiling and
    the baseline entry; a failed check fails the test here. ``key`` is reserved for the
    plugin: a model keyword argument named ``key`` cannot be passed through it (nor
    ``loss`` and ``optimizer`` through ``train_step``).
    """

    def __init__(
        self, item: pytest.Item, state: RunState, options: dict[str, Any] | None = None, results: dict[str | None, FlopResult] | None = None
    ) -> None:
        self._item = item
        self._state = state
        self._options = dict(options or {})
        self.results: dict[str | None, FlopResult] = {} if results is None else results

    def meta(self) -> Any:
        """``with flops.meta(): model, x = Net(), torch.empty(...)``: build on the ``meta`` device (no
        memory, no arithmetic) with the fast path on; the same as ``with torch.device("meta"):`` but
        without torch's Python meta kernels for the weight init (a GPT-2 124M: 0.1 s, not seconds)."""
        from pytest_flopbudget.engine.fastmeta import on_meta

        return on_meta()

    def using(self, **options: Any) -> FlopMeter:
        """This fixture with counting options of its own: ``flops.using(unpriced="warn")(model, x)``.

        ``counter``, ``mode`` and ``unpriced`` as in ``--flop-counter``/``--flop-mode``/``--flop-unpriced``;
        they override the run's settings for the measurements made through the returned meter.
        """
        __tracebackhide__ = True
        from pytest_flopbudget.engine.options import check_options

        try:
            check_options(options)
        except ValueError as exc:
            pytest.fail(f"flops.using: {exc}", pytrace=False)
        return FlopMeter(self._item, self._state, {**self._options, **options}, self.results)

    def __call__(self, model: Any, *args: Any, key: str | None = None, **kwargs: Any) -> FlopResult:
        __tracebackhide__ = True
        hook = self._item.config.hook
        config = self._item.config
        options = {**self._options, "memory": True} if self._wants_memory(key) else self._options
        return self._measure(
            model, key, lambda: hook.pytest_flopbudget_count(model=model, args=args, kwargs=kwargs, config=config, options=options)
        )

    def train_step(
        self, model: Any, *args: Any, loss: Any = None, optimizer: Any = None, key: str | None = None, **kwargs: Any
    ) -> FlopResult:
        """Count and check one training step: forward and ``loss(output)`` (default: the output's ``loss``,
        else its sum), backward, and one steady-state step of ``optimizer`` (an Optimizer over the model's
        parameters, never stepped itself, or a factory ``params -> Optimizer``), all on the meta device.
        ``result.phases`` maps "forward", "backward" and "optimizer" to MACs."""
        __tracebackhide__ = True
        from pytest_flopbudget.engine.capture.training import count_train_step

        unpriced = self._options.get("unpriced", self._state.settings.unpriced)
        memory = self._wants_memory(key)
        return self._measure(
            model, key,
            lambda: count_train_step(model, args, kwargs, loss=loss, optimizer=optimizer, unpriced=unpriced, memory=memory),
        )

    def _wants_memory(self, key: str | None) -> bool:
        """Measure memory: asked for (--flop-memory, flops.using(memory=True)), a memory limit in the marker,
        or a baseline entry that has memory figures (so an update keeps them)."""
        if self._options.get("memory") or self._state.settings.memory:
            return True
        budget = self._item.stash.get(ITEM_BUDGET, Budget())
        if budget.peak_mib is not None or budget.bytes_gb is not None:
            return True
        entry = self._state.baseline.entries.get(self._item.nodeid if key is None else f"{self._item.nodeid}#{key}")
        return entry is not None and (entry.peak_bytes is not None or entry.bytes_moved is not None)

    def _measure(self, model: Any, key: str | None, counting: Callable[[], Any]) -> FlopResult:
        __tracebackhide__ = True
        if key is not None and (not isinstance(key, str) or not key):
            pytest.fail(f"flops(key=...) must be a non-empty string, got {key!r}", pytrace=False)
        if key in self.results:
            pytest.fail(
                f"{self._item.nodeid} measured {'twice' if key is None else f'key {key!r} twice'}; "
                "give each measurement of a test its own key: flops(model, x, key='encoder')",
                pytrace=False,
            )
        result = self._count(model, counting)
        self.results[key] = result
        record, verdict = self._check(result, key)
        self._item.stash.setdefault(ITEM_RECORDS, []).append(record)
        self._item.user_properties.extend(junit_properties(record))
        if verdict.warning:
            warnings.warn(FlopBudgetWarning(record.message), stacklevel=3)
        for note in record.time_notes:
            warnings.warn(FlopBudgetWarning(f"{record.id}: {note}"), stacklevel=3)
        if verdict.failure:
            pytest.fail(record.message, pytrace=False)
        return result

    def _count(self, model: Any, counting: Callable[[], Any]) -> FlopResult:
        __tracebackhide__ = True
        problem = None
        try:
            result = counting()
        except Exception as exc:  # the model's or the counter's error becomes this test's failure
            problem = f"flops: could not count {type(model).__name__}: {type(exc).__name__}: {exc}{count_hint(exc, model)}"
        if problem:
            pytest.fail(problem, pytrace=False)
        if not isinstance(result, FlopResult):
            pytest.fail(f"flops: the counter returned {type(result).__name__}, expected a FlopResult", pytrace=False)
        for note in result.notes:
            warnings.warn(FlopBudgetWarning(f"{self._item.nodeid}: {note}"), stacklevel=4)
        return result

    def _check(self, result: FlopResult, key: str | None) -> tuple[Record, Verdict]:
        state, item = self._state, self._item
        settings = state.settings
        budget = item.stash.get(ITEM_BUDGET, Budget())
        default_budget = budget.gflops is None and settings.default_gflops is not None
        ceiling = settings.default_gflops if default_budget else budget.gflops
        record_id = item.nodeid if key is None else f"{item.nodeid}#{key}"
        entry = state.baseline.entries.get(record_id)
        capture_notes = _capture_notes(state)
        if entry is not None and capture_notes[0]:  # counts of another capture: its bytes and times are not compared
            entry = dataclasses.replace(entry, bytes_moved=None, time={})
        verdict = judge(
            result.macs,
            ceiling_gflops=ceiling,
            baseline_macs=None if entry is None else entry.macs,
            rel=settings.rel if budget.rel is None else budget.rel,
            abs_gflops=settings.abs if budget.abs is None else budget.abs,
            missing=settings.missing_policy,
            updating=settings.update,
            baseline_name=settings.baseline.name,
        )
        base = state.base
        base_entry = None if base is None else base.entries.get(record_id)
        if base_entry is not None and capture_notes[1]:
            base_entry = dataclasses.replace(base_entry, bytes_moved=None, time={})
        if base is not None and verdict.failure is None and verdict.status not in ("over-budget", "regressed"):
            raised = judge_base(
                result.macs,
                base_macs=None if base_entry is None else base_entry.macs,
                rel=settings.base_rel,
                abs_gflops=settings.base_abs,
                base_label=base.label,
                updating=settings.update,
            )
            verdict = raised or verdict
        devices, time_notes = _time_devices(settings.device_names, entry, settings.baseline.name)
        estimates, time_verdict = _estimate_times(result, budget, devices)
        if entry is not None and entry.time and not estimates:
            time_notes.append(f"the times in {settings.baseline.name} not compared: this measurement has no per-operator "
                              "costs (FlopResult.costs is empty), so no time is estimated")
        if time_verdict is not None and verdict.failure is None and verdict.status != "over-budget":
            verdict = time_verdict
        path, line, _ = item.location
        record = Record(
            id=record_id,
            nodeid=item.nodeid,
            key=key,
            macs=result.macs,
            params=result.params,
            status=verdict.status,
            budget_gflops=ceiling,
            baseline_macs=None if entry is None else entry.macs,
            location=(path, (line or 0) + 1),
            modules=result.module_totals(settings.module_depth),
            baseline_modules=dict(entry.modules) if entry is not None else {},
            unpriced=dict(result.unpriced),
            categories=result.by_category,
            phases=dict(result.phases),
            baseline_phases=dict(entry.phases) if entry is not None else {},
            base=None if base is None else base.label,
            base_macs=None if base_entry is None else base_entry.macs,
            base_modules={} if base_entry is None else dict(base_entry.modules),
            estimates=estimates,
            budget_ms=budget.ms,
            budget_device=budget.device,
            base_phases={} if base_entry is None else dict(base_entry.phases),
            time_notes=time_notes,
        )
        verdict = _memory_verdict(record, verdict, result, budget, entry, base_entry, state)
        verdict = _time_verdict(record, verdict, budget, entry, base_entry, state)
        record.message = explain(record, verdict, result, settings, "" if base is None else base.source, default_budget=default_budget)
        if verdict.failure or verdict.warning:
            record.message += "".join(f"\n  note: {note}" for note in capture_notes if note)
        return record, verdict


def _capture_notes(state: RunState) -> tuple[str | None, str | None]:
    """The notes for a baseline and a base recorded with another capture than this run's (None where the same)."""
    now = state.env.get("capture") or capture_of(state.settings.counter)
    recorded = other_capture(baseline_file.recorded_capture(state.baseline.meta), now, state.settings.baseline.name)
    base = state.base
    against = None if base is None else other_capture(base.capture, now, f"the base {base.label}")
    return recorded, against


def _memory_verdict(record: Record, verdict: Verdict, result: FlopResult, budget: Budget, entry: Any, base_entry: Any,
                    state: RunState) -> Verdict:
    """Fill the record's memory figures (where measured) and judge them when the FLOPs passed (gate/memory.py)."""
    if result.peak_bytes is None:
        return verdict
    record.peak_bytes, record.bytes_moved = result.peak_bytes, result.bytes_moved
    record.peak_at, record.peak_split = result.peak_at, dict(result.peak_split)
    record.budget_peak_mib, record.budget_bytes_gb = budget.peak_mib, budget.bytes_gb
    record.memory_timeline = downsample(result.memory_timeline)
    if entry is not None:
        record.baseline_peak_bytes, record.baseline_bytes_moved = entry.peak_bytes, entry.bytes_moved
    if verdict.failure is not None or verdict.status in ("over-budget", "regressed", "raised"):
        return verdict
    settings = state.settings
    found = judge_memory(record, rel=settings.rel if budget.rel is None else budget.rel, updating=settings.update,
                         baseline_name=settings.baseline.name)
    if found is None and base_entry is not None and state.base is not None:
        found = judge_memory_base(record, base_peak=base_entry.peak_bytes, base_moved=base_entry.bytes_moved,
                                  rel=settings.base_rel, base_label=state.base.label, updating=settings.update)
    if found is None:
        return verdict
    record.status = found.status
    return found


def _time_devices(devices: tuple[str, ...], entry: Any, baseline_name: str) -> tuple[list[str], list[str]]:
    """The run's devices and those the baseline entry has times on (so they are compared, and an update keeps
    them); a note for each device of the entry this run does not know."""
    from pytest_flopbudget.deploy.devices import device

    wanted, notes = list(devices), []
    for name in sorted(entry.time) if entry is not None else ():
        try:
            known = device(name).name
        except ValueError:
            notes.append(f"{baseline_name} has a time on {name!r}, a device this run does not know; not compared "
                         "(register it in a conftest.py or pass --flop-devices; --flop-update would drop it)")
            continue
        if known not in wanted:
            wanted.append(known)
    return wanted, notes


def _time_verdict(record: Record, verdict: Verdict, budget: Budget, entry: Any, base_entry: Any, state: RunState) -> Verdict:
    """Compare the estimates with the baseline's and the base's times (gate/timing.py) when everything else passed."""
    if not record.estimates:
        return verdict
    settings = state.settings
    if entry is not None:
        record.baseline_time_ns = comparable(record, entry.time, settings.baseline.name)
    base_ns = {} if base_entry is None or state.base is None else comparable(record, base_entry.time, f"the base {state.base.label}")
    if verdict.failure is not None or verdict.status in ("over-budget", "regressed", "raised"):
        return verdict
    found = judge_time_growth(record, rel=settings.rel if budget.rel is None else budget.rel, updating=settings.update,
                              baseline_name=settings.baseline.name)
    if found is None and state.base is not None:
        found = judge_time_base(record, base_ns, rel=settings.base_rel, base_label=state.base.label, updating=settings.update)
    if found is None:
        return verdict
    record.status = found.status
    return found


def _estimate_times(result: FlopResult, budget: Budget, devices: list[str]) -> tuple[dict[str, dict[str, Any]], Verdict | None]:
    """The roofline estimate on each reporting device and on the marker's, and the time budget's verdict.

    A result without per-operator costs has no estimate: the report devices are left out, a time
    budget fails with the reason (nothing real is ever priced as zero)."""
    from pytest_flopbudget.deploy.roofline import estimate, figures_id

    wanted = list(dict.fromkeys([*devices, *([budget.device] if budget.device else [])]))
    if not wanted:
        return {}, None
    if not result.costs and result.macs:
        if budget.ms is None:
            return {}, None
        return {}, Verdict(
            "over-budget",
            f"time budget ms={budget.ms:g} on {budget.device} cannot be checked: this measurement has no per-operator "
            "costs (FlopResult.costs is empty; the capture did not record bytes moved)",
        )
    estimates: dict[str, dict[str, Any]] = {}
    for name in wanted:
        est = estimate(result, name)
        share = est.memory_share if est.bound == "memory" else est.compute_share
        estimates[name] = {"ms": est.ms, "bound": est.bound, "share": share, "ns": to_ns(est.ms), "figures": figures_id(name)}
    verdict = None
    if budget.ms is not None and budget.device is not None:
        got = estimates[budget.device]
        verdict = judge_time(got["ms"], budget.ms, budget.device, got["bound"], got["share"])
    return estimates, verdict


@pytest.fixture
def flops(request: pytest.FixtureRequest) -> FlopMeter:
    """Profile a model's forward pass and check it: ``result = flops(model, *inputs, key=None, **kwargs)``."""
    return FlopMeter(request.node, request.config.stash[STATE])


@pytest.hookimpl(trylast=True)
def pytest_flopbudget_count(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any], config: pytest.Config, options: dict[str, Any]) -> FlopResult:
    from pytest_flopbudget.engine.count import count

    settings = config.stash[STATE].settings
    chosen = {"counter": settings.counter, "mode": settings.mode, "unpriced": settings.unpriced, **options}
    return count(model, args, kwargs, **chosen)


# --- results travel on the test report ---------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep = yield
    if rep.when != "call":
        return rep
    records = item.stash.get(ITEM_RECORDS, [])
    if records:
        rep.flopbudget = [r.to_json() for r in records]  # type: ignore[attr-defined]  # read by the controller and htmlplugin
    elif rep.passed and item.get_closest_marker(MARKER) is not None:
        rep.outcome = "failed"
        rep.longrepr = (
            f"{item.nodeid} has a flop_budget marker and requests the flops fixture but measured nothing; "
            "call flops(model, *inputs) in the test"
        )
    return rep


