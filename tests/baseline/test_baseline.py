"""Unit tests for the baseline file: format, validation, atomic saves, updates."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_flopbudget.baseline import store as baseline
from pytest_flopbudget.baseline.store import (
    Baseline,
    BaselineError,
    Entry,
    load,
    render,
    save,
    updated,
)

META = {"counter": "torchprofile", "torch": "2.13.0+cpu", "torchprofile": "0.1.0"}
R18 = "tests/test_models.py::test_resnet[r18]"

EXAMPLE = """\
# pytest-flopbudget baseline: exact MAC counts per test. Update with: pytest --flop-update
[meta]
schema = 1
counter = "torchprofile"
torch = "2.13.0+cpu"
torchprofile = "0.1.0"

["tests/test_models.py::test_resnet[r18]"]
macs = 1821047296
gflops = 3.642094592

["tests/test_models.py::test_resnet[r18]".modules]
"blocks.*.attn" = 123
"head" = 456

["tests/test_models.py::test_vit#encoder"]
macs = 0
gflops = 0.0
"""

TRICKY_IDS = [
    "tests/test_a.py::test_x[1-2]",
    'tests/test_a.py::test_q["quoted"]',
    "tests/test_a.py::test_q['single']",
    "tests/test_ü.py::test_ñ[日本語-🎉]",
    "tests/a.py::Class::test#key",
    "tests/a.py::test[C:\\path\\to]",
    "tests/a.py::test[with spaces  and\ttab]",
    "tests/a.py::test[a.b.c]",
    "tests/a.py::test[line\nbreak\r\x00\x7f\u2028]",
    "]]\"[[ = ",
    "meta.x",
    "",
]


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode())
    return path


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


needs_permissions = pytest.mark.skipif(is_root() or sys.platform == "win32", reason="root bypasses file permissions")


# --------------------------------------------------------------------------- format


def test_render_exact_format() -> None:
    entries = {
        "tests/test_models.py::test_vit#encoder": Entry(0),
        R18: Entry(1821047296, {"head": 456, "blocks.*.attn": 123}),
    }
    assert render(entries, META) == EXAMPLE


def test_render_is_lf_utf8_and_ends_with_newline() -> None:
    text = render({"tests/ü.py::t": Entry(1)}, META)
    assert "\r" not in text and text.endswith("\n") and not text.endswith("\n\n")
    assert text.encode("utf-8").decode("utf-8") == text


def test_render_empty() -> None:
    assert render({}, {}) == baseline.HEADER + "\n[meta]\nschema = 1\n"


@pytest.mark.parametrize(
    ("macs", "text"),
    [(0, "0.0"), (1, "0.000000002"), (500_000_000, "1.0"), (1821047296, "3.642094592"), (2**62, "9223372036.854775808")],
)
def test_gflops_text_is_exact_decimal(macs: int, text: str) -> None:
    assert baseline.gflops_text(macs) == text
    assert tomllib.loads(f"g = {text}")["g"] == pytest.approx(2 * macs / 1e9)


def test_render_deterministic_regardless_of_insertion_order() -> None:
    forward = {key: Entry(i, {"b": 1, "a": 2, "c.0": 3}) for i, key in enumerate(TRICKY_IDS)}
    backward = {key: Entry(forward[key].macs, {"c.0": 3, "a": 2, "b": 1}) for key in reversed(TRICKY_IDS)}
    meta_backward = dict(reversed(list(META.items())))
    assert render(forward, META) == render(backward, meta_backward) == render(forward, META)


def test_render_sorts_tables_and_modules() -> None:
    entries = {"b": Entry(1), "a": Entry(2, {"z": 1, "m": 2, "a": 3}), "c": Entry(3)}
    text = render(entries, META)
    headers = [line for line in text.splitlines() if line.startswith('["')]
    assert headers == ['["a"]', '["a".modules]', '["b"]', '["c"]']
    assert text.index('"a" = 3') < text.index('"m" = 2') < text.index('"z" = 1')


def test_one_blank_line_between_tables() -> None:
    text = render({"a": Entry(1, {"x": 1}), "b": Entry(2)}, META)
    assert "\n\n\n" not in text
    for header in ('["a"]', '["a".modules]', '["b"]'):
        assert f"\n\n{header}\n" in text


def test_meta_schema_first_and_forced() -> None:
    text = render({}, {"zeta": "z", "schema": 1, "alpha": "a", "flops per mac": 2})
    assert text.splitlines()[1:] == ["[meta]", "schema = 1", "alpha = \"a\"", '"flops per mac" = 2', 'zeta = "z"']


def test_render_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="meta"):
        render({"meta": Entry(1)}, {})
    with pytest.raises(ValueError, match="non-negative"):
        render({"x": Entry(-1)}, {})
    with pytest.raises(ValueError, match="non-negative"):
        render({"x": Entry(True)}, {})
    with pytest.raises(ValueError, match="modules"):
        render({"x": Entry(1, {"a": 1.5})}, {})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="meta"):
        render({}, {"versions": {"torch": "2"}})


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("key", TRICKY_IDS)
def test_tricky_ids_round_trip(tmp_path: Path, key: str) -> None:
    entries = {key: Entry(7, {key: 3, "": 1})}
    path = tmp_path / "flopbudget.toml"
    assert save(path, entries, META)
    loaded = load(path)
    assert loaded.entries == entries and list(loaded.entries) == [key]


def test_load_example(tmp_path: Path) -> None:
    loaded = load(write(tmp_path / "f.toml", EXAMPLE))
    assert loaded == Baseline(
        path=tmp_path / "f.toml",
        entries={
            R18: Entry(1821047296, {"blocks.*.attn": 123, "head": 456}),
            "tests/test_models.py::test_vit#encoder": Entry(0),
        },
        meta={"schema": 1, **META},
        exists=True,
    )


def test_missing_file_is_empty(tmp_path: Path) -> None:
    loaded = load(tmp_path / "nope.toml")
    assert loaded == Baseline(path=tmp_path / "nope.toml", entries={}, meta={}, exists=False)


def test_missing_meta_is_schema_1(tmp_path: Path) -> None:
    loaded = load(write(tmp_path / "f.toml", '["t"]\nmacs = 5\n'))
    assert loaded.meta == {"schema": 1} and loaded.entries == {"t": Entry(5)}


def test_crlf_and_bom_load(tmp_path: Path) -> None:
    data = "\ufeff" + EXAMPLE.replace("\n", "\r\n")
    loaded = load(write(tmp_path / "f.toml", data))
    assert loaded.entries == load(write(tmp_path / "g.toml", EXAMPLE)).entries


def test_gflops_disagreeing_with_macs_is_ignored(tmp_path: Path) -> None:
    loaded = load(write(tmp_path / "f.toml", '["t"]\nmacs = 5\ngflops = 123.0\n\n["u"]\nmacs = 6\ngflops = 7\n'))
    assert loaded.entries == {"t": Entry(5), "u": Entry(6)}


def test_inline_modules_and_literal_keys_load(tmp_path: Path) -> None:
    loaded = load(write(tmp_path / "f.toml", "['t']\nmacs = 5\nmodules = { head = 2, 'a.b' = 3 }\n"))
    assert loaded.entries == {"t": Entry(5, {"head": 2, "a.b": 3})}


MALFORMED = [
    # (text, line, words in the message)
    ('["t"]\nmacs = \n', "2:8", ["not valid TOML", "Invalid value"]),
    ('["t"]\nmacs = 1\n["t"]\nmacs = 2\n', "3:5", ["twice", "appears twice"]),
    ('["t"]\nmacs = 1\nmacs = 2\n', "3:9", ["overwrite", "appears twice"]),
    ('["t"]\nmacs = [1,\n', "end of file", ["not valid TOML"]),
    ('<<<<<<< HEAD\n["t"]\nmacs = 1\n=======\n["t"]\nmacs = 2\n>>>>>>> branch\n', "1", ["merge conflict"]),
    ('["t"]\nmacs = "5"\n', "2", ['"t"', "'macs'", "non-negative integer", "string"]),
    ('["t"]\nmacs = 5.0\n', "2", ['"t"', "'macs'", "float"]),
    ('["t"]\nmacs = -5\n', "2", ['"t"', "'macs'", "-5"]),
    ('["t"]\nmacs = true\n', "2", ['"t"', "'macs'", "boolean"]),
    ('["t"]\ngflops = 1.0\n', "1", ['"t"', "missing 'macs'"]),
    ('["t"]\nmacs = 1\ngflops = "big"\n', "3", ['"t"', "'gflops'", "number"]),
    ('["t"]\nmacs = 1\ngflops = false\n', "3", ['"t"', "'gflops'", "boolean"]),
    ('["t"]\nmacs = 1\nmodules = 3\n', "3", ['"t"', "'modules'", "table"]),
    ('["t"]\nmacs = 1\n\n["t".modules]\n"a" = 1\n"b" = -2\n', "6", ['"t"', 'modules."b"', "non-negative"]),
    ('["t"]\nmacs = 1\n\n["t".modules]\n"a" = 1.5\n', "5", ['"t"', 'modules."a"', "float"]),
    ('["t"]\nmacs = 1\nmodules = { a = true }\n', "3", ['"t"', 'modules."a"', "boolean"]),
    ('["t"]\nmacs = 1\nmac = 2\n', "3", ['"t"', "unknown key 'mac'"]),
    ("[tests.test_a]\nmacs = 1\n", "1", ['"tests"', "unknown key 'test_a'", "quote test ids"]),
    ('["t"]\nmacs = 1\ntime = 5\n', "3", ['"t"', "'time' must be a table of device", "integer"]),
    ('["t"]\nmacs = 1\n\n["t".time]\n"l4" = 5\n', "5", ['"t"', 'time."l4" must be { ns = <int>, figures = <string> }']),
    ('["t"]\nmacs = 1\n\n["t".time]\n"l4" = { ns = 5 }\n', "5", ['time."l4": missing figures']),
    ('["t"]\nmacs = 1\n\n["t".time]\n"l4" = { ns = 5, figures = "a", ms = 1 }\n', "5", ["time.\"l4\": unknown key 'ms'"]),
    ('["t"]\nmacs = 1\n\n["t".time]\n"l4" = { ns = 0.5, figures = "a" }\n', "5", ['time."l4".ns', "nanoseconds", "float"]),
    ('["t"]\nmacs = 1\n\n["t".time]\n"l4" = { ns = 5, figures = 7 }\n', "5", ['time."l4".figures must be a string']),
    ('"t" = 5\n', "1", ['"t"', "must be a table"]),
    ('meta = "x"\n', "1", ["'meta' must be a table"]),
    ('[meta]\nschema = "1"\n', "2", ["meta.schema", "positive integer"]),
    ("[meta]\nschema = 0\n", "2", ["meta.schema", "positive integer"]),
    ("[meta]\nschema = 1\ntorch = [2, 1]\n", "3", ["meta.torch", "array", "string, number or boolean"]),
]


@pytest.mark.parametrize(("text", "line", "words"), MALFORMED)
def test_malformed_names_file_line_and_fix(tmp_path: Path, text: str, line: str, words: list[str]) -> None:
    path = write(tmp_path / "flopbudget.toml", text)
    with pytest.raises(BaselineError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}:")
    for word in words:
        assert word in message
    assert "--flop-update" in message or "fix it by hand" in message


def test_newer_schema_says_upgrade(tmp_path: Path) -> None:
    path = write(tmp_path / "f.toml", '[meta]\nschema = 2\n\n["t"]\nfancy = 1\n')
    with pytest.raises(BaselineError, match=r"newer pytest-flopbudget \(baseline schema 2; this version reads schema 1\)"):
        load(path)
    with pytest.raises(BaselineError, match="pip install -U pytest-flopbudget"):
        save(path, {"t": Entry(1)}, META)
    assert "schema = 2" in path.read_text()


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    path.write_bytes(b'["t"]\nmacs = 1 # \xff\n')
    with pytest.raises(BaselineError, match=rf"^{re.escape(str(path))}:2: not UTF-8 \(byte 0xff at offset 17\)"):
        load(path)


def test_directory_path(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="is a directory; --flop-baseline takes a file path") as info:
        load(tmp_path)
    assert str(info.value).startswith(str(tmp_path))
    with pytest.raises(BaselineError, match="is a directory"):
        save(tmp_path, {}, META)


@needs_permissions
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path / "f.toml", EXAMPLE)
    path.chmod(0)
    try:
        with pytest.raises(BaselineError, match=r"cannot read the baseline: permission denied; make it readable"):
            load(path)
    finally:
        path.chmod(0o644)


# --------------------------------------------------------------------------- saving


def test_save_new_file_and_unchanged_second_time(tmp_path: Path) -> None:
    path = tmp_path / "flopbudget.toml"
    entries = {R18: Entry(5, {"x": 1})}
    assert save(path, entries, META) is True
    assert path.read_text() == render(entries, META)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = path.stat()
    assert save(path, dict(entries), dict(META)) is False
    after = path.stat()
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)
    assert os.listdir(tmp_path) == ["flopbudget.toml"]


def test_save_rewrites_when_different_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "flopbudget.toml"
    save(path, {"a": Entry(1)}, META)
    assert save(path, {"a": Entry(2)}, META) is True
    assert load(path).entries == {"a": Entry(2)}
    assert save(path, {"a": Entry(2)}, {**META, "torch": "3.0"}) is True
    assert load(path).meta["torch"] == "3.0"
    assert os.listdir(tmp_path) == ["flopbudget.toml"]


def test_save_rewrites_crlf_file_as_lf(tmp_path: Path) -> None:
    text = render({"a": Entry(1)}, META)
    path = write(tmp_path / "f.toml", text.replace("\n", "\r\n"))
    assert save(path, {"a": Entry(1)}, META) is True
    assert path.read_bytes() == text.encode()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_save_preserves_mode(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    save(path, {"a": Entry(1)}, META)
    path.chmod(0o600)
    assert save(path, {"a": Entry(2)}, META)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o664)
    assert save(path, {"a": Entry(3)}, META)
    assert stat.S_IMODE(path.stat().st_mode) == 0o664


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_new_file_mode_honours_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        save(tmp_path / "f.toml", {"a": Entry(1)}, META)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.toml").stat().st_mode) == mode


def test_save_refuses_to_overwrite_malformed_file(tmp_path: Path) -> None:
    path = write(tmp_path / "f.toml", '["t"]\nmacs = oops\n')
    with pytest.raises(BaselineError, match=rf"^{re.escape(str(path))}:2:8: not valid TOML"):
        save(path, {"t": Entry(1)}, META)
    assert path.read_text() == '["t"]\nmacs = oops\n'
    assert os.listdir(tmp_path) == ["f.toml"]


@needs_permissions
def test_save_read_only_file(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    save(path, {"a": Entry(1)}, META)
    before = path.read_bytes()
    path.chmod(0o444)
    assert save(path, {"a": Entry(1)}, META) is False  # nothing to write: no error
    with pytest.raises(BaselineError, match=rf"^{re.escape(str(path))}: is read-only; make it writable \(chmod u\+w"):
        save(path, {"a": Entry(2)}, META)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["f.toml"]


@needs_permissions
def test_save_read_only_directory(tmp_path: Path) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    path = directory / "f.toml"
    save(path, {"a": Entry(1)}, META)
    before = path.read_bytes()
    directory.chmod(0o555)
    try:
        with pytest.raises(BaselineError, match="cannot create a temporary file in .*make the directory writable"):
            save(path, {"a": Entry(2)}, META)
    finally:
        directory.chmod(0o755)
    assert path.read_bytes() == before
    assert os.listdir(directory) == ["f.toml"]


def test_failed_write_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.toml"
    save(path, {"a": Entry(1)}, META)
    before = path.read_bytes()

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(BaselineError, match=rf"^{re.escape(str(path))}: cannot write the baseline: No space left on device"):
        save(path, {"a": Entry(2)}, META)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["f.toml"]


def test_interrupted_write_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.toml"
    save(path, {"a": Entry(1)}, META)

    def interrupt(src: object, dst: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        save(path, {"a": Entry(2)}, META)
    assert load(path).entries == {"a": Entry(1)}
    assert os.listdir(tmp_path) == ["f.toml"]


def test_save_removes_stale_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    (tmp_path / ".f.toml.999.deadbeef.tmp").write_text("half a baseli")
    (tmp_path / ".other.toml.1.x.tmp").write_text("not ours")
    save(path, {"a": Entry(1)}, META)
    assert sorted(os.listdir(tmp_path)) == [".other.toml.1.x.tmp", "f.toml"]


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks")
def test_save_follows_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "f.toml"
    save(target, {"a": Entry(1)}, META)
    link = tmp_path / "link.toml"
    link.symlink_to(target)
    assert save(link, {"a": Entry(2)}, META)
    assert link.is_symlink()
    assert load(target).entries == {"a": Entry(2)}


def test_save_creates_parent_directory(tmp_path: Path) -> None:
    path = tmp_path / "ci" / "baselines" / "f.toml"
    assert save(path, {"a": Entry(1)}, META)
    assert load(path).entries == {"a": Entry(1)}


# --------------------------------------------------------------------------- updated


def test_updated_adds_replaces_and_prunes() -> None:
    old = {"a": Entry(1), "b": Entry(2), "c": Entry(3)}
    measured = {"b": Entry(20), "d": Entry(4)}
    old_copy, measured_copy = dict(old), dict(measured)
    assert updated(old, measured) == {"a": Entry(1), "b": Entry(20), "c": Entry(3), "d": Entry(4)}
    assert updated(old, measured, prune={"a", "zzz"}) == {"b": Entry(20), "c": Entry(3), "d": Entry(4)}
    assert updated(old, measured, prune={"b"})["b"] == Entry(20)  # a measured key is never pruned
    assert updated(old, measured, prune=set()) == updated(old, measured)
    assert (old, measured) == (old_copy, measured_copy)
    assert list(updated({"z": Entry(1)}, {"a": Entry(2)})) == ["a", "z"]


def test_entry_compares_by_value() -> None:
    assert Entry(1, {"a": 1}) == Entry(1, {"a": 1}) != Entry(1, {"a": 2})
    assert Entry(3) == Entry(3, {})


def test_module_imports_neither_torch_nor_pytest() -> None:
    code = "import sys, pytest_flopbudget.baseline.store; print(sorted({'torch', 'pytest'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------- property


def _text(min_size: int = 0) -> st.SearchStrategy[str]:
    return st.text(st.characters(blacklist_categories=("Cs",)), min_size=min_size, max_size=30)


ids = _text(1).filter(lambda key: key != "meta")
entries_strategy = st.dictionaries(
    ids,
    st.builds(Entry, st.integers(0, 2**62), st.dictionaries(_text(), st.integers(0, 2**62), max_size=4),
              time=st.dictionaries(_text(), st.builds(baseline.Timing, st.integers(0, 2**62), _text()), max_size=3)),
    max_size=8,
)
meta_strategy = st.dictionaries(_text(1).filter(lambda key: key != "schema"), _text(), max_size=3)


@settings(max_examples=150, deadline=None)
@given(entries=entries_strategy, meta=meta_strategy)
def test_property_round_trip_and_determinism(tmp_path_factory: pytest.TempPathFactory, entries: dict, meta: dict) -> None:
    text = render(entries, meta)
    assert text == render(dict(reversed(list(entries.items()))), dict(reversed(list(meta.items()))))
    path = tmp_path_factory.mktemp("prop") / "f.toml"
    path.write_bytes(text.encode())
    loaded = load(path)
    assert loaded.entries == entries
    assert list(loaded.entries) == sorted(entries)
    assert loaded.meta == {"schema": 1, **meta}
    assert save(path, loaded.entries, loaded.meta) is False


# --------------------------------------------------------------------------- training-step phases


def test_phases_render_sorted_after_modules_and_read_back(tmp_path: Path) -> None:
    entry = Entry(60, {"forward/head": 10, "backward/head": 20}, {"optimizer": 30, "forward": 10, "backward": 20})
    text = render({"t.py::test_step": entry}, META)
    assert text.endswith(
        '["t.py::test_step"]\nmacs = 60\ngflops = 0.00000012\n\n'
        '["t.py::test_step".modules]\n"backward/head" = 20\n"forward/head" = 10\n\n'
        '["t.py::test_step".phases]\n"backward" = 20\n"forward" = 10\n"optimizer" = 30\n'
    )
    assert baseline.load(write(tmp_path / "b.toml", text)).entries["t.py::test_step"] == entry


def test_files_without_phases_load_and_render_byte_identical(tmp_path: Path) -> None:
    loaded = baseline.load(write(tmp_path / "b.toml", EXAMPLE))
    assert all(entry.phases == {} for entry in loaded.entries.values())
    assert render(loaded.entries, loaded.meta) == EXAMPLE


def test_bad_phase_count_names_the_phase(tmp_path: Path) -> None:
    text = '["t.py::test_step"]\nmacs = 3\n\n["t.py::test_step".phases]\nforward = -1\n'
    with pytest.raises(baseline.BaselineError, match=r'phases\."forward" must be a non-negative integer'):
        baseline.load(write(tmp_path / "b.toml", text))


# --------------------------------------------------------------------------- time estimates


def test_times_render_sorted_by_device_after_phases_and_read_back(tmp_path: Path) -> None:
    entry = Entry(60, {"head": 60}, time={"l4": baseline.Timing(111901, "67b9e656"), "h100-sxm": baseline.Timing(10021, "1f524435")})
    text = render({"t.py::test_x": entry}, META)
    assert text.endswith(
        '["t.py::test_x"]\nmacs = 60\ngflops = 0.00000012\n\n'
        '["t.py::test_x".modules]\n"head" = 60\n\n'
        '["t.py::test_x".time]\n"h100-sxm" = { ns = 10021, figures = "1f524435" }\n"l4" = { ns = 111901, figures = "67b9e656" }\n'
    )
    assert baseline.load(write(tmp_path / "b.toml", text)).entries["t.py::test_x"] == entry
    assert render({"t.py::test_x": Entry(60, {"head": 60}, time=dict(reversed(list(entry.time.items()))))}, META) == text


def test_files_without_times_load_with_no_times_and_render_byte_identical(tmp_path: Path) -> None:
    loaded = baseline.load(write(tmp_path / "b.toml", EXAMPLE))
    assert all(entry.time == {} for entry in loaded.entries.values())
    assert render(loaded.entries, loaded.meta) == EXAMPLE


@pytest.mark.parametrize(("time", "words"), [
    ({"l4": baseline.Timing(-1, "a")}, "time['l4'].ns must be a non-negative integer"),
    ({"l4": baseline.Timing(1.5, "a")}, "time['l4'].ns must be a non-negative integer"),  # type: ignore[arg-type]
    ({"l4": baseline.Timing(1, 5)}, "time['l4'].figures must be a string"),  # type: ignore[arg-type]
])
def test_render_refuses_bad_times(time: dict, words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        render({"t": Entry(1, time=time)}, META)
