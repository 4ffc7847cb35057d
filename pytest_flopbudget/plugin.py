"""pytest hooks of pytest-flopbudget: options, marker, the ``flops`` fixture, baseline and report glue.

Importing this module does not import torch: pytest loads it in every run of an
environment that has the plugin installed. torch is imported on the first
measurement. Under pytest-xdist the workers measure and check; the controller
gathers the records (they ride on the test reports), prints the report and is
the only process that writes files.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator

import pytest

from . import baseline as baseline_file
from . import hookspecs, report
from .budget import MARKER, MARKER_HELP, Budget, BudgetError, Verdict, fmt_gflops, fmt_pct, from_marker, judge, pct
from .result import FLOPS_PER_MAC, GIGA, FlopResult, Record, rollup
from .settings import Settings, add_options, resolve


class FlopBudgetWarning(pytest.PytestWarning):
    """A measurement that is not a failure but needs attention (for example: no baseline entry yet)."""


@dataclass
class RunState:
    settings: Settings
    baseline: baseline_file.Baseline
    worker: bool
    records: dict[str, Record] = field(default_factory=dict)
    collected: set[str] = field(default_factory=set)
    collection_errors: int = 0
    deselected: bool = False
    outcome: list[str] = field(default_factory=list)  # lines for the terminal summary
    write_failed: bool = False


STATE = pytest.StashKey[RunState]()
ITEM_RECORDS = pytest.StashKey[list]()


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
    config.stash[STATE] = RunState(settings, loaded, worker=hasattr(config, "workerinput"))
    config.pluginmanager.register(FlopSession(config), "flopbudget-session")


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
    recorded = state.baseline.meta
    now = environment(state.settings)
    for lib in ("torch", "torchprofile"):
        if recorded.get(lib) and now.get(lib) and recorded[lib] != now[lib]:
            lines.append(f"flopbudget: WARNING baseline recorded with {lib} {recorded[lib]}, this run uses {now[lib]}: counts may differ")
    return lines


def environment(settings: Settings) -> dict[str, str]:
    """Versions that decide a count, read from package metadata (torch is not imported)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    env = {"python": platform.python_version(), "pytest-flopbudget": __version__, "counter": settings.counter}
    for lib in ("torch", "torchprofile"):
        try:
            env[lib] = version(lib)
        except PackageNotFoundError:
            env[lib] = "not installed"
    return env


# --- the marker, checked before the test runs --------------------------------


def marker_budget(item: pytest.Item) -> Budget | None:
    marker = item.get_closest_marker(MARKER)
    return None if marker is None else from_marker(marker.args, marker.kwargs)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker(MARKER) is None:
        return
    try:
        marker_budget(item)
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

    Profiles one forward pass ``model(*args, **kwargs)``, records it against the
    running test (baseline key: the test id, or ``"<test id>#<key>"``) and checks
    it at once against the ``flop_budget`` ceiling and the baseline entry; a
    failed check fails the test here. ``key`` is reserved for the plugin: a
    model keyword argument named ``key`` cannot be passed through it.
    """

    def __init__(self, item: pytest.Item, state: RunState) -> None:
        self._item = item
        self._state = state
        self.results: dict[str | None, FlopResult] = {}

    def __call__(self, model: Any, *args: Any, key: str | None = None, **kwargs: Any) -> FlopResult:
        __tracebackhide__ = True
        if key is not None and (not isinstance(key, str) or not key):
            pytest.fail(f"flops(key=...) must be a non-empty string, got {key!r}", pytrace=False)
        if key in self.results:
            pytest.fail(
                f"{self._item.nodeid} measured {'twice' if key is None else f'key {key!r} twice'}; "
                "give each measurement of a test its own key: flops(model, x, key='encoder')",
                pytrace=False,
            )
        result = self._count(model, args, kwargs)
        self.results[key] = result
        record, verdict = self._check(result, key)
        self._item.stash.setdefault(ITEM_RECORDS, []).append(record)
        self._item.user_properties.extend(junit_properties(record))
        if verdict.warning:
            warnings.warn(FlopBudgetWarning(record.message), stacklevel=2)
        if verdict.failure:
            pytest.fail(record.message, pytrace=False)
        return result

    def _count(self, model: Any, args: tuple, kwargs: dict) -> FlopResult:
        __tracebackhide__ = True
        hook = self._item.config.hook
        problem = None
        try:
            result = hook.pytest_flopbudget_count(model=model, args=args, kwargs=kwargs, config=self._item.config)
        except Exception as exc:  # the model's or the counter's error becomes this test's failure
            problem = f"flops: could not count {type(model).__name__}: {type(exc).__name__}: {exc}{count_hint(exc)}"
        if problem:
            pytest.fail(problem, pytrace=False)
        if not isinstance(result, FlopResult):
            pytest.fail(f"flops: the counter returned {type(result).__name__}, expected a FlopResult", pytrace=False)
        for note in result.notes:
            warnings.warn(FlopBudgetWarning(f"{self._item.nodeid}: {note}"), stacklevel=3)
        return result

    def _check(self, result: FlopResult, key: str | None) -> tuple[Record, Verdict]:
        state, item = self._state, self._item
        settings = state.settings
        budget = marker_budget(item) or Budget()
        record_id = item.nodeid if key is None else f"{item.nodeid}#{key}"
        entry = state.baseline.entries.get(record_id)
        verdict = judge(
            result.macs,
            ceiling_gflops=budget.gflops,
            baseline_macs=None if entry is None else entry.macs,
            rel=settings.rel if budget.rel is None else budget.rel,
            abs_gflops=settings.abs if budget.abs is None else budget.abs,
            missing=settings.missing_policy,
            updating=settings.update,
            baseline_name=settings.baseline.name,
        )
        path, line, _ = item.location
        record = Record(
            id=record_id,
            nodeid=item.nodeid,
            key=key,
            macs=result.macs,
            params=result.params,
            status=verdict.status,
            budget_gflops=budget.gflops,
            baseline_macs=None if entry is None else entry.macs,
            location=(path, (line or 0) + 1),
            modules=compact_modules(result),
            baseline_modules=dict(entry.modules) if entry is not None else {},
            unpriced=dict(result.unpriced),
        )
        record.message = explain(record, verdict, result, settings)
        return record, verdict


@pytest.fixture
def flops(request: pytest.FixtureRequest) -> FlopMeter:
    """Profile a model's forward pass and check it: ``result = flops(model, *inputs, key=None, **kwargs)``."""
    return FlopMeter(request.node, request.config.stash[STATE])


@pytest.hookimpl(trylast=True)
def pytest_flopbudget_count(model: Any, args: tuple, kwargs: dict, config: pytest.Config) -> FlopResult:
    from .counting import count

    settings = config.stash[STATE].settings
    return count(model, args, kwargs, counter=settings.counter, mode=settings.mode)


_NO_DEVICE = ("not compiled with", "no cuda gpus", "nvidia driver", "cuda is not available", "mps backend", "no xpu")
_NEEDS_VALUES = ("cannot be called on meta tensors", "data-dependent", "data dependent")


def count_hint(exc: BaseException) -> str:
    """The fix for the errors a model commonly raises while counted, or ""."""
    text = str(exc).lower()
    if any(words in text for words in _NO_DEVICE):
        return (
            "\n  the model or its inputs use a device this machine does not have; skip the test where it is missing "
            "(@pytest.mark.skipif(not torch.cuda.is_available(), reason=...)) or keep model and inputs on a device "
            "that exists (counting on the meta device needs none)"
        )
    if any(words in text for words in _NEEDS_VALUES):
        return (
            "\n  the forward needs real values (data-dependent control flow), which meta tensors do not have; "
            "build the model and its inputs on the CPU so --flop-mode=auto can count with a real forward pass"
        )
    return ""


def compact_modules(result: FlopResult) -> dict[str, int]:
    """Per-module MACs for the baseline: list indices folded (``blocks.*.attn``), zeros dropped."""
    return {path or "<root>": macs for path, macs in sorted(rollup(result.by_module, depth=4, collapse=True).items()) if macs}


def junit_properties(record: Record) -> list[tuple[str, object]]:
    prefix = "flopbudget" if record.key is None else f"flopbudget[{record.key}]"
    values: dict[str, object] = {
        "gflops": round(record.gflops, 6),
        "macs": record.macs,
        "budget_gflops": "" if record.budget_gflops is None else record.budget_gflops,
        "baseline_gflops": "" if record.baseline_gflops is None else round(record.baseline_gflops, 6),
        "status": record.status,
    }
    return [(f"{prefix}.{name}", value) for name, value in values.items()]


# --- failure messages -------------------------------------------------------------


def explain(record: Record, verdict: Verdict, result: FlopResult, settings: Settings) -> str:
    """The whole failure (or warning) text: verdict line, where the cost is, and how to accept it."""
    if verdict.failure is None and verdict.warning is None:
        return ""
    notes = "".join(f"\n  note: {note}" for note in result.notes)
    if record.status == "new":
        return f"{verdict.failure or verdict.warning}{notes}\n  {accept_hint(record, settings)}"
    lines = [verdict.failure or "", f"  test: {record.id}", f"  measured: {record.macs:,} MACs = {fmt_gflops(record.gflops)} GFLOPs"]
    if record.budget_gflops is not None:
        lines.append(f"  budget: {fmt_gflops(record.budget_gflops)} GFLOPs (@pytest.mark.flop_budget)")
    if record.baseline_macs is not None:
        lines.append(f"  baseline: {record.baseline_macs:,} MACs = {fmt_gflops(record.baseline_gflops or 0.0)} GFLOPs ({settings.baseline.name})")
    if settings.top:
        lines.extend(_top_modules(record, settings.top))
    if record.status == "regressed" and record.baseline_modules:
        lines.extend(_module_changes(record, settings.top or 5))
    if record.unpriced:
        ops = ", ".join(f"{op} x{n}" for op, n in sorted(record.unpriced.items()))
        lines.append(f"  not priced by the counter (counted as 0): {ops}")
    lines.extend(f"  note: {note}" for note in result.notes)
    lines.append("  " + accept_hint(record, settings))
    return "\n".join(lines)


def _top_modules(record: Record, top: int) -> list[str]:
    ranked = sorted(record.modules.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    if not ranked:
        return []
    width = max(len(path) for path, _ in ranked)
    out = [f"  modules carrying the cost (top {len(ranked)} of {len(record.modules)}):"]
    for path, macs in ranked:
        share = 100.0 * macs / record.macs if record.macs else 0.0
        out.append(f"    {path:<{width}}  {fmt_gflops(FLOPS_PER_MAC * macs / GIGA):>9} GFLOPs  {share:5.1f}%")
    return out


def _module_changes(record: Record, top: int) -> list[str]:
    paths = set(record.modules) | set(record.baseline_modules)
    changes = [(p, record.modules.get(p, 0) - record.baseline_modules.get(p, 0)) for p in paths]
    grown = sorted((c for c in changes if c[1] != 0), key=lambda c: (-abs(c[1]), c[0]))[:top]
    if not grown:
        return []
    width = max(len(p) for p, _ in grown)
    out = ["  changed against the baseline:"]
    for path, delta in grown:
        old = record.baseline_modules.get(path, 0)
        change = fmt_pct(pct(old + delta, old)) if old else "new"
        out.append(f"    {path:<{width}}  {delta:+,} MACs ({change})")
    return out


def accept_hint(record: Record, settings: Settings) -> str:
    if record.status == "over-budget":
        return f"If intended: raise gflops in @pytest.mark.flop_budget on {record.nodeid} (--flop-update never accepts a budget violation)"
    target = settings.update_command(record.nodeid)
    if record.status == "new":
        return f"Record it: {target}"
    return f"If intended: {target}  (then commit {settings.baseline.name})"


# --- results travel on the test report ---------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    rep = yield
    if rep.when != "call":
        return rep
    records = item.stash.get(ITEM_RECORDS, [])
    if records:
        rep.flopbudget = [r.to_json() for r in records]
    elif rep.passed and item.get_closest_marker(MARKER) is not None:
        rep.outcome = "failed"
        rep.longrepr = (
            f"{item.nodeid} has a flop_budget marker and requests the flops fixture but measured nothing; "
            "call flops(model, *inputs) in the test"
        )
    return rep


def records(config: pytest.Config) -> list[Record]:
    """Every measurement of this run gathered so far, sorted by id (on the xdist controller: all workers').

    For a ``pytest_terminal_summary`` of your own, such as a table laid out your way.
    """
    state = config.stash.get(STATE, None)
    return [] if state is None else [state.records[rid] for rid in sorted(state.records)]


class FlopSession:
    """Per-run hooks registered in ``pytest_configure``: gather records, track collection, write files."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @property
    def state(self) -> RunState:
        return self.config.stash[STATE]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for raw in getattr(report, "flopbudget", None) or ():
            rec = Record.from_json(raw)
            self.state.records[rec.id] = rec

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.state.collection_errors += 1

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        if items:
            self.state.deselected = True

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.state.collected.update(item.nodeid for item in session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self.state.collected.update(ids)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        state = self.state
        if state.worker:
            return
        settings = state.settings
        if exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR):
            if settings.update or settings.prune:
                state.outcome.append(f"flopbudget: run interrupted; {settings.baseline.name} left unchanged")
            return
        try:
            if settings.update or settings.prune:
                _write_baseline(session, state)
            _write_reports(session.config, state)
        except (OSError, baseline_file.BaselineError) as exc:
            state.write_failed = True
            state.outcome.append(f"flopbudget: ERROR {exc}")
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.state.worker:
            terminal_summary(terminalreporter, self.state)


def _write_baseline(session: pytest.Session, state: RunState) -> None:
    settings = state.settings
    measured = {}
    if settings.update:
        measured = {
            rid: baseline_file.Entry(rec.macs, rec.modules)
            for rid, rec in sorted(state.records.items())
            if rec.status != "over-budget"
        }
    refusal = _prune_refusal(session, state) if settings.prune else None
    if refusal:
        state.outcome.append(f"flopbudget: --flop-prune skipped: {refusal}")
    env_meta = {"schema": baseline_file.SCHEMA, **{k: v for k, v in environment(settings).items() if k in ("counter", "torch", "torchprofile")}}
    summary: dict[str, Any] = {}

    def change(current: baseline_file.Baseline) -> tuple[dict, dict] | None:
        # Runs under the file's lock with the file as it is now: a concurrent
        # --flop-update of other tests is merged, never overwritten.
        prune = None
        if settings.prune and not refusal:
            prune = obsolete_ids(current.entries, state.collected, session.config)
        entries = baseline_file.updated(current.entries, measured, prune)
        if not entries and not current.exists:
            return None
        meta = env_meta
        if not measured and not prune:
            meta = dict(current.meta) or meta  # nothing changes: keep the file byte for byte
        summary["entries"] = len(entries)
        summary["changed"] = sum(1 for rid, e in measured.items() if current.entries.get(rid) != e)
        summary["removed"] = sorted(set(current.entries) - set(entries))
        return entries, meta

    written = baseline_file.update(settings.baseline, change)
    if not summary:
        state.outcome.append(f"flopbudget: nothing measured; {settings.baseline.name} not created")
        return
    removed = summary["removed"]
    verb = "wrote" if written else "unchanged:"
    state.outcome.append(
        f"flopbudget: {verb} {settings.baseline} ({summary['entries']} entries; {summary['changed']} added or changed, {len(removed)} removed)"
    )
    state.outcome.extend(f"  removed {rid}" for rid in removed)


def _prune_refusal(session: pytest.Session, state: RunState) -> str | None:
    if state.collection_errors:
        return f"{state.collection_errors} collection error(s)"
    if state.deselected:
        return "tests were deselected"
    if session.shouldfail or session.shouldstop:
        return "the run stopped early (-x/--maxfail)"
    if not state.collected:
        return "no tests were collected"
    return None


def obsolete_ids(entries: dict[str, Any], collected: set[str], config: pytest.Config) -> set[str]:
    """Entries whose test is gone: its file was collected without it, or its file no longer exists
    inside the paths this run covered."""
    files = {nid.split("::", 1)[0] for nid in collected}
    scope = [(config.invocation_params.dir / str(arg).split("::", 1)[0]).resolve() for arg in config.args]
    gone = set()
    for rid in entries:
        if rid in collected or any(rid.startswith(nid + "#") for nid in collected):
            continue
        path = rid.split("::", 1)[0]
        if path in files:
            gone.add(rid)
            continue
        full = (config.rootpath / path).resolve()
        if not full.exists() and any(full == s or s in full.parents for s in scope):
            gone.add(rid)
    return gone


def _write_reports(config: pytest.Config, state: RunState) -> None:
    settings = state.settings
    records = list(state.records.values())
    env = environment(settings)
    if settings.report_json is not None:
        import json

        data = report.json_report(records, env, str(settings.baseline))
        config.hook.pytest_flopbudget_json_report(config=config, report=data)
        _atomic_text(settings.report_json, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")
        state.outcome.append(f"flopbudget: JSON report written to {settings.report_json}")
    markdown = None
    if settings.report_md is not None:
        markdown = report.markdown_report(records, env, dict(state.baseline.meta) or None, settings.update_command())
        _atomic_text(settings.report_md, markdown)
        state.outcome.append(f"flopbudget: Markdown report written to {settings.report_md}")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if on_github(settings) and summary and records:
        markdown = markdown or report.markdown_report(records, env, dict(state.baseline.meta) or None, settings.update_command())
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(markdown + "\n")


def on_github(settings: Settings) -> bool:
    return settings.github == "auto" and os.environ.get("GITHUB_ACTIONS") == "true"


def _atomic_text(path: Any, text: str) -> None:
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def terminal_summary(tr: Any, state: RunState) -> None:
    records = list(state.records.values())
    settings = state.settings
    if settings.report and records:
        tr.write_sep("=", "FLOP REPORT")
        for line in report.terminal_table(report.sort_records(records), width=max(tr._tw.fullwidth, 160)):
            tr.write_line(line)
        tr.write_line(report.counts_line(records))
        for line in report.hints(records, settings.baseline.name, settings.update_command()):
            tr.write_line(line)
    elif records:
        counts = report.status_counts(records)
        if counts.get("improved") or counts.get("new"):
            tr.write_line("flopbudget: " + report.counts_line(records))
            for line in report.hints(records, settings.baseline.name, settings.update_command()):
                tr.write_line(line)
    for line in state.outcome:
        tr.write_line(line, red=line.startswith("flopbudget: ERROR"))
    if on_github(settings):
        for line in report.annotations(records):
            tr.write_line(line)
