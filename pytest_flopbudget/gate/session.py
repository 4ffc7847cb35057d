"""One run of the plugin: its state, what was collected, and the files written at the end.

``FlopSession`` is registered as a plugin in ``pytest_configure``. It gathers the
records that ride on the test reports (from xdist workers too), tracks what was
collected (for ``--flop-prune``), and on the controller alone writes the baseline
and the report files and prints the terminal summary.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from pytest_flopbudget import report
from pytest_flopbudget.baseline import store as baseline_file
from pytest_flopbudget.gate.settings import Settings
from pytest_flopbudget.report.memory import memory_table
from pytest_flopbudget.results.result import Record


@dataclass
class RunState:
    """Everything one run knows: settings, the baseline as loaded, and (on the controller) the records."""

    settings: Settings
    baseline: baseline_file.Baseline
    worker: bool
    records: dict[str, Record] = field(default_factory=dict)
    collected: set[str] = field(default_factory=set)
    collection_errors: int = 0
    deselected: bool = False
    outcome: list[str] = field(default_factory=list)  # lines for the terminal summary
    env: dict[str, str] = field(default_factory=dict)  # versions that decide a count (environment())
    base: Any = None  # base.Base: the base branch's baseline (--flop-base-ref/--flop-base), or None
    base_summary: report.BaseSummary | None = None  # set at the end of the run when there is a base


STATE = pytest.StashKey[RunState]()


def capture_of(counter: str) -> str:
    """The capture a counter runs first: the TorchScript trace for ``trace``, else the dispatch capture."""
    return "trace" if counter == "trace" else "dispatch"


def other_capture(recorded: str | None, now: str, name: str) -> str | None:
    """The note for counts of ``name`` made with another capture than this run's, or None.

    The MACs are the same with both captures wherever both run, and are compared; bytes moved (each capture
    sees its own operators: the dispatcher's decompositions move more) and the times estimated from them
    are not."""
    if recorded is None or recorded == now:
        return None
    return (f"{name} was recorded with the {recorded} capture, this run counts with the {now} capture: MACs are "
            "compared (the same wherever both run), bytes moved and time estimates are not, and module tables may "
            "name deeper modules; --flop-update records them with this capture")


def environment(settings: Settings) -> dict[str, str]:
    """Versions that decide a count, read from package metadata (torch is not imported)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from pytest_flopbudget import __version__

    env = {"python": platform.python_version(), "pytest-flopbudget": __version__, "counter": settings.counter,
           "capture": capture_of(settings.counter)}
    for lib in ("torch", "torchprofile"):
        try:
            env[lib] = version(lib)
        except PackageNotFoundError:
            env[lib] = "not installed"
    return env


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
        if state.base is not None:
            state.base_summary = base_summary(session, state)
        if exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR):
            if settings.update or settings.prune:
                state.outcome.append(f"flopbudget: run interrupted; {settings.baseline.name} left unchanged")
            return
        try:
            if settings.update or settings.prune:
                _write_baseline(session, state)
            _write_reports(session.config, state)
        except (OSError, baseline_file.BaselineError) as exc:
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
            rid: baseline_file.Entry(rec.macs, rec.modules, rec.phases, rec.peak_bytes, rec.bytes_moved, _times(rec))
            for rid, rec in sorted(state.records.items())
            if rec.status != "over-budget"
        }
    refusal = _prune_refusal(session, state) if settings.prune else None
    if refusal:
        state.outcome.append(f"flopbudget: --flop-prune skipped: {refusal}")
    env_meta = {"schema": baseline_file.SCHEMA, **{k: v for k, v in state.env.items() if k in ("counter", "capture", "torch", "torchprofile")}}
    summary: dict[str, Any] = {}

    def change(current: baseline_file.Baseline) -> tuple[dict[str, Any], dict[str, Any]] | None:
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


def _times(record: Record) -> dict[str, baseline_file.Timing]:
    """The record's time estimates as the baseline keeps them (device -> whole nanoseconds and figures)."""
    return {name: baseline_file.Timing(int(est["ns"]), str(est["figures"]))
            for name, est in sorted(record.estimates.items()) if "ns" in est and "figures" in est}


def base_summary(session: pytest.Session, state: RunState) -> report.BaseSummary:
    """What the reports say about the base beyond the records: tests gone since the base are named
    only when this run covered them all (no filter, no early stop, no collection error)."""
    base, settings = state.base, state.settings
    complete = _prune_refusal(session, state) is None and not any("::" in str(a) for a in session.config.args)
    gone = None
    if complete:
        candidates = {rid: e for rid, e in base.entries.items() if rid not in state.records}
        gone = tuple(sorted(obsolete_ids(candidates, state.collected, session.config)))
    return report.BaseSummary(
        label=base.label, source=base.source, exists=base.exists, baseline_name=settings.baseline.name,
        gate=settings.base_limit_text(), gone=gone if base.exists else (), commit=base.commit, entries=len(base.entries),
    )


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
    env = state.env
    if settings.report_json is not None:
        import json

        data = report.json_report(records, env, str(settings.baseline), base=state.base_summary)
        config.hook.pytest_flopbudget_json_report(config=config, report=data)
        _atomic_text(settings.report_json, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")
        state.outcome.append(f"flopbudget: JSON report written to {settings.report_json}")
    markdown = None
    if settings.report_md is not None:
        markdown = report.markdown_report(records, env, _meta(state), settings.update_command(), state.base_summary)
        _atomic_text(settings.report_md, markdown)
        state.outcome.append(f"flopbudget: Markdown report written to {settings.report_md}")
    if settings.report_html is not None:
        page = report.html_report(records, env, _meta(state), settings.update_command(), state.base_summary)
        _atomic_text(settings.report_html, page)
        state.outcome.append(f"flopbudget: HTML report written to {settings.report_html}")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if on_github(settings) and summary and records:
        markdown = markdown or report.markdown_report(records, env, _meta(state), settings.update_command(), state.base_summary)
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(markdown + "\n")


def on_github(settings: Settings) -> bool:
    return settings.github == "auto" and os.environ.get("GITHUB_ACTIONS") == "true"


def _atomic_text(path: Any, text: str) -> None:
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp creates 0600; a report is as readable as any new file
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def current_umask() -> int:
    """The process umask (read by setting it and putting it back: there is no other portable way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def terminal_summary(tr: Any, state: RunState) -> None:
    records = list(state.records.values())
    settings = state.settings
    if settings.report and records:
        tr.write_sep("=", "FLOP REPORT")
        width = max(tr._tw.fullwidth, 160)
        for line in report.terminal_table(report.sort_records(records), width=width, base=state.base is not None):
            tr.write_line(line)
        tr.write_line(report.CONVENTIONS_NOTE)
        for line in memory_table(records):  # only where tests measured memory
            tr.write_line(line)
        for line in report.estimate_lines(records):
            tr.write_line(line)
        tr.write_line(report.counts_line(records))
        for line in report.hints(records, settings.baseline.name, settings.update_command(), updated=settings.update):
            tr.write_line(line)
        if state.base_summary is not None:
            for line in report.base_lines(records, state.base_summary):
                tr.write_line(line)
    elif records and not settings.update:  # after --flop-update the outcome line says what was recorded
        counts = report.status_counts(records)
        if counts.get("improved") or counts.get("new"):
            tr.write_line("flopbudget: " + report.counts_line(records))
            for line in report.hints(records, settings.baseline.name, settings.update_command()):
                tr.write_line(line)
    if not settings.report and records and state.base_summary is not None:
        tr.write_line(f"flopbudget: against {state.base_summary.label}: {report.base_headline(records, state.base_summary)}")
    unpriced = report.unpriced_line(records)
    if unpriced:
        tr.write_line(unpriced, yellow=True)
    for line in state.outcome:
        tr.write_line(line, red=line.startswith("flopbudget: ERROR"))
    if on_github(settings):
        for line in report.annotations(records):
            tr.write_line(line)


def _meta(state: RunState) -> dict[str, str] | None:
    """The baseline's ``[meta]`` table as the reports show it (its values are strings), or None when empty."""
    return cast("dict[str, str]", dict(state.baseline.meta)) or None
