"""The comparison with the base branch: --flop-base-ref / --flop-base, the base gate, every report.

The tests build real git repositories in temporary directories (tests/gitrepo.py: a base commit
on ``main``, a pull-request commit on ``pr`` that raises one model and commits the raised
flopbudget.toml). Counts are derived from the shapes there: EncoderHead on (1, 680, 1024) costs
680 * 1024 * (1024 + W) MACs, W = 4096 at the base and 4224 in the PR (+2.5%).
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from gitrepo import (
    BASE_ENTRIES,
    BASE_W,
    GROW_BASE,
    GROW_PR,
    PR_W,
    git,
    git_environment,
    lin,
    make_repo,
    write,
)

from pytest_flopbudget.baseline import base as base_file
from pytest_flopbudget.baseline import store as baseline_file
from pytest_flopbudget.gate.budget import judge_base
from pytest_flopbudget.report import (
    BaseSummary,
    base_changes,
    base_headline,
    json_report,
    markdown_report,
    terminal_table,
)
from pytest_flopbudget.results.result import Record, module_deltas

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

G = 500_000_000  # MACs in one GFLOP


@pytest.fixture(autouse=True)
def _git_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    git_environment(monkeypatch, tmp_path_factory)


@pytest.fixture
def repo(pytester: pytest.Pytester) -> Path:
    make_repo(pytester.path)
    return pytester.path


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


HEADLINE = (
    "This PR raises 1 test by up to +2.5% against `main`, accepted in `flopbudget.toml`; "
    "lowers 1 test by up to -50.0%; 1 test new and 1 gone since `main`."
)


# --- a pull request that raised a model and accepted it in flopbudget.toml ------------------------


def test_every_report_shows_what_the_pull_request_accepted(pytester: pytest.Pytester, repo: Path) -> None:
    result = pytester.runpytest(
        "--flop-base-ref=main", "--flop-report", "--flop-report-md=r.md", "--flop-report-json=r.json", "--junitxml=j.xml",
        "--flop-report-html=r.html",
    )
    result.assert_outcomes(passed=4)  # the base only informs by default
    out = result.stdout.str()
    commit = git(repo, "rev-parse", "main").strip()
    header = out.split("collected", 1)[0]
    assert f"flopbudget: base main:flopbudget.toml = {commit[:12]} (4 entries); reports only" in header

    # Terminal: base columns and the section under the table.
    rows = {line.split()[0]: line.split() for line in result.outlines if line.startswith("test_m.py::")}
    assert rows["test_m.py::test_grow"] == ["test_m.py::test_grow", "7.309", "3.654", "-", "7.309", "0.0%", "7.130", "+2.5%", "ok"]
    assert rows["test_m.py::test_shrink"][6:] == ["0.357", "-50.0%", "ok"]  # 2 * lin(256) / 1e9 = 0.3565
    assert rows["test_m.py::test_fresh"][6:] == ["-", "new", "ok"]
    header_row = next(line for line in result.outlines if line.startswith("test ") and "GFLOPs" in line)
    assert header_row.split() == ["test", "GFLOPs", "published", "budget", "baseline", "change", "base", "vs", "base", "status"]
    grown = lin(PR_W) - lin(BASE_W)  # 680 * 1024 * 128 = 89,128,960 MACs, all in the head
    result.stdout.fnmatch_lines([
        f"against main: {HEADLINE.replace('`', '')}",
        f"  raised +2.5%: test_m.py::test_grow (head {grown:+,} MACs)",
        "  new since the base: test_m.py::test_fresh",
        "  gone since the base: test_m.py::test_gone",
    ])

    # Markdown (the PR comment and the step summary): headline, table with the module that grew.
    md = read(repo / "r.md")
    assert f"**Against `main`:** {HEADLINE}" in md.splitlines()
    assert "| `test_m.py::test_grow` | 7.130 | 7.309 | +2.5% | `head` +3.1% | ✅ ok |" in md  # 128 / 4096 = 3.125%
    assert "| `test_m.py::test_shrink` | 0.357 | 0.178 | -50.0% | `<root>` -50.0% | ✅ ok |" in md
    assert "New since `main` (1):\n\n- `test_m.py::test_fresh`" in md
    assert "Gone since `main` (1):\n\n- `test_m.py::test_gone`" in md
    assert "No test changed its FLOP count against `flopbudget.toml`." in md  # the baseline accepts them all

    # JSON: the base object, and per test the base MACs, the change and the change per module.
    data = json.loads(read(repo / "r.json"))
    assert data["schema"] == 1
    assert data["base"] == {
        "ref": "main", "source": "main:flopbudget.toml", "exists": True, "commit": commit, "entries": 4,
        "gate": None, "partial": False, "gone": ["test_m.py::test_gone"], "headline": HEADLINE.replace("`", ""),
        "raised": ["test_m.py::test_grow"], "lowered": ["test_m.py::test_shrink"], "new": ["test_m.py::test_fresh"],
    }
    tests = {t["id"]: t for t in data["tests"]}
    grow = tests["test_m.py::test_grow"]
    assert (grow["macs"], grow["base_macs"], grow["base_delta_pct"]) == (GROW_PR, GROW_BASE, 2.5)
    assert grow["base_gflops"] == 2 * GROW_BASE / 1e9
    assert grow["base_module_changes"] == [{"module": "head", "base_macs": lin(BASE_W), "macs": lin(PR_W), "delta_macs": grown}]
    assert tests["test_m.py::test_fresh"]["base_macs"] is None
    assert tests["test_m.py::test_same"]["base_delta_pct"] == 0.0

    # JUnit: the base's GFLOPs and the change, per test.
    props = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in ET.parse(repo / "j.xml").getroot().iter("testcase")
    }
    assert props["test_grow"]["flopbudget.base"] == "main"
    assert props["test_grow"]["flopbudget.base_gflops"] == str(round(2 * GROW_BASE / 1e9, 6))
    assert props["test_grow"]["flopbudget.base_delta_pct"] == "2.5"
    assert props["test_fresh"]["flopbudget.base_gflops"] == "" and props["test_fresh"]["flopbudget.base_delta_pct"] == "new"

    # HTML: the headline and the gone test, the base columns, per test the modules that grew.
    page = read(repo / "r.html")
    assert "<h2>Against the base: main</h2>" in page
    assert f"<p>{HEADLINE.replace('`', '')}</p>" in page
    assert "<li><code>test_m.py::test_gone</code></li>" in page
    assert "<td>7.130</td><td>+2.5%</td>" in page.split('test_m.py::test_grow</a></td>', 1)[1].split("</tr>", 1)[0]
    assert "<td>-</td><td>new</td>" in page.split('test_m.py::test_fresh</a></td>', 1)[1].split("</tr>", 1)[0]
    assert (f"<tr><td><code>head</code></td><td>{lin(BASE_W):,}</td><td>{lin(PR_W):,}</td><td>{grown:+,}</td>"
            "<td>+3.1%</td>") in page  # 128 / 4096 = 3.125%, against the base


def test_without_a_base_nothing_changes(pytester: pytest.Pytester, repo: Path) -> None:
    result = pytester.runpytest("--flop-report", "--flop-report-json=r.json", "--junitxml=j.xml")
    result.assert_outcomes(passed=4)
    assert "vs base" not in result.stdout.str() and "against" not in result.stdout.str()
    data = json.loads(read(repo / "r.json"))
    assert data["base"] is None and all(t["base_macs"] is None for t in data["tests"])
    names = {p.get("name") for p in ET.parse(repo / "j.xml").getroot().iter("property")}
    assert names and not names & {"flopbudget.base", "flopbudget.base_gflops", "flopbudget.base_delta_pct"}


def test_without_report_one_line_says_it(pytester: pytest.Pytester, repo: Path) -> None:
    result = pytester.runpytest("--flop-base-ref=main")
    result.assert_outcomes(passed=4)
    lines = [line for line in result.outlines if line.startswith("flopbudget: against")]
    assert lines == [f"flopbudget: against main: {HEADLINE.replace('`', '')}"]


def test_a_partial_run_never_claims_a_test_is_gone(pytester: pytest.Pytester, repo: Path) -> None:
    for args in (["-k", "grow"], ["test_m.py::test_grow"]):
        result = pytester.runpytest("--flop-base-ref=main", "--flop-report-json=r.json", "--flop-report-md=r.md", *args)
        result.assert_outcomes(passed=1)
        data = json.loads(read(repo / "r.json"))
        assert data["base"]["partial"] is True and data["base"]["gone"] is None
        md = read(repo / "r.md")
        assert "Gone since" not in md
        assert "(a partial run: tests gone since the base are not listed)" in md
        assert "test_gone" not in md


def test_a_test_that_ran_but_measured_nothing_is_not_gone(pytester: pytest.Pytester, repo: Path) -> None:
    # test_same is collected but skipped: it still exists, so it is not gone.
    write(repo, "conftest.py", "import pytest\n\ndef pytest_runtest_setup(item):\n    if item.name == 'test_same':\n        pytest.skip('not today')\n")
    result = pytester.runpytest("--flop-base-ref=main", "--flop-report-json=r.json")
    result.assert_outcomes(passed=3, skipped=1)
    assert json.loads(read(repo / "r.json"))["base"]["gone"] == ["test_m.py::test_gone"]


def test_no_baseline_file_at_the_ref_makes_every_test_new_said_once(pytester: pytest.Pytester) -> None:
    make_repo(pytester.path, base_toml=False)
    result = pytester.runpytest("--flop-base-ref=main", "--flop-report", "--flop-report-md=r.md")
    result.assert_outcomes(passed=4)
    out = result.stdout.str()
    commit = git(pytester.path, "rev-parse", "main").strip()
    assert f"flopbudget: base main = {commit[:12]}: no flopbudget.toml there; every test is new against the base; reports only" in out
    assert out.count("every test is new against the base") == 2  # the header, and the report's base line
    md = read(pytester.path / "r.md")
    assert md.count("every test is new against the base") == 1
    assert "**Against `main`:** `main` has no `flopbudget.toml`: every test is new against the base." in md


def test_a_baseline_in_a_subdirectory_is_read_at_its_path_in_the_repository(pytester: pytest.Pytester) -> None:
    make_repo(pytester.path, baseline_name="ci/flops.toml")
    result = pytester.runpytest("--flop-baseline=ci/flops.toml", "--flop-base-ref=main", "--flop-report-json=r.json")
    result.assert_outcomes(passed=4)
    data = json.loads(read(pytester.path / "r.json"))
    assert data["base"]["source"] == "main:ci/flops.toml"
    assert data["base"]["raised"] == ["test_m.py::test_grow"]


def test_base_file_option_takes_a_file_from_the_base_branch(pytester: pytest.Pytester, repo: Path) -> None:
    (repo / "base.toml").write_text(git(repo, "show", "main:flopbudget.toml"), encoding="utf-8")
    result = pytester.runpytest("--flop-base=base.toml", "--flop-report-json=r.json")
    result.assert_outcomes(passed=4)
    data = json.loads(read(repo / "r.json"))
    assert data["base"]["ref"] == "base.toml" and data["base"]["commit"] is None
    assert data["base"]["raised"] == ["test_m.py::test_grow"] and data["base"]["gone"] == ["test_m.py::test_gone"]


# --- the gate: a raise beyond --flop-base-rel / --flop-base-abs fails --------------------------------


def test_a_raise_beyond_the_base_limit_fails_and_says_how_to_get_it_approved(pytester: pytest.Pytester, repo: Path) -> None:
    result = pytester.runpytest("--flop-base-ref=main", "--flop-base-rel=2%", "--flop-report-md=r.md")
    result.assert_outcomes(passed=3, failed=1)
    grown = lin(PR_W) - lin(BASE_W)
    result.stdout.fnmatch_lines([
        "*a raise beyond --flop-base-rel=2% fails*",
        "FLOP raise against the base main: 7.13 -> 7.31 GFLOPs (+2.5%, allowed +2.0%); needs approval",
        "  test: test_m.py::test_grow",
        f"  measured: {GROW_PR:,} MACs = 7.31 GFLOPs",
        f"  baseline: {GROW_PR:,} MACs = 7.31 GFLOPs (flopbudget.toml)",
        f"  base: {GROW_BASE:,} MACs = 7.13 GFLOPs (main:flopbudget.toml)",
        "  changed against the base main:",
        f"    head  {grown:+,} MACs (+3.1%)",
        "  If intended: get the raise approved; --flop-base-rel=2% sets the limit, so the check runs without it for an "
        "approved change (the example workflow does that for a pull request labelled `flops-approved`); "
        "flopbudget.toml already records the new count",
    ])
    md = read(repo / "r.md")
    assert "### ❌ FLOP budget: 1 raised beyond the base limit" in md
    assert "This PR raises 1 test by up to +2.5% against `main`: 1 over --flop-base-rel=2% (needs approval)" in md
    assert "| `test_m.py::test_grow` | 7.130 | 7.309 | +2.5% | `head` +3.1% | ❌ raised |" in md


@pytest.mark.parametrize(
    ("args", "fails"),
    [
        (["--flop-base-rel=3%"], False),  # +2.5% is within 3%
        (["--flop-base-abs=0.2"], False),  # +0.178 GFLOPs = 2 * 89,128,960 / 1e9 is within 0.2
        (["--flop-base-abs=0.1"], True),
        (["--flop-base-rel=2%", "--flop-base-abs=0.2"], False),  # the larger of the two applies
        (["--flop-base-rel=0"], True),  # any raise needs approval
    ],
)
def test_base_limits(pytester: pytest.Pytester, repo: Path, args: list[str], fails: bool) -> None:
    result = pytester.runpytest("--flop-base-ref=main", *args)
    result.assert_outcomes(passed=3 + (not fails), failed=int(fails))


def test_update_never_fails_on_the_base_gate(pytester: pytest.Pytester, repo: Path) -> None:
    result = pytester.runpytest("--flop-base-ref=main", "--flop-base-rel=0", "--flop-update")
    result.assert_outcomes(passed=4)


def test_ini_twins(pytester: pytest.Pytester, repo: Path) -> None:
    pytester.makeini("[pytest]\nflopbudget_base_ref = main\nflopbudget_base_rel = 2%\n")
    pytester.runpytest().assert_outcomes(passed=3, failed=1)
    pytester.makeini("[pytest]\nflopbudget_base_ref = main\nflopbudget_base_abs = 0.2\n")
    pytester.runpytest().assert_outcomes(passed=4)
    (repo / "base.toml").write_text(git(repo, "show", "main:flopbudget.toml"), encoding="utf-8")
    pytester.makeini("[pytest]\nflopbudget_base = base.toml\nflopbudget_base_rel = 0\n")
    pytester.runpytest().assert_outcomes(passed=3, failed=1)


def test_github_step_summary_and_annotation(pytester: pytest.Pytester, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(repo / "summary.md"))
    result = pytester.runpytest("--flop-base-ref=main", "--flop-base-rel=2%")
    result.assert_outcomes(passed=3, failed=1)
    summary = read(repo / "summary.md")
    assert "**Against `main`:** This PR raises 1 test by up to +2.5% against `main`: 1 over --flop-base-rel=2% (needs approval)" in summary
    errors = [line for line in result.outlines if line.startswith("::error")]
    assert len(errors) == 1 and "test_m.py::test_grow: FLOP raise against the base main" in errors[0]
    # Without the limit the raise is accepted: a notice at the test, no error.
    result = pytester.runpytest("--flop-base-ref=main")
    result.assert_outcomes(passed=4)
    line = next(i for i, text in enumerate(read(repo / "test_m.py").splitlines(), 1) if text.startswith("def test_grow"))
    assert [text for text in result.outlines if text.startswith("::")] == [
        f"::notice file=test_m.py,line={line},title=FLOP budget::test_m.py::test_grow: "
        "raised +2.5%25 against main: 7.130 -> 7.309 GFLOPs, accepted in the baseline"  # % escaped as %25
    ]


# --- pytest-xdist: workers get the controller's base -------------------------------------------------


def test_serial_and_xdist_agree(pytester: pytest.Pytester, repo: Path) -> None:
    pytest.importorskip("xdist")
    common = ["--flop-base-ref=main", "--flop-base-rel=2%", "--flop-report", "-p", "no:randomly"]
    serial = pytester.runpytest_subprocess(*common, "--flop-report-json=serial.json", "-p", "no:xdist")
    parallel = pytester.runpytest_subprocess(*common, "--flop-report-json=parallel.json", "-n", "2")
    serial.assert_outcomes(passed=3, failed=1)
    parallel.assert_outcomes(passed=3, failed=1)
    assert json.loads(read(repo / "serial.json")) == json.loads(read(repo / "parallel.json"))
    section = [line for line in serial.outlines if line.startswith(("against main:", "  raised", "  new since", "  gone since"))]
    assert len(section) == 4
    assert section == [line for line in parallel.outlines if line.startswith(("against main:", "  raised", "  new since", "  gone since"))]
    parallel.stdout.fnmatch_lines(["*FLOP raise against the base main: 7.13 -> 7.31 GFLOPs (+2.5%, allowed +2.0%)*"])


def test_xdist_workers_never_run_git(pytester: pytest.Pytester, repo: Path) -> None:
    pytest.importorskip("xdist")
    # On the workers git cannot be found: a worker that read the base itself would stop with a usage error.
    write(repo, "conftest.py", "import os\n\ndef pytest_configure(config):\n    if hasattr(config, 'workerinput'):\n"
                               "        os.environ['PATH'] = os.devnull\n")
    result = pytester.runpytest_subprocess("--flop-base-ref=main", "--flop-base-rel=2%", "--flop-report-json=r.json", "-n", "2")
    result.assert_outcomes(passed=3, failed=1)
    assert json.loads(read(repo / "r.json"))["base"]["raised"] == ["test_m.py::test_grow"]


# --- bad input: usage errors before any test runs ---------------------------------------------------------


def usage_error(pytester: pytest.Pytester, *args: str) -> str:
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    err = result.stderr.str()
    assert "passed" not in result.stdout.str() and "failed" not in result.stdout.str()
    return " ".join(err.split())


def test_not_a_git_repository(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    err = usage_error(pytester, "--flop-base-ref=origin/main")
    assert f"--flop-base-ref: {pytester.path} is not inside a git repository; run pytest in a clone of the repository, or pass a base file with --flop-base=PATH" in err


def test_a_ref_that_does_not_exist(pytester: pytest.Pytester, repo: Path) -> None:
    err = usage_error(pytester, "--flop-base-ref=origin/main")
    assert "--flop-base-ref: no commit 'origin/main' in this repository; check the name (`git branch -a` lists branches) or fetch it: `git fetch origin main:refs/remotes/origin/main`" in err
    assert "no commit 'mian'" in usage_error(pytester, "--flop-base-ref=mian")
    assert "'--upload-pack=x' is not a git ref" in usage_error(pytester, "--flop-base-ref=--upload-pack=x")


def test_a_shallow_clone_without_the_base_then_fetched(pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    origin = tmp_path / "origin"
    origin.mkdir()
    make_repo(origin)
    clone = pytester.path / "clone"
    git(pytester.path, "clone", "-q", "--depth", "1", "--branch", "pr", origin.as_uri(), str(clone))
    assert git(clone, "rev-parse", "--is-shallow-repository").strip() == "true"
    monkeypatch.chdir(clone)
    err = usage_error(pytester, "--flop-base-ref=origin/main")
    fetch = "git fetch origin main:refs/remotes/origin/main"
    assert f"--flop-base-ref: origin/main is not in this shallow clone; fetch the base: `{fetch}`" in err
    assert "`git fetch --unshallow`" in err and "`fetch-depth: 0`" in err
    git(clone, *fetch.split()[1:], "-q")  # the command the message names
    result = pytester.runpytest("--flop-base-ref=origin/main", "--flop-report-json=r.json")
    result.assert_outcomes(passed=4)
    assert json.loads(read(clone / "r.json"))["base"]["raised"] == ["test_m.py::test_grow"]


def test_a_malformed_base_file_names_the_ref_file_and_line(pytester: pytest.Pytester, repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "broken", "main")
    write(repo, "flopbudget.toml", '[meta]\nschema = 1\n\n["test_m.py::test_grow"]\nmacs = "lots"\n')
    git(repo, "commit", "-q", "-am", "broken")
    git(repo, "checkout", "-q", "pr")
    err = usage_error(pytester, "--flop-base-ref=broken")
    assert ("--flop-base-ref: broken:flopbudget.toml:5: entry \"test_m.py::test_grow\": 'macs' must be a non-negative "
            "integer, got string 'lots'; fix the file on that branch (or point --flop-base-ref at another ref)") in err
    assert "--flop-update" not in err  # updating rewrites the local baseline, never the base
    (repo / "base.toml").write_text("[meta\n", encoding="utf-8")
    err = usage_error(pytester, "--flop-base=base.toml")
    assert f"--flop-base: {repo / 'base.toml'}:1:" in err and "not valid TOML" in err and "fix the base file or pass another one" in err


def test_the_baseline_path_is_a_directory_at_the_ref(pytester: pytest.Pytester, repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "dir", "main")
    git(repo, "rm", "-q", "flopbudget.toml")
    write(repo, "flopbudget.toml/x", "x\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "dir")
    git(repo, "checkout", "-q", "-f", "pr")
    assert "--flop-base-ref: dir:flopbudget.toml is a tree, not a file" in usage_error(pytester, "--flop-base-ref=dir")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--flop-base=base.toml", "--flop-base-ref=main"], "--flop-base and --flop-base-ref both name a base (options or ini); give one"),
        (["--flop-base-rel=2%"], "--flop-base-rel=2% limits a raise against the base, but no base is given; add --flop-base-ref=origin/main (or --flop-base=PATH)"),
        (["--flop-base-abs=0.5"], "--flop-base-abs=0.5 limits a raise against the base, but no base is given"),
        (["--flop-base-ref=main", "--flop-base-rel=lots"], "option --flop-base-rel must be a fraction like 0.02 or a percentage like 2%, got 'lots'"),
        (["--flop-base-ref=main", "--flop-base-abs=-1"], "option --flop-base-abs must be >= 0, got -1.0"),
        (["--flop-base=nowhere.toml"], "nowhere.toml: no such file; check the path"),
        (["--flop-base=."], "is a directory; give the base's baseline file"),
    ],
)
def test_bad_base_options_are_usage_errors(pytester: pytest.Pytester, repo: Path, args: list[str], message: str) -> None:
    (repo / "base.toml").write_text("", encoding="utf-8")
    assert message in usage_error(pytester, *args)


def test_an_ini_base_limit_is_inactive_without_a_base(pytester: pytest.Pytester, repo: Path) -> None:
    """A repository keeps flopbudget_base_rel in its ini for CI; a local run without a base still works."""
    pytester.makeini("[pytest]\nflopbudget_base_rel = 2%\n")
    result = pytester.runpytest()
    assert result.ret == 0, result.stdout.str()
    assert "limits a raise against the base" not in result.stdout.str() + result.stderr.str()


def test_options_are_in_the_help_group(pytester: pytest.Pytester) -> None:
    out = pytester.runpytest("--help").stdout.str()
    group = out.split("FLOP budgets and baselines (pytest-flopbudget):", 1)[1].split("\n\n", 1)[0]
    for flag in ("--flop-base=PATH", "--flop-base-ref=REF", "--flop-base-rel=REL", "--flop-base-abs=GFLOPS"):
        assert flag in group
    for ini in ("flopbudget_base ", "flopbudget_base_ref", "flopbudget_base_rel", "flopbudget_base_abs"):
        assert ini in out


# --- units: reading the base through git --------------------------------------------------------------


def test_from_ref_reads_the_blob_at_the_commit(tmp_path: Path) -> None:
    make_repo(tmp_path)
    got = base_file.from_ref("main", tmp_path / "flopbudget.toml", tmp_path)
    assert got.entries == BASE_ENTRIES and got.exists
    assert got.commit == git(tmp_path, "rev-parse", "main").strip()
    assert (got.label, got.source) == ("main", "main:flopbudget.toml")
    # A rootdir below the repository's top level still finds the file at its path in the repository.
    (tmp_path / "sub").mkdir()
    assert base_file.from_ref("main", tmp_path / "flopbudget.toml", tmp_path / "sub").entries == BASE_ENTRIES
    assert base_file.Base.from_json(json.loads(json.dumps(got.to_json()))) == got  # what a worker receives


def test_from_ref_refuses_a_baseline_outside_the_repository(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    make_repo(tmp_path / "repo")
    with pytest.raises(base_file.BaseError, match="lies outside the git repository"):
        base_file.from_ref("main", tmp_path / "flopbudget.toml", tmp_path / "repo")


def test_from_ref_without_git_or_with_a_hanging_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_repo(tmp_path)
    sleep = shutil.which("sleep")
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(base_file.BaseError, match="needs git, which is not on PATH; install git, or pass a base file"):
        base_file.from_ref("main", tmp_path / "flopbudget.toml", tmp_path)
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "git").write_text(f"#!/bin/sh\nexec {sleep} 30\n", encoding="utf-8")
    (slow / "git").chmod(0o755)
    monkeypatch.setenv("PATH", str(slow))
    with pytest.raises(base_file.BaseError, match=r"`git rev-parse --show-toplevel` took over 0.5 s"):
        base_file.from_ref("main", tmp_path / "flopbudget.toml", tmp_path, timeout=0.5)


# --- units: the comparison -------------------------------------------------------------------------------


def test_judge_base() -> None:
    base = 1000 * G  # 1000 GFLOPs
    kw = {"base_label": "main", "updating": False}
    assert judge_base(base * 2, base_macs=base, rel=None, abs_gflops=None, **kw) is None  # informs only
    assert judge_base(base * 2, base_macs=None, rel=0.0, abs_gflops=None, **kw) is None  # new against the base
    assert judge_base(base + base // 50, base_macs=base, rel=0.02, abs_gflops=None, **kw) is None  # exactly +2%
    raised = judge_base(base + base // 50 + 1, base_macs=base, rel=0.02, abs_gflops=None, **kw)
    assert raised.status == "raised" and raised.failure.startswith("FLOP raise against the base main: 1,000.00 -> 1,020.00 GFLOPs")
    assert "allowed +2.0%); needs approval" in raised.failure
    assert judge_base(base + 5 * G, base_macs=base, rel=None, abs_gflops=5.0, **kw) is None  # +5 GFLOPs allowed
    assert judge_base(base + 5 * G + 1, base_macs=base, rel=None, abs_gflops=5.0, **kw).status == "raised"
    assert judge_base(base + 10 * G, base_macs=base, rel=0.001, abs_gflops=10.0, **kw) is None  # the larger applies
    assert judge_base(base - 1, base_macs=base, rel=0.0, abs_gflops=0.0, **kw) is None  # lowered
    updating = judge_base(base * 2, base_macs=base, rel=0.0, abs_gflops=None, base_label="main", updating=True)
    assert updating.status == "raised" and updating.failure is None
    assert judge_base(1, base_macs=0, rel=0.5, abs_gflops=None, **kw).failure.endswith("(+inf%, allowed +0); needs approval")


def test_module_deltas() -> None:
    assert module_deltas({"a": 10, "b": 5, "c": 7}, {"a": 4, "b": 5, "d": 9}) == [("d", -9), ("c", 7), ("a", 6)]


def rec(name: str, macs: int, base_macs: int | None, status: str = "ok", base: str = "main", **kw) -> Record:
    nodeid = f"t.py::{name}"
    return Record(id=nodeid, nodeid=nodeid, macs=macs, status=status, baseline_macs=macs, base=base, base_macs=base_macs, **kw)


def summary(**kw) -> BaseSummary:
    return BaseSummary(**{"label": "main", "source": "main:flopbudget.toml", "exists": True, "baseline_name": "flopbudget.toml", **kw})


def test_base_headline_cases() -> None:
    up = rec("up", 10_498, 10_000)  # +4.98%
    up2 = rec("up2", 10_100, 10_000)
    assert base_headline([up, up2], summary()) == "This PR raises 2 tests by up to +5.0% against main, accepted in flopbudget.toml."
    gate = summary(gate="--flop-base-rel=1%")
    held = rec("up", 10_498, 10_000, status="raised")
    assert base_headline([held, up2], gate) == (
        "This PR raises 2 tests by up to +5.0% against main: 1 accepted in flopbudget.toml, 1 over --flop-base-rel=1% (needs approval).")
    failing = rec("up2", 10_100, 10_000, status="regressed")
    assert base_headline([held, failing], gate).endswith(": 1 over --flop-base-rel=1% (needs approval), 1 not accepted in flopbudget.toml.")
    same = rec("same", 100, 100)
    assert base_headline([same], summary()) == "This PR changes no test's FLOPs against main."
    assert base_headline([same, rec("n", 5, None)], summary(gone=("t.py::old",))) == (
        "This PR changes no test's FLOPs against main; 1 test new and 1 gone since main.")
    assert base_headline([same], summary(gone=None)).endswith("(a partial run: tests gone since the base are not listed)")
    assert base_headline([rec("n", 5, None)], summary(exists=False)) == "main has no flopbudget.toml: every test is new against the base."
    changes = base_changes([same, up, up2, rec("down", 50, 100), rec("n", 5, None), rec("nobase", 5, None, base=None)])
    assert [r.id for r in changes.raised] == ["t.py::up", "t.py::up2"]
    assert [r.id for r in changes.lowered] == ["t.py::down"] and [r.id for r in changes.new] == ["t.py::n"]


def test_renderers_without_a_base_are_unchanged() -> None:
    plain = Record(id="t.py::a", nodeid="t.py::a", macs=G, status="ok", baseline_macs=G)
    assert terminal_table([plain])[0].split() == ["test", "GFLOPs", "published", "budget", "baseline", "change", "status"]
    assert "Against" not in markdown_report([plain], {}, None)
    assert json_report([plain], {}, None)["base"] is None


def test_renderers_with_a_base() -> None:
    up = rec("up", 3 * G, 2 * G, modules={"head": 2 * G, "enc": G}, base_modules={"head": G, "enc": G})
    table = terminal_table([up], base=True)
    assert table[0].split() == ["test", "GFLOPs", "published", "budget", "baseline", "change", "base", "vs", "base", "status"]
    assert table[1].split() == ["GMACs", "GFLOPs", "GFLOPs", "GFLOPs"]
    assert table[3].split() == ["t.py::up", "3.000", "-", "-", "3.000", "0.0%", "2.000", "+50.0%", "ok"]  # no categories: published -
    md = markdown_report([up], {}, None, base=summary())
    assert "| `t.py::up` | 2.000 | 3.000 | +50.0% | `head` +100.0% | ✅ ok |" in md
    test = json_report([up], {}, None, base=summary())["tests"][0]
    assert test["base_module_changes"] == [{"module": "head", "base_macs": G, "macs": 2 * G, "delta_macs": G}]
    many = [rec(f"n{i:02d}", 1, None) for i in range(12)]  # more than ten new tests fold into <details>
    assert "<summary>New since `main` (12)</summary>" in markdown_report(many, {}, None, base=summary())


def test_markdown_table_cells_are_escaped() -> None:
    odd = rec("odd[a|b]", 2 * G, G, base="origin/feature|x", modules={"x|y": 2 * G}, base_modules={"x|y": G})
    md = markdown_report([odd], {}, None, base=summary(label="origin/feature|x"))
    row = next(line for line in md.splitlines() if line.startswith("| `t.py::odd"))
    assert row.count(" | ") == 5  # six cells: every | inside a cell is escaped
    assert "origin/feature\\|x GFLOPs" in md


def test_times_travel_to_the_workers_and_older_rows_have_none() -> None:
    entry = baseline_file.Entry(5, {"head": 5}, time={"l4": baseline_file.Timing(111901, "67b9e656")})
    base = base_file.Base("main", "main:flopbudget.toml", {"t.py::test_x": entry}, True, "abc")
    assert base_file.Base.from_json(json.loads(json.dumps(base.to_json()))) == base
    old = {"label": "main", "source": "main:flopbudget.toml", "exists": True, "entries": {"t.py::test_x": [5, {"head": 5}, {}, None, None]}}
    assert base_file.Base.from_json(old).entries["t.py::test_x"] == baseline_file.Entry(5, {"head": 5})
