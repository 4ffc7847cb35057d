"""Hardening: every bad input ends in a normal pytest outcome with a message naming the cause
and the fix, and no baseline entry is ever lost. docs/bad-input.md lists each case with the
test that covers it.

Counts are derived by hand from the shapes, as in tests/test_plugin.py: a Linear(1024 -> w)
on (1, 680, 1024) costs 680 * 1024 * w MACs; a Linear(8 -> 4) on (1, 8) costs 32 MACs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_flopbudget.baseline import store as baseline

TOKENS, IN = 680, 1024


def macs_of(width: int) -> int:
    return TOKENS * IN * width


MODELS = """
import torch
from torch import nn

def linear(width=4096):
    return nn.Linear(1024, width, device="meta"), torch.empty(1, 680, 1024, device="meta")
"""


def write_test(pytester: pytest.Pytester, body: str, name: str = "test_m") -> None:
    pytester.makepyfile(models=MODELS)
    pytester.makepyfile(**{name: "import pytest\nimport torch\nimport models\n\n" + textwrap.dedent(body)})


def entries(path: Path) -> dict[str, int]:
    return {k: e.macs for k, e in baseline.load(path).entries.items()}


def no_crash(result: pytest.RunResult) -> None:
    """Neither pytest nor the plugin crashed: no INTERNALERROR, no traceback anywhere."""
    for stream in (result.stdout, result.stderr):
        stream.no_fnmatch_line("*INTERNALERROR*")
        stream.no_fnmatch_line("*Traceback*")


# --- nothing lost: concurrent updates --------------------------------------------------

# Makes the race window wide: each run, when it merges its measurements into the baseline,
# first waits until the other run is about to write too, then lingers 0.5 s. Were the
# merge outside the file lock, both runs would merge into the same old file and the second
# write would drop the first run's entry; under the lock the second run merges the first's file.
BARRIER = """
import os, time
from pathlib import Path
import pytest
from pytest_flopbudget.baseline import store as baseline
from pytest_flopbudget.gate import session as flop_session
HERE = Path(__file__).parent

_finish = flop_session.FlopSession.pytest_sessionfinish

def _finish_marked(self, session, exitstatus):
    if not self.state.worker:
        (HERE / f"finished-{os.getpid()}").write_text("")
    return _finish(self, session, exitstatus)

flop_session.FlopSession.pytest_sessionfinish = _finish_marked

_merge = baseline.updated

def updated(*args, **kwargs):
    deadline = time.monotonic() + 60
    while len(list(HERE.glob("finished-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)
    return _merge(*args, **kwargs)

baseline.updated = updated
"""


@pytest.mark.skipif(sys.platform == "win32", reason="the file lock is flock (POSIX)")
def test_concurrent_updates_of_different_tests_keep_both(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(BARRIER)
    write_test(pytester, "def test_a(flops):\n    flops(*models.linear(512))\n", name="test_a")
    write_test(pytester, "def test_b(flops):\n    flops(*models.linear(256))\n", name="test_b")
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--flop-update"]
    runs = [
        subprocess.Popen([*base, "test_a.py"], cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
        subprocess.Popen([*base, "-n", "2", "test_b.py"], cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
    ]
    outputs = [run.communicate(timeout=240)[0] for run in runs]
    for run, out in zip(runs, outputs):
        assert run.returncode == 0, out
        assert "INTERNALERROR" not in out and "Traceback" not in out, out
        assert "flopbudget: wrote" in out, out
    path = pytester.path / "flopbudget.toml"
    loaded = baseline.load(path)  # parses: no torn or interleaved content
    assert {k: e.macs for k, e in loaded.entries.items()} == {
        "test_a.py::test_a": macs_of(512),
        "test_b.py::test_b": macs_of(256),
    }
    assert path.read_text() == baseline.render(loaded.entries, loaded.meta)
    assert not list(pytester.path.glob(".flopbudget.toml.*.tmp"))


# --- models and inputs ------------------------------------------------------------------

SMALL = """
class Small(torch.nn.Module):  # Linear(8 -> 4) on (1, 8): 32 MACs
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 4)
        self.other = torch.nn.Linear(8, 2)
"""


def test_model_returning_no_tensor_fails_or_counts_its_submodules(pytester: pytest.Pytester) -> None:
    write_test(
        pytester,
        SMALL
        + """
class Word(Small):
    def forward(self, x):
        torch.matmul(x, self.lin.weight.T)  # no submodule ran: a trace sees nothing
        return "done"

class Number(Small):
    def forward(self, x):
        return int(self.lin(x).sum() > 0)   # real pass (bool() of a value); the submodule's output is kept: 32 MACs

def test_string(flops):
    flops(Word(), torch.ones(1, 8))

def test_int(flops):
    assert flops(Number(), torch.ones(1, 8)).macs == 32

def test_string_flop_counter(flops):
    assert flops(Word(), torch.ones(1, 8)).macs == 32
""",
    )
    result = pytester.runpytest("--flop-missing=warn", "-k", "not flop_counter")
    result.assert_outcomes(passed=1, failed=1, deselected=1, warnings=2)  # test_int: no baseline, real-pass note
    result.stdout.fnmatch_lines(
        [
            "*flops: could not count Word: NoTensorOutput: the model returned str, not tensors*"
            "return the output tensor(s) from forward*or count with --flop-counter=flop_counter*",
        ]
    )
    no_crash(result)
    # flop_counter counts every operation that runs, whatever the model returns.
    other = pytester.runpytest("--flop-missing=warn", "--flop-counter=flop_counter", "-k", "string_flop_counter")
    other.assert_outcomes(passed=1, deselected=2, warnings=1)


def test_data_dependent_control_flow_counts_for_real_with_a_visible_note(pytester: pytest.Pytester) -> None:
    write_test(
        pytester,
        SMALL
        + """
class Branchy(Small):
    def forward(self, x):
        return self.lin(x) if x.sum() > 0 else self.other(x)

def test_cpu_model(flops):
    result = flops(Branchy(), torch.ones(1, 8))
    assert result.macs == 32 and result.mode == "real"
    assert "counted with a real forward pass" in result.notes[0]

@pytest.mark.flop_budget(gflops=1e-9)
def test_note_in_failure(flops):
    flops(Branchy(), torch.ones(1, 8), key="over")

def test_meta_model(flops):
    with torch.device("meta"):
        model, x = Branchy(), torch.ones(1, 8)
    flops(model, x)
""",
    )
    result = pytester.runpytest("--flop-missing=warn")
    result.assert_outcomes(passed=1, failed=2, warnings=3)  # the note twice, no baseline once
    result.stdout.fnmatch_lines(
        [
            "*FlopBudgetWarning: test_m.py::test_cpu_model: counted with a real forward pass: the meta-device pass "
            "failed (RuntimeError: Tensor.item() cannot be called on meta tensors)*",
        ]
    )
    result.stdout.fnmatch_lines(["*FLOP budget exceeded*", "*note: counted with a real forward pass*"])
    result.stdout.fnmatch_lines(
        [
            "*flops: could not count Branchy: NeedsValuesError: cannot count on the meta device: the forward needs real "
            "values (Tensor.item() on a meta tensor), and the model and its inputs are all on meta*build the model and "
            "its inputs on the CPU*",
        ]
    )
    no_crash(result)
    # --flop-mode=meta forbids the real pass: a failure that names the way out.
    meta = pytester.runpytest("--flop-mode=meta", "-k", "cpu_model")
    meta.assert_outcomes(failed=1, deselected=2)
    meta.stdout.fnmatch_lines(["*MetaCountError: cannot count on the meta device*use mode='auto' or mode='real'*"])
    no_crash(meta)


def test_model_on_a_missing_device_fails_naming_it(pytester: pytest.Pytester) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the device is not missing")
    write_test(
        pytester,
        SMALL
        + """
class OnCuda(Small):
    def forward(self, x):
        return self.lin(x.to("cuda"))

def test_cuda(flops):
    flops(OnCuda(), torch.ones(1, 8))
""",
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    # torch's own words differ by build: "Torch not compiled with CUDA enabled" (CPU build, 2.13),
    # "Found no NVIDIA driver on your system" (CUDA build without a GPU, 2.14.1)
    result.stdout.re_match_lines([r".*flops: could not count OnCuda: .*(CUDA|NVIDIA driver).*"])
    result.stdout.fnmatch_lines(
        ["*the model or its inputs use a device this machine does not have; skip the test where it is missing*"]
    )
    no_crash(result)


def test_a_class_instead_of_a_model_fails_cleanly(pytester: pytest.Pytester) -> None:
    write_test(
        pytester,
        SMALL
        + """
def test_class(flops):
    flops(Small, torch.ones(1, 8))

def test_none(flops):
    flops(None, torch.ones(1, 8))
""",
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "flops: could not count NoneType: TypeError: cannot count 'NoneType': expected a torch.nn.Module or a callable",
            "flops: could not count type: TypeError: Small.__init__() takes 1 positional argument but 2 were given",
            "  flops() got the class Small itself; pass an instance: flops(Small(...), *inputs)",
        ]
    )
    no_crash(result)


# --- marker arguments and placement (value checks: test_plugin.py::test_bad_marker_arguments_...) ---


def test_invalid_marker_on_class_or_module_errors_each_test_it_covers(pytester: pytest.Pytester) -> None:
    write_test(
        pytester,
        """
        pytestmark = pytest.mark.flop_budget(gflops="5 GFLOPs")

        def test_module_level(flops):
            flops(*models.linear())

        @pytest.mark.flop_budget(rel="-5%")
        class TestGroup:
            def test_in_class(self, flops):
                flops(*models.linear())

            def test_no_fixture(self):
                pass

        @pytest.mark.flop_budget(gflops=1 + 2j)
        def test_complex(flops):
            flops(*models.linear())
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=4)
    result.stdout.fnmatch_lines_random(
        [
            "*invalid flop_budget marker on test_m.py::test_module_level: flop_budget gflops must be a number, got '5 GFLOPs' (str)*",
            "*invalid flop_budget marker on test_m.py::TestGroup::test_in_class: flop_budget rel must be a fraction like 0.02 or a percentage like 2%, got '-5%'*",
            "*invalid flop_budget marker on test_m.py::TestGroup::test_no_fixture: flop_budget rel must be a fraction*",
            "*invalid flop_budget marker on test_m.py::test_complex: flop_budget gflops must be a number, got (1+2j) (complex)*",
        ]
    )
    no_crash(result)


def test_module_marker_on_a_test_that_never_measures(pytester: pytest.Pytester) -> None:
    write_test(
        pytester,
        """
        pytestmark = pytest.mark.flop_budget(gflops=6)

        def test_measures(flops):
            flops(*models.linear())

        def test_helper_check():
            assert 1 + 1 == 2
        """,
    )
    result = pytester.runpytest("--flop-missing=warn")
    result.assert_outcomes(passed=1, errors=1, warnings=1)
    result.stdout.fnmatch_lines(
        ["*test_m.py::test_helper_check has a flop_budget marker but does not use the flops fixture, so nothing would be checked; add a `flops` argument*"]
    )
    no_crash(result)


# --- options and ini values (more in test_plugin.py::test_bad_option_values_are_usage_errors) ---


@pytest.mark.parametrize(
    "args, message",
    [
        (["--flop-counter=fvcore"], "*argument --flop-counter: invalid choice: 'fvcore' (choose from *torchprofile*flop_counter*)*"),
        (["--flop-mode=fast"], "*argument --flop-mode: invalid choice: 'fast' (choose from *auto*meta*real*)*"),
        (["--flop-missing=never"], "*argument --flop-missing: invalid choice: 'never' (choose from *fail*warn*auto*)*"),
        (["--flop-abs=nan"], "*pytest-flopbudget: option --flop-abs must be a finite number, got nan*"),
        (["--flop-abs=1,5"], "*pytest-flopbudget: option --flop-abs must be a number, got '1,5'*"),
        (["--flop-rel=2%%"], "*pytest-flopbudget: option --flop-rel must be a fraction like 0.02 or a percentage like 2%, got '2%%'*"),
        (["--flop-top=-1"], "*pytest-flopbudget: option --flop-top must be >= 0, got -1*"),
        (["--flop-report-md=missing/r.md"], "*pytest-flopbudget: --flop-report-md *r.md: directory *missing does not exist; create it first*"),
        (["--flop-report-json=."], "*pytest-flopbudget: --flop-report-json * is a directory; give a file path*"),
    ],
)
def test_more_bad_options_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    no_crash(result)


@pytest.mark.parametrize(
    "line, message",
    [
        ("flopbudget_rel = two percent", "ini flopbudget_rel must be a fraction like 0.02 or a percentage like 2%, got 'two percent'"),
        ("flopbudget_abs = -1", "ini flopbudget_abs must be >= 0, got -1.0"),
        ("flopbudget_update = maybe", "ini flopbudget_update must be true or false, got 'maybe'"),
        ("flopbudget_top = 2.5", "ini flopbudget_top must be a whole number, got '2.5'"),
        ("flopbudget_counter = fvcore", "ini flopbudget_counter must be one of torchprofile, flop_counter, got 'fvcore'"),
        ("flopbudget_baseline = .", "is a directory; --flop-baseline/flopbudget_baseline take a file path"),
    ],
)
def test_bad_ini_values_are_usage_errors(pytester: pytest.Pytester, line: str, message: str) -> None:
    pytester.makeini(f"[pytest]\n{line}\n")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*pytest-flopbudget: *{message}*"])
    no_crash(result)


# --- baseline files ---------------------------------------------------------------------

OK_ENTRY = '["test_m.py::test_linear"]\nmacs = 1\n'


@pytest.mark.parametrize(
    "text, message",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", "flopbudget.toml:1: not UTF-8 (byte 0x89 at offset 0); save it as UTF-8*"),
        (b"macs: 12\n", "flopbudget.toml:1:5: not valid TOML: *delete it and rerun with --flop-update*"),
        (b'["test_m.py::test_linear"]\nmacs = -5\n', "flopbudget.toml:2: entry \"test_m.py::test_linear\": 'macs' must be a non-negative integer, got integer -5*"),
        (b'["test_m.py::test_linear"]\nmacs = 1.5\n', "*'macs' must be a non-negative integer, got float 1.5*"),
        (b'["test_m.py::test_linear"]\nmacs = 1\n[\"test_m.py::test_linear\".modules]\nhead = "x"\n', "*modules.\"head\" must be a non-negative integer, got string 'x'*"),
        (b"[meta]\nschema = 99\n", "*written by a newer pytest-flopbudget (baseline schema 99; this version reads schema 1); upgrade pytest-flopbudget*"),
        (b'[meta]\nschema = "one"\n', "flopbudget.toml:2: meta.schema must be a positive integer, got 'one'*"),
        ((OK_ENTRY + "\n" + OK_ENTRY).encode(), "flopbudget.toml:4:*not valid TOML: *(a test id, table or key appears twice; keep only one of them)*"),
        (b'["test_m.py::test_linear"]\nmacs = 1\nmacs = 2\n', "flopbudget.toml:3:*not valid TOML: *appears twice*"),
        (b"<<<<<<< HEAD\n" + OK_ENTRY.encode() + b"=======\n" + OK_ENTRY.encode() + b">>>>>>> main\n", "flopbudget.toml:1: unresolved merge conflict marker; resolve the conflict*"),
        (b'["test_m.py::test_linear"]\nmac = 1\n', "*unknown key 'mac' (expected macs, gflops, modules*"),
    ],
    ids=["binary", "not-toml", "negative", "float", "module-string", "schema-99", "schema-str", "dup-table", "dup-key", "conflict", "typo"],
)
def test_bad_baseline_file_is_a_usage_error_and_never_overwritten(pytester: pytest.Pytester, text: bytes, message: str) -> None:
    write_test(pytester, "def test_linear(flops):\n    flops(*models.linear())\n")
    path = pytester.path / "flopbudget.toml"
    path.write_bytes(text)
    result = pytester.runpytest("--flop-update")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*pytest-flopbudget: *{message}"])
    assert "collected" not in result.stdout.str()  # before any test ran
    no_crash(result)
    assert path.read_bytes() == text


TRICKY = {
    "brackets": "a[0]]",
    "quotes": "say \"hi\" 'there'",
    "unicode": "ünï-中文-🙂",
    "colons": "x::y",
    "backslash": "C:\\\\tmp\\\\t",
}


@pytest.mark.parametrize("escaped", [True, False], ids=["ascii-escaped", "raw-unicode"])
def test_tricky_parametrised_ids_round_trip(pytester: pytest.Pytester, escaped: bool) -> None:
    if not escaped:  # pytest escapes non-ASCII ids unless told not to: try the raw text too
        pytester.makeini("[pytest]\ndisable_test_id_escaping_and_forfeit_all_rights_to_community_support = true\n")
    write_test(
        pytester,
        f"""
        @pytest.mark.parametrize("width", [512, 256, 128, 64, 32], ids={list(TRICKY.values())!r})
        def test_p(flops, width):
            flops(*models.linear(width))
        """,
    )
    result = pytester.runpytest("--flop-update")
    result.assert_outcomes(passed=5)
    found = entries(pytester.path / "flopbudget.toml")
    assert sorted(found.values()) == sorted(macs_of(w) for w in (512, 256, 128, 64, 32))
    assert all(key.startswith("test_m.py::test_p[") and key.endswith("]") for key in found)
    unicode = "ünï-中文-🙂" if not escaped else "\\xfcn\\xef-\\u4e2d\\u6587-\\U0001f642"
    assert {"test_m.py::test_p[x::y]", "test_m.py::test_p[a[0]]]", f"test_m.py::test_p[{unicode}]"} <= set(found)
    # Read back: every id finds its entry (ok, no "new" warning), and a full prune removes none.
    again = pytester.runpytest("--flop-missing=fail", "--flop-prune", "--flop-report")
    again.assert_outcomes(passed=5)
    again.stdout.fnmatch_lines(["*0 over-budget, 0 regressed, 0 new, 0 improved, 5 ok*", "*unchanged: *flopbudget.toml (5 entries; 0 added or changed, 0 removed)*"])
    no_crash(again)


def test_windows_line_endings_are_read_and_rewritten_as_lf_keeping_the_mode(pytester: pytest.Pytester) -> None:
    write_test(pytester, "def test_linear(flops):\n    flops(*models.linear())\n\ndef test_other(flops):\n    flops(*models.linear(64))\n")
    path = pytester.path / "flopbudget.toml"
    crlf = f'[meta]\r\nschema = 1\r\n\r\n["test_m.py::test_linear"]\r\nmacs = {macs_of(4096)}\r\n'.encode()
    path.write_bytes(crlf)
    os.chmod(path, 0o640)
    compare = pytester.runpytest("--flop-missing=fail", "-k", "linear")
    compare.assert_outcomes(passed=1, deselected=1)
    assert path.read_bytes() == crlf  # only --flop-update/--flop-prune write
    update = pytester.runpytest("--flop-update")
    update.assert_outcomes(passed=2)
    assert b"\r" not in path.read_bytes()
    assert entries(path) == {"test_m.py::test_linear": macs_of(4096), "test_m.py::test_other": macs_of(64)}
    assert (os.stat(path).st_mode & 0o777) == 0o640
    assert not list(pytester.path.glob(".flopbudget.toml.*.tmp"))


# --- nothing lost: interrupted and stopped runs -----------------------------------------

THREE = """
def test_a(flops):
    flops(*models.linear({a}))

def test_b(flops):
    {b}

def test_c(flops):
    flops(*models.linear(64))
"""


def recorded(pytester: pytest.Pytester) -> bytes:
    write_test(pytester, THREE.format(a=512, b="flops(*models.linear(256))"))
    pytester.runpytest("--flop-update").assert_outcomes(passed=3)
    return (pytester.path / "flopbudget.toml").read_bytes()


def test_ctrl_c_during_update_leaves_the_baseline_untouched(pytester: pytest.Pytester) -> None:
    before = recorded(pytester)
    write_test(pytester, THREE.format(a=1024, b="raise KeyboardInterrupt"))
    result = pytester.runpytest_subprocess("--flop-update", "-p", "no:cacheprovider")  # inline, pytester re-raises it
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines_random(["*! KeyboardInterrupt !*", "flopbudget: run interrupted; flopbudget.toml left unchanged"])
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    assert (pytester.path / "flopbudget.toml").read_bytes() == before


def test_crash_during_update_leaves_the_baseline_untouched(pytester: pytest.Pytester) -> None:
    before = recorded(pytester)
    write_test(pytester, THREE.format(a=1024, b="import os; os._exit(3)"))
    result = pytester.runpytest_subprocess("--flop-update", "-p", "no:cacheprovider")
    assert result.ret == 3
    assert (pytester.path / "flopbudget.toml").read_bytes() == before
    assert not list(pytester.path.glob(".flopbudget.toml.*.tmp"))


def test_x_stop_during_update_keeps_entries_of_tests_that_did_not_run(pytester: pytest.Pytester) -> None:
    recorded(pytester)
    write_test(pytester, THREE.format(a=1024, b="assert False, 'broken'"))
    result = pytester.runpytest("--flop-update", "-x")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*flopbudget: wrote *flopbudget.toml (3 entries; 1 added or changed, 0 removed)*"])
    assert entries(pytester.path / "flopbudget.toml") == {
        "test_m.py::test_a": macs_of(1024),  # ran: updated
        "test_m.py::test_b": macs_of(256),  # failed before measuring: kept
        "test_m.py::test_c": macs_of(64),  # never ran: kept
    }
    no_crash(result)


def test_x_stop_skips_pruning_with_a_message(pytester: pytest.Pytester) -> None:
    before = recorded(pytester)
    write_test(pytester, "def test_a(flops):\n    assert False, 'broken'\n\ndef test_c(flops):\n    flops(*models.linear(64))\n")
    result = pytester.runpytest("--flop-prune", "-x")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*flopbudget: --flop-prune skipped: the run stopped early (-x/--maxfail)*"])
    assert (pytester.path / "flopbudget.toml").read_bytes() == before  # test_b's entry is still there
    no_crash(result)


# --- permissions: root reads and writes anything, so these run as `nobody` -------------


def run_as_nobody(directory: Path, args: list[str]) -> tuple[int, str]:
    """``pytest.main(args)`` in a forked child that dropped to uid/gid ``nobody``, in ``directory``.

    A fork, not a new interpreter: the interpreter may live where nobody cannot read
    (e.g. /root/.pyenv); the child reuses the modules this process already imported.
    """
    import pwd
    import zoneinfo  # noqa: F401  (imported late by pytest's summary: load it while we still can)

    nobody = pwd.getpwnam("nobody")
    log = directory / "out.log"
    pid = os.fork()
    if pid == 0:  # child
        code = 70
        try:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            os.chdir(directory)
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            code = int(pytest.main([*args, "-p", "no:cacheprovider", "-p", "no:xdist"]))
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:  # show what went wrong in the child, then leave without cleanup
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), log.read_text()


needs_root = pytest.mark.skipif(
    sys.platform == "win32" or not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="drops to uid nobody, which needs root; as a normal user the unit tests in test_baseline.py cover it",
)


@pytest.fixture
def open_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory nobody may use: world-writable, under a world-searchable parent."""
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="flopbudget-nobody-"))
    os.chmod(directory, 0o777)
    (directory / "models.py").write_text(MODELS)
    (directory / "test_m.py").write_text("import models\n\ndef test_linear(flops):\n    flops(*models.linear())\n")
    yield directory
    import shutil

    shutil.rmtree(directory, ignore_errors=True)


@needs_root
def test_unreadable_baseline_is_a_usage_error(open_dir: Path) -> None:
    path = open_dir / "flopbudget.toml"
    path.write_text(f'["test_m.py::test_linear"]\nmacs = {macs_of(4096)}\n')
    os.chmod(path, 0o200)
    code, out = run_as_nobody(open_dir, ["test_m.py", "--flop-update"])
    assert code == pytest.ExitCode.USAGE_ERROR, out
    assert "pytest-flopbudget: " in out and "flopbudget.toml: cannot read the baseline: permission denied; make it readable (chmod u+r" in out, out
    assert "INTERNALERROR" not in out and "Traceback" not in out, out


@needs_root
def test_read_only_baseline_fails_the_update_run_and_is_kept(open_dir: Path) -> None:
    path = open_dir / "flopbudget.toml"
    text = f'["test_m.py::test_linear"]\nmacs = {macs_of(1)}\n'
    path.write_text(text)
    os.chmod(path, 0o444)
    code, out = run_as_nobody(open_dir, ["test_m.py", "--flop-update"])
    assert code == pytest.ExitCode.TESTS_FAILED, out
    assert "1 passed" in out, out
    assert "flopbudget: ERROR " in out and "flopbudget.toml: is read-only; make it writable (chmod u+w" in out, out
    assert "INTERNALERROR" not in out and "Traceback" not in out, out
    assert path.read_text() == text
    # Without --flop-update a read-only baseline is fine: it is only read.
    code, out = run_as_nobody(open_dir, ["test_m.py", "--flop-rel=1e9"])
    assert code == pytest.ExitCode.OK, out


def test_bad_measurement_key_fails_that_test(pytester: pytest.Pytester) -> None:
    write_test(pytester, "def test_int_key(flops):\n    flops(*models.linear(), key=5)\n\ndef test_empty_key(flops):\n    flops(*models.linear(), key='')\n")
    result = pytester.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines_random(["flops(key=...) must be a non-empty string, got 5", "flops(key=...) must be a non-empty string, got ''"])
    no_crash(result)
