"""The baseline file: exact MAC counts per test id, kept in the user's repository.

Pure stdlib plus ``tomllib``/``tomli`` (reading) and ``tomli_w`` (escaping).
Never imports torch or pytest.

The file (default ``flopbudget.toml``) looks like this::

    # pytest-flopbudget baseline: exact MAC counts per test. Update with: pytest --flop-update
    [meta]
    schema = 1
    counter = "torchprofile"
    torch = "2.13.0+cpu"

    ["tests/test_models.py::test_resnet[r18]"]
    macs = 1821047296
    gflops = 3.642094592

    ["tests/test_models.py::test_resnet[r18]".modules]
    "blocks.*.attn" = 123
    "head" = 456

A training step (``flops.train_step``) also stores its MACs per phase, and its
module paths carry their phase (``"backward/blocks.*.attn"``)::

    ["tests/test_train.py::test_step".phases]
    backward = 2000
    forward = 1000
    optimizer = 50

``macs`` is the exact integer that counts; ``gflops`` (``2 * macs / 1e9``,
written as an exact decimal) is for humans and ignored on reading. Rendering
is deterministic: tables sorted by id, modules sorted by path, phases sorted by
name, every id and module path quoted, LF line endings, no timestamps. An entry
without phases (a forward pass, or any file written before phases existed)
reads and renders exactly as before.

Where a test estimated its time on named devices (a marker's ``device=``, ``--flop-device``), the
entry keeps each device's roofline lower bound in integer nanoseconds, with the fingerprint of the
device figures it was made with (``pytest_flopbudget.deploy.figures_id``), sorted by device::

    ["tests/test_latency.py::test_decoder".time]
    "h100-sxm" = { ns = 10021, figures = "5e1c0a2b" }
    "l4" = { ns = 111901, figures = "0c9d4e21" }
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import tomli_w

from pytest_flopbudget.results.result import FLOPS_PER_MAC, GIGA

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

SCHEMA = 1
HEADER = "# pytest-flopbudget baseline: exact MAC counts per test. Update with: pytest --flop-update"
META = "meta"
ENTRY_KEYS = ("macs", "gflops", "peak_bytes", "bytes_moved", "modules", "phases", "time")
TIME_KEYS = ("ns", "figures")

FIX_MALFORMED = "fix it by hand, or delete it and rerun with --flop-update to record a fresh baseline"
_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_AT_END = re.compile(r"\s*\(at end of document\)\s*$")
_CONFLICT = re.compile(r"^(<{7}|={7}|>{7})(\s|$)")


def recorded_capture(meta: dict[str, object]) -> str | None:
    """The capture a baseline's counts were made with: ``meta.capture``, written since the default counter
    moved to the dispatch capture; before that, the counter tells (``torchprofile`` traced, ``flop_counter``
    dispatched); None when neither is recorded."""
    capture = meta.get("capture")
    if isinstance(capture, str):
        return capture
    return {"torchprofile": "trace", "flop_counter": "dispatch", "trace": "trace"}.get(str(meta.get("counter")))


class BaselineError(Exception):
    """The baseline file cannot be read or written. The message names the file and the fix."""


class Timing(NamedTuple):
    """A time estimate as the baseline keeps it: the roofline lower bound in whole nanoseconds and the
    fingerprint of the device figures it was made with (times of other figures are not compared)."""

    ns: int
    figures: str


@dataclass(frozen=True)
class Entry:
    """One measurement: exact MACs, an optional per-module breakdown and, for a training step,
    MACs per phase (compared by value)."""

    macs: int
    modules: dict[str, int] = field(default_factory=dict)
    phases: dict[str, int] = field(default_factory=dict)
    peak_bytes: int | None = None  # peak memory in bytes, where measured (None in older files)
    bytes_moved: int | None = None  # bytes moved, where measured
    time: dict[str, Timing] = field(default_factory=dict)  # device name -> estimated time, where estimated


@dataclass
class Baseline:
    """A loaded baseline file. ``exists`` is False when there was no file (then it is empty)."""

    path: Path
    entries: dict[str, Entry]
    meta: dict[str, object]
    exists: bool


# --------------------------------------------------------------------------- reading


def load(path: Path) -> Baseline:
    """Read and validate the baseline at ``path``; a missing file gives an empty Baseline.

    Raises BaselineError for a directory, an unreadable file, text that is not
    UTF-8 or not TOML, a newer schema, or entries of the wrong shape.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if raw is None:
        return Baseline(path=path, entries={}, meta={}, exists=False)
    entries, meta = _parse(path, raw)
    return Baseline(path=path, entries=entries, meta=meta, exists=True)


def loads(raw: bytes, name: str) -> Baseline:
    """Parse a baseline's bytes obtained elsewhere (``git show REF:path``); messages call it ``name``.

    Validation and errors are those of :func:`load`; the result has ``exists=True``.
    """
    entries, meta = _parse(name, raw)  # type: ignore[arg-type]  # only formatted into messages
    return Baseline(path=Path(name), entries=entries, meta=meta, exists=True)


def _read_bytes(path: Path) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    if path.is_dir():
        raise BaselineError(f"{path}: is a directory; --flop-baseline takes a file path, "
                            f"e.g. {path / 'flopbudget.toml'}")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except PermissionError:
        raise BaselineError(f"{path}: cannot read the baseline: permission denied; "
                            f"make it readable (chmod u+r {path})") from None
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read the baseline: {exc.strerror or exc}; "
                            f"check the --flop-baseline path") from None


def _parse(path: Path, raw: bytes) -> tuple[dict[str, Entry], dict[str, object]]:
    text = _decode(path, raw)
    data = _toml(path, text)
    meta = _meta(path, text, data.pop(META, {}))
    entries = {key: _entry(path, text, key, value) for key, value in data.items()}
    return entries, meta


def _decode(path: Path, raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise BaselineError(f"{path}:{line}: not UTF-8 (byte {raw[exc.start]:#04x} at offset {exc.start}); "
                            f"save it as UTF-8, or {FIX_MALFORMED}") from None
    return text[1:] if text.startswith("\ufeff") else text


def _toml(path: Path, text: str) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = tomllib.loads(text)
        return loaded
    except tomllib.TOMLDecodeError as exc:
        raise BaselineError(_syntax_message(path, text, str(exc))) from None


def _syntax_message(path: Path, text: str, message: str) -> str:
    conflict = _conflict_line(text)
    if conflict:
        return (f"{path}:{conflict}: unresolved merge conflict marker; resolve the conflict "
                f"(keep either side, then rerun with --flop-update to re-measure)")
    where = str(path)
    found = _AT.search(message)
    if found:
        where = f"{path}:{found.group(1)}:{found.group(2)}"
        message = message[: found.start()]
    elif _AT_END.search(message):
        where = f"{path}:end of file"
        message = _AT_END.sub("", message)
    hint = ""
    if "twice" in message or "overwrite" in message:
        hint = " (a test id, table or key appears twice; keep only one of them)"
    return f"{where}: not valid TOML: {message}{hint}; {FIX_MALFORMED}"


def _conflict_line(text: str) -> int | None:
    for number, line in enumerate(text.splitlines(), 1):
        if _CONFLICT.match(line):
            return number
    return None


def _meta(path: Path, text: str, meta: object) -> dict[str, object]:
    if not isinstance(meta, dict):
        raise BaselineError(f"{_where(path, text, ((), META))}: 'meta' must be a table ([meta]); {FIX_MALFORMED}")
    meta = dict(meta)
    schema = meta.setdefault("schema", SCHEMA)
    if not _is_int(schema) or schema < 1:
        where = _where(path, text, ((META,), "schema"), ((META,), None))
        raise BaselineError(f"{where}: meta.schema must be a positive integer, got {schema!r}; {FIX_MALFORMED}")
    if schema > SCHEMA:
        raise BaselineError(f"{path}: written by a newer pytest-flopbudget (baseline schema {schema}; this version "
                            f"reads schema {SCHEMA}); upgrade pytest-flopbudget (pip install -U pytest-flopbudget)")
    for key, value in meta.items():
        if not isinstance(value, (str, int, float, bool)):
            raise BaselineError(f"{_where(path, text, ((META,), key))}: meta.{key} must be a string, number or boolean, "
                                f"got {_kind(value)}; {FIX_MALFORMED}")
    return meta


def _entry(path: Path, text: str, key: str, value: object) -> Entry:
    def fail(problem: str, *at: str) -> BaselineError:
        """``at``: the keys inside the entry where the problem is, e.g. ("modules", "head")."""
        places: list[tuple[tuple[str, ...], str | None]] = [((key, *at[:-1]), at[-1]), ((key,), at[0])] if at else []
        places += [((key,), None), ((), key)]
        where = _where(path, text, *places)
        return BaselineError(f"{where}: entry {_quote(key)}: {problem}; {FIX_MALFORMED}")

    if not isinstance(value, dict):
        raise fail(f"must be a table ([{_quote(key)}] with macs = <int>), got {_kind(value)}")
    unknown = sorted(set(value) - set(ENTRY_KEYS))
    if unknown:
        raise fail(f"unknown key {unknown[0]!r} (expected macs, gflops, modules, phases, peak_bytes, bytes_moved, time; "
                   f"quote test ids that contain dots: [\"a.b::test\"])", unknown[0])
    if "macs" not in value:
        raise fail("missing 'macs' (the exact integer MAC count)")
    macs = value["macs"]
    if not _is_int(macs) or macs < 0:
        raise fail(f"'macs' must be a non-negative integer, got {_kind(macs)} {macs!r}", "macs")
    gflops = value.get("gflops", 0.0)
    if isinstance(gflops, bool) or not isinstance(gflops, (int, float)):
        raise fail(f"'gflops' must be a number, got {_kind(gflops)} {gflops!r}", "gflops")
    modules = _counts(value.get("modules", {}), "modules", "module path", fail)
    memory: dict[str, int] = {}
    for name in ("peak_bytes", "bytes_moved"):
        if name in value:
            figure = value[name]
            if not _is_int(figure) or figure < 0:
                raise fail(f"'{name}' must be a non-negative integer, got {_kind(figure)} {figure!r}", name)
            memory[name] = figure
    phases = _counts(value.get("phases", {}), "phases", "phase", fail)
    return Entry(macs=macs, modules=modules, phases=phases, time=_times(value.get("time", {}), fail), **memory)


def _times(table: object, fail: Callable[..., BaselineError]) -> dict[str, Timing]:
    """The ``time`` table: ``"<device>" = { ns = <non-negative int>, figures = "<fingerprint>" }``."""
    if not isinstance(table, dict):
        raise fail(f"'time' must be a table of device = {{ ns = <int>, figures = <string> }}, got {_kind(table)}", "time")
    out = {}
    for name, value in table.items():
        where = f"time.{_quote(name)}"
        if not isinstance(value, dict):
            raise fail(f"{where} must be {{ ns = <int>, figures = <string> }}, got {_kind(value)} {value!r}", "time", name)
        unknown = sorted(set(value) - set(TIME_KEYS))
        if unknown or set(value) != set(TIME_KEYS):
            problem = f"unknown key {unknown[0]!r}" if unknown else f"missing {' and '.join(k for k in TIME_KEYS if k not in value)}"
            raise fail(f"{where}: {problem} (expected ns = <int>, figures = <string>)", "time", name)
        ns, figures = value["ns"], value["figures"]
        if not _is_int(ns) or ns < 0:
            raise fail(f"{where}.ns must be a non-negative integer (nanoseconds), got {_kind(ns)} {ns!r}", "time", name)
        if not isinstance(figures, str):
            raise fail(f"{where}.figures must be a string, got {_kind(figures)} {figures!r}", "time", name)
        out[name] = Timing(ns, figures)
    return out


def _counts(table: object, key: str, what: str, fail: Callable[..., BaselineError]) -> dict[str, int]:
    """A table of ``<what> = <non-negative int>`` (``modules``, ``phases``)."""
    if not isinstance(table, dict):
        raise fail(f"'{key}' must be a table of {what} = <int>, got {_kind(table)}", key)
    for name, macs in table.items():
        if not _is_int(macs) or macs < 0:
            problem = f"{key}.{_quote(name)} must be a non-negative integer, got {_kind(macs)} {macs!r}"
            raise fail(problem, key, name)
    return dict(table)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    names = {dict: "a table", list: "an array", str: "string", int: "integer", float: "float"}
    return names.get(type(value), type(value).__name__)


def _where(path: Path, text: str, *places: tuple[tuple[str, ...], str | None]) -> str:
    """``path:line`` of the first of ``places`` (table, key in it) found in the text, else ``path``."""
    for table, item in places:
        line = _find_line(text, table, item)
        if line:
            return f"{path}:{line}"
    return str(path)


def _find_line(text: str, table: tuple[str, ...], item: str | None) -> int | None:
    """Best effort: parse each line alone to find ``[table]``, ``[table.item]`` or ``item = ...`` in it.

    ``table`` () is the top level.
    """
    inside = not table
    for number, line in enumerate(text.splitlines(), 1):
        parsed = _parse_line(line)
        if parsed is None:
            continue
        if line.lstrip().startswith("["):
            keys = _path_of(parsed)
            if item is not None and keys == (*table, item):
                return number
            inside = keys == table
            if inside and item is None:
                return number
        elif inside and item is not None and item in parsed:
            return number
    return None


def _parse_line(line: str) -> dict[str, Any] | None:
    try:
        parsed: dict[str, Any] = tomllib.loads(line)
        return parsed
    except tomllib.TOMLDecodeError:
        return None


def _path_of(parsed: dict[str, Any]) -> tuple[str, ...]:
    keys: list[str] = []
    while isinstance(parsed, dict) and len(parsed) == 1:
        key, parsed = next(iter(parsed.items()))
        keys.append(key)
    return tuple(keys)


# --------------------------------------------------------------------------- writing


def render(entries: Mapping[str, Entry], meta: Mapping[str, object]) -> str:
    """The file's text: header comment, ``[meta]`` (schema first, then sorted keys), sorted entries.

    ``schema`` is always written as the current SCHEMA. Meta values must be
    strings, numbers or booleans. Same input, same text.
    """
    chunks = [HEADER + "\n" + _render_meta(meta)]
    for key in sorted(entries):
        chunks.append(_render_entry(key, entries[key]))
    return "\n".join(chunks)


def _render_meta(meta: Mapping[str, object]) -> str:
    lines = [f"[{META}]", f"schema = {SCHEMA}"]
    for key in sorted(k for k in meta if k != "schema"):
        value = meta[key]
        if not isinstance(value, (str, int, float, bool)):
            raise TypeError(f"meta[{key!r}] must be a string, number or boolean, got {type(value).__name__}")
        lines.append(f"{_quote_key(key)} = {_value(value)}")
    return "\n".join(lines) + "\n"


def _render_entry(key: str, entry: Entry) -> str:
    if key == META:
        raise ValueError(f"{META!r} is reserved for the [meta] table and cannot be a test id")
    _check_count(entry.macs, f"entry {key!r}: macs")
    text = f"[{_quote(key)}]\nmacs = {entry.macs}\ngflops = {gflops_text(entry.macs)}\n"
    for name in ("peak_bytes", "bytes_moved"):
        figure = getattr(entry, name)
        if figure is not None:
            _check_count(figure, f"entry {key!r}: {name}")
            text += f"{name} = {figure}\n"
    for table, counts in (("modules", entry.modules), ("phases", entry.phases)):
        if counts:
            lines = [f"\n[{_quote(key)}.{table}]"]
            for name in sorted(counts):
                _check_count(counts[name], f"entry {key!r}: {table}[{name!r}]")
                lines.append(f"{_quote(name)} = {counts[name]}")
            text += "\n".join(lines) + "\n"
    if entry.time:
        lines = [f"\n[{_quote(key)}.time]"]
        for name in sorted(entry.time):
            ns, figures = entry.time[name]
            _check_count(ns, f"entry {key!r}: time[{name!r}].ns")
            if not isinstance(figures, str):
                raise ValueError(f"entry {key!r}: time[{name!r}].figures must be a string, got {figures!r}")
            lines.append(f"{_quote(name)} = {{ ns = {ns}, figures = {_value(figures)} }}")
        text += "\n".join(lines) + "\n"
    return text


def _check_count(value: object, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")


def gflops_text(macs: int) -> str:
    """``2 * macs / 1e9`` as an exact decimal with at most 9 places: ``3.642094592``, ``0.0``."""
    whole, frac = divmod(FLOPS_PER_MAC * macs, GIGA)
    digits = f"{frac:09d}".rstrip("0") or "0"
    return f"{whole}.{digits}"


def _value(value: object) -> str:
    return tomli_w.dumps({"v": value})[len("v = "):-1]


def _quote(key: str) -> str:
    """A TOML basic string, escaped by tomli_w: always quoted, so ids and module paths look alike."""
    return _value(str(key))


def _quote_key(key: str) -> str:
    """A meta key: bare when TOML allows it (``schema``, ``torch``), quoted otherwise."""
    return tomli_w.dumps({key: 0})[: -len(" = 0\n")]


def updated(old: Mapping[str, Entry], measured: Mapping[str, Entry], prune: set[str] | None = None) -> dict[str, Entry]:
    """New entries: ``old`` with ``measured`` added or replacing, minus the ``prune`` keys.

    A key that was measured is never pruned (it is clearly not obsolete).
    Pure: the arguments are not modified. The result is sorted by key.
    """
    merged = dict(old)
    merged.update(measured)
    for key in prune or ():
        if key not in measured:
            merged.pop(key, None)
    return {key: merged[key] for key in sorted(merged)}


def save(path: Path, entries: Mapping[str, Entry], meta: Mapping[str, object]) -> bool:
    """Write the baseline atomically if its text changed; return True when the file was written.

    Under an exclusive lock the existing file is read, validated and compared
    with the new text. If it differs, the text goes to a temporary file in the
    same directory (``.<name>.<pid>.<random>.tmp``), is flushed and fsynced,
    gets the old file's permission bits (a new file gets 0o666 minus the
    umask), and then replaces the file with ``os.replace``; the directory is
    fsynced too. A crash at any point leaves the old file or the new one,
    never a mix. The temporary file is removed on any error.

    Locking: ``fcntl.flock(LOCK_EX)`` on the file's directory (no lock file is
    left behind), so two processes saving the same baseline at once run one
    after the other and the result is one complete file. Temporary files of
    this baseline found while holding the lock belong to writers that died
    (e.g. SIGKILL) and are removed. Where ``fcntl`` is missing (Windows) there
    is no lock; the replace is still atomic.

    Refuses (BaselineError) to overwrite a file that does not load (malformed
    or written by a newer schema) or that is read-only. A symlink is followed:
    its target is replaced.
    """
    render(entries, meta)  # bad values raise before the file is touched
    return update(path, lambda current: (entries, meta))


def update(
    path: Path,
    change: Callable[[Baseline], tuple[Mapping[str, Entry], Mapping[str, object]] | None],
) -> bool:
    """Read-modify-write the baseline under one lock; return True when the file was written.

    ``change(current)`` gets the file as it is now (loaded and validated while
    the lock is held) and returns the ``(entries, meta)`` to write, or None to
    leave the file alone. Two processes updating the same file therefore run
    one after the other, and each sees the entries the other wrote (e.g. two
    ``pytest --flop-update`` runs of different tests both keep their entries).
    Writing is as in :func:`save` (atomic, mode kept, refuses a malformed or
    read-only file).
    """
    path = Path(path)
    target = Path(os.path.realpath(path))
    _make_parent(path, target.parent)
    with _locked(target.parent) as locked:
        if locked:
            _remove_stale_temps(target)
        old = _read_bytes(target)
        if old is None:
            current = Baseline(path=path, entries={}, meta={}, exists=False)
        else:
            found, meta = _parse(path, old)
            current = Baseline(path=path, entries=found, meta=meta, exists=True)
        wanted = change(current)
        if wanted is None:
            return False
        data = render(*wanted).encode("utf-8")
        if old == data:
            return False
        if old is not None and not os.access(target, os.W_OK):
            raise BaselineError(f"{path}: is read-only; make it writable (chmod u+w {path}) to update the baseline")
        _replace(path, target, data)
    return True


def _make_parent(path: Path, directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BaselineError(f"{path}: cannot create directory {directory}: {exc.strerror or exc}; "
                            f"check the --flop-baseline path") from None


@contextmanager
def _locked(directory: Path) -> Iterator[bool]:
    """Hold an exclusive flock on ``directory``; yields False when locking is not possible."""
    fd = _open_dir(directory)
    if fd is None:
        yield False
        return
    try:
        locked = _flock(fd)
        try:
            yield locked
        finally:
            if locked:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _open_dir(directory: Path) -> int | None:
    if fcntl is None:
        return None
    try:
        return os.open(directory, os.O_RDONLY)
    except OSError:
        return None


def _flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:  # e.g. a filesystem without flock support
        return False
    return True


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


def _remove_stale_temps(target: Path) -> None:
    prefix = _temp_prefix(target)
    try:
        names = os.listdir(target.parent)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and name.endswith(".tmp"):
            try:
                os.unlink(target.parent / name)
            except OSError:
                pass


def _replace(path: Path, target: Path, data: bytes) -> None:
    mode = _existing_mode(target)
    temp, fd = _create_temp(path, target)
    try:
        try:
            if mode is not None:
                os.chmod(temp, mode)
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException as exc:
        _unlink_quietly(temp)
        if isinstance(exc, OSError):
            raise BaselineError(f"{path}: cannot write the baseline: {exc.strerror or exc}; "
                                f"check free space and permissions of {target.parent}") from None
        raise
    _fsync_dir(target.parent)


def _existing_mode(target: Path) -> int | None:
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        return None


def _create_temp(path: Path, target: Path) -> tuple[Path, int]:
    """A new temp file beside ``target``; mode 0o666 minus the umask until fchmod."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temp = target.parent / f"{_temp_prefix(target)}{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            return temp, os.open(temp, flags, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise BaselineError(f"{path}: cannot create a temporary file in {target.parent}: "
                                f"{exc.strerror or exc}; make the directory writable") from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; not possible everywhere (Windows), so best effort."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
