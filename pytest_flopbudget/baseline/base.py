"""The base baseline: ``flopbudget.toml`` as the pull request's base branch has it.

``--flop-base=PATH`` names a file taken from the base branch; ``--flop-base-ref=REF``
reads the baseline file as it is at a git ref (``git show REF:path``, the path of the
baseline inside the repository). Either is parsed by :mod:`pytest_flopbudget.baseline`,
so a base file is held to the same rules as the baseline itself.

git runs as a subprocess without a shell, with a timeout, never prompting. Every problem
is a ``BaseError`` whose message names the fix; the plugin turns it into a usage error
before any test runs. No baseline file at the ref is not an error: the base is then empty
and every test is new against it. Plain data and the standard library; no torch, no pytest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_flopbudget.baseline import store as baseline_file

GIT_TIMEOUT = 30.0  # seconds for one git command; reading a blob takes milliseconds

_WITHOUT_BASE = "or pass a base file with --flop-base=PATH"


class BaseError(Exception):
    """The base cannot be read. The message names the fix."""


@dataclass(frozen=True)
class Base:
    """The base's entries and where they came from.

    ``label`` is what the reports call the base (the ref as given, or the file name);
    ``source`` what the messages point at (``origin/main:flopbudget.toml`` or a path).
    ``exists`` is False when the ref has no baseline file (then ``entries`` is empty).
    """

    label: str
    source: str
    entries: dict[str, baseline_file.Entry] = field(default_factory=dict)
    exists: bool = True
    commit: str | None = None  # the commit a ref resolved to
    capture: str | None = None  # the capture its counts were made with (store.recorded_capture)

    def header(self) -> str:
        """The run header's line about the base (printed once)."""
        where = f" = {self.commit[:12]}" if self.commit else ""
        if not self.exists:
            return (f"flopbudget: base {self.label}{where}: no {self.source.rsplit(':', 1)[-1]} there; "
                    "every test is new against the base")
        return f"flopbudget: base {self.source}{where} ({len(self.entries)} entries)"

    def to_json(self) -> dict[str, Any]:
        """Plain data for an xdist worker (``workerinput``): workers then never run git."""
        return {
            "label": self.label,
            "source": self.source,
            "exists": self.exists,
            "commit": self.commit,
            "capture": self.capture,
            "entries": {
                rid: [e.macs, dict(e.modules), dict(e.phases), e.peak_bytes, e.bytes_moved, {d: list(t) for d, t in e.time.items()}]
                for rid, e in self.entries.items()
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Base:
        entries = {
            rid: baseline_file.Entry(int(row[0]), dict(row[1]), dict(row[2]) if len(row) > 2 else {},
                                     peak_bytes=row[3] if len(row) > 3 else None, bytes_moved=row[4] if len(row) > 4 else None,
                                     time={d: baseline_file.Timing(int(t[0]), str(t[1])) for d, t in row[5].items()} if len(row) > 5 else {})
            for rid, row in data["entries"].items()
        }
        return cls(data["label"], data["source"], entries, bool(data["exists"]), data.get("commit"), data.get("capture"))


# --------------------------------------------------------------------------- a file


def from_file(path: Path, shown: str) -> Base:
    """The base from a baseline file (``--flop-base=PATH``; ``shown`` is the path as given)."""
    path = Path(path)
    if not path.exists():
        raise BaseError(f"--flop-base {shown}: no such file; check the path (it is read relative to the current "
                        f"directory), or read the base from git with --flop-base-ref=origin/main")
    try:
        loaded = baseline_file.load(path)
    except baseline_file.BaselineError as exc:
        raise BaseError(f"--flop-base: {_base_problem(exc)}; fix the base file or pass another one") from None
    return Base(label=path.name, source=str(path), entries=loaded.entries, exists=True,
                capture=baseline_file.recorded_capture(loaded.meta))


# --------------------------------------------------------------------------- a git ref


def from_ref(ref: str, baseline: Path, rootdir: Path, timeout: float = GIT_TIMEOUT) -> Base:
    """The base: ``baseline`` (a path inside the repository that holds ``rootdir``) as it is at ``ref``."""
    git = _Git(rootdir, timeout)
    if not ref.strip() or ref.startswith("-") or any(c in ref for c in "\0\n\r"):
        raise BaseError(f"--flop-base-ref {ref!r} is not a git ref; give a branch, tag or commit such as origin/main")
    top = git.toplevel()
    inside = _inside(baseline, top)
    commit = git.commit(ref)
    spec = f"{commit}:{inside}"
    source = f"{ref}:{inside}"
    kind = git.run("cat-file", "-t", spec, check=False)
    if kind.returncode != 0:
        return Base(label=ref, source=source, entries={}, exists=False, commit=commit)
    if kind.stdout.strip() != "blob":
        raise BaseError(f"--flop-base-ref: {source} is a {kind.stdout.strip()}, not a file; "
                        "point --flop-baseline at the baseline file")
    raw = git.run("show", spec, text=False).stdout
    try:
        loaded = baseline_file.loads(raw, source)
    except baseline_file.BaselineError as exc:
        raise BaseError(f"--flop-base-ref: {_base_problem(exc)}; fix the file on that branch "
                        f"(or point --flop-base-ref at another ref)") from None
    return Base(label=ref, source=source, entries=loaded.entries, exists=True, commit=commit,
                capture=baseline_file.recorded_capture(loaded.meta))


def _inside(baseline: Path, top: Path) -> str:
    """The baseline's path relative to the repository root, with forward slashes."""
    target = Path(os.path.realpath(baseline))
    try:
        return target.relative_to(top).as_posix()
    except ValueError:
        raise BaseError(f"--flop-base-ref: the baseline {baseline} lies outside the git repository {top}; "
                        f"move it into the repository, {_WITHOUT_BASE}") from None


def _base_problem(exc: baseline_file.BaselineError) -> str:
    """The baseline parser's message without its advice for the local file (rerunning --flop-update
    rewrites the local baseline, never the base)."""
    text = str(exc)
    advice = "; " + baseline_file.FIX_MALFORMED
    return text[: -len(advice)] if text.endswith(advice) else text


class _Git:
    def __init__(self, cwd: Path, timeout: float) -> None:
        self.cwd = Path(cwd)
        self.timeout = timeout
        self.exe = shutil.which("git")
        if self.exe is None:
            raise BaseError(f"--flop-base-ref needs git, which is not on PATH; install git, {_WITHOUT_BASE}")

    def run(self, *args: str, check: bool = True, text: bool = True) -> subprocess.CompletedProcess[Any]:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
        command: Sequence[str] = [self.exe or "git", *args]
        try:
            done = subprocess.run(
                command, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                timeout=self.timeout, check=False, text=text,
            )
        except subprocess.TimeoutExpired:
            raise BaseError(f"--flop-base-ref: `git {' '.join(args)}` took over {self.timeout:g} s; "
                            f"check the repository in {self.cwd}, {_WITHOUT_BASE}") from None
        except OSError as exc:
            raise BaseError(f"--flop-base-ref: cannot run git: {exc.strerror or exc}; {_WITHOUT_BASE}") from None
        if check and done.returncode != 0:
            err = done.stderr if text else done.stderr.decode("utf-8", "replace")
            raise BaseError(f"--flop-base-ref: `git {' '.join(args)}` failed: {err.strip() or done.returncode}")
        return done

    def toplevel(self) -> Path:
        done = self.run("rev-parse", "--show-toplevel", check=False)
        if done.returncode != 0:
            raise BaseError(f"--flop-base-ref: {self.cwd} is not inside a git repository; run pytest in a clone "
                            f"of the repository, {_WITHOUT_BASE}")
        return Path(os.path.realpath(done.stdout.strip()))

    def commit(self, ref: str) -> str:
        done = self.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        if done.returncode == 0:
            return str(done.stdout).strip()
        shallow = self.run("rev-parse", "--is-shallow-repository", check=False).stdout.strip() == "true"
        branch = ref.split("/", 1)[1] if ref.startswith("origin/") else ref
        fetch = f"git fetch origin {branch}:refs/remotes/origin/{branch}" if ref.startswith("origin/") else f"git fetch origin {ref}"
        if shallow:
            raise BaseError(
                f"--flop-base-ref: {ref} is not in this shallow clone; fetch the base: `{fetch}` "
                f"(or `git fetch --unshallow`; in GitHub Actions give actions/checkout `fetch-depth: 0`)"
            )
        raise BaseError(f"--flop-base-ref: no commit {ref!r} in this repository; check the name "
                        f"(`git branch -a` lists branches) or fetch it: `{fetch}`")


def for_settings(settings: Any, rootdir: Path) -> Base | None:
    """The base the settings name (``--flop-base`` or ``--flop-base-ref``), or None when there is none."""
    if settings.base is not None:
        return from_file(settings.base, str(settings.base))
    if settings.base_ref is not None:
        return from_ref(settings.base_ref, settings.baseline, rootdir)
    return None
