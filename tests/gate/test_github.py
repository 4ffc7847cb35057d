"""GitHub integration: the example workflow, the job summary, ::error annotations, the Markdown report.

The workflow in examples/github-actions/flopbudget.yml is checked as data (structure,
every option it names exists, its pytest command really works on a small suite), its step
that prepares the pull-request comment is run, and the comment script of
flopbudget-comment.yml is run under node with a fake GitHub API when node is available.
tests/test_workflow.py runs the whole workflow on repositories of three shapes.

Counts are derived from the shapes: a Linear(1024 -> w) on (1, 680, 1024) costs
680 * 1024 * w MACs; GFLOPs are 2 * MACs / 1e9.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest
import workflows
import yaml

from pytest_flopbudget import report
from pytest_flopbudget.gate import messages, settings

WORKFLOW = workflows.CHECK

TOKENS, IN = 680, 1024


def macs_of(width: int) -> int:
    return TOKENS * IN * width


def gflops_of(width: int) -> float:
    return 2 * macs_of(width) / 1e9


# --- the workflow as data ------------------------------------------------------------


def load_workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def steps() -> list[dict]:
    (job,) = load_workflow()["jobs"].values()
    return job["steps"]


# What the shell expands in a pull request's run: scripts (BASE_REF: ${{ github.base_ref }}).
EXPRESSIONS = {"${BASE_REF}": "main"}


def pytest_commands() -> list[list[str]]:
    """Every pytest command line in a run: step, split like the shell would (comments dropped)."""
    commands = []
    for step in steps():
        script = step.get("run", "")
        for expression, value in EXPRESSIONS.items():
            script = script.replace(expression, value)
        for line in script.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            if tokens[:1] == ["pytest"]:
                commands.append(tokens)
            elif tokens[:3] in (["python", "-m", "pytest"], ["python3", "-m", "pytest"]):
                commands.append(["pytest", *tokens[3:]])
    return commands


def run_steps() -> list[dict]:
    """The steps that run pytest: on a push, and on a pull request (against the base branch)."""
    return [s for s in steps() if any(t[:1] == ["pytest"] for t in _commands_of(s))]


def _commands_of(step: dict) -> list[list[str]]:
    commands = [shlex.split(line, comments=True) for line in step.get("run", "").splitlines() if line.strip()]
    return [["pytest", *c[3:]] if c[:3] == ["python", "-m", "pytest"] else c for c in commands]


def step_named(start: str) -> dict:
    (step,) = [s for s in steps() if s.get("name", "").startswith(start)]
    return step


def comment_step() -> dict:
    """The step that prepares the comment flopbudget-comment.yml posts."""
    return step_named("Prepare the pull request comment")


def test_workflow_triggers_permissions_and_steps() -> None:
    workflow = load_workflow()
    triggers = workflow[True]  # PyYAML reads the key `on:` as the boolean True
    assert "pull_request" in triggers
    assert triggers["push"] is None  # every branch; the job's `if:` keeps the default branch
    assert workflow["permissions"] == {"contents": "read"}  # the comment is posted by flopbudget-comment.yml
    (job,) = workflow["jobs"].values()
    assert job["if"] == "github.event_name == 'pull_request' || github.ref_name == github.event.repository.default_branch"
    assert job["runs-on"].startswith("ubuntu")
    uses = [s.get("uses", "").split("@")[0] for s in job["steps"]]
    assert uses[:2] == ["actions/checkout", "actions/setup-python"]
    assert job["steps"][1]["with"]["python-version"] == "3.11"  # a string: 3.11 unquoted would be a float
    assert "actions/upload-artifact" in uses


def test_install_steps_install_cpu_torch_first_and_pin_what_the_baseline_records() -> None:
    installs = [s for s in steps() if "pip install" in s.get("run", "")]
    assert [s["name"] for s in installs] == ["Install CPU torch", "Install the project and pytest-flopbudget"]
    assert "--index-url https://download.pytorch.org/whl/cpu" in installs[0]["run"]  # before anything can pull CUDA
    assert '"pytest-flopbudget==${FLOPBUDGET_VERSION}" "torchprofile==${TORCHPROFILE_VERSION}"' in installs[1]["run"]
    pins = step_named("Read the versions flopbudget.toml records")
    assert steps().index(pins) < steps().index(installs[0])
    assert installs[1]["env"] == {"TORCHPROFILE_VERSION": "${{ steps.pins.outputs.torchprofile }}",
                                  "FLOPBUDGET_VERSION": "${{ steps.pins.outputs.flopbudget }}"}
    text = WORKFLOW.read_text(encoding="utf-8")
    assert "torch and torchprofile" in text and "[meta]" in text


def test_run_step_checks_the_committed_baseline_and_fails_the_check() -> None:
    push_step, pr_step = run_steps()
    push, pr = pytest_commands()
    for step, command in ((push_step, push), (pr_step, pr)):
        assert {"--flop-report", "--flop-report-md=flop-report.md", "--flop-report-html=flop-report.html",
                "--flop-missing=fail"} <= set(command)
        assert not any(t.startswith(("--flop-update", "--flop-prune", "--flop-baseline")) for t in command)
        assert not step.get("continue-on-error")  # its failure is the check's failure
    # Exactly one of them runs on every event: the push one everywhere but on a pull request.
    assert push_step["if"] == "github.event_name != 'pull_request'"
    assert pr_step["if"] == "github.event_name == 'pull_request'"
    assert pr == [*push, "--flop-base-ref=origin/main"]  # origin/${{ github.base_ref }}


def test_pull_request_step_compares_with_the_base_and_the_label_lifts_the_limit() -> None:
    workflow = load_workflow()
    assert {"labeled", "unlabeled", "synchronize"} <= set(workflow[True]["pull_request"]["types"])
    pr_step = run_steps()[1]
    assert '"--flop-base-ref=origin/${BASE_REF}"' in pr_step["run"]
    assert pr_step["env"]["BASE_REF"] == "${{ github.base_ref }}"
    label, limit = approval(pr_step)
    assert label == messages.APPROVAL_LABEL  # the label the failure message names
    assert limit == "--flop-base-rel=1%"
    fetch = step_named("Fetch the base branch")
    assert fetch["if"] == "github.event_name == 'pull_request'" and fetch["env"]["BASE_REF"] == "${{ github.base_ref }}"
    assert steps().index(fetch) < steps().index(pr_step)
    text = WORKFLOW.read_text(encoding="utf-8")
    assert f"gh pr edit 123 --add-label {label}" in text and f"gh label create {label}" in text
    assert "fetch-depth: 0" in text


def approval(step: dict) -> tuple[str, str]:
    """(label, options) of ``PYTEST_ADDOPTS: ${{ !contains(labels, 'LABEL') && 'OPTIONS' || '' }}``."""
    found = re.fullmatch(
        r"\$\{\{ !contains\(github\.event\.pull_request\.labels\.\*\.name, '([^']+)'\) && '([^']+)' \|\| '' \}\}",
        step["env"]["PYTEST_ADDOPTS"],
    )
    assert found, step["env"]["PYTEST_ADDOPTS"]
    return found.group(1), found.group(2)


def test_comment_step_prepares_the_report_with_the_marker() -> None:
    step = comment_step()
    assert step["if"] == "always() && github.event_name == 'pull_request'"  # most needed when the check failed
    assert f'marker = "{report.MARKER}"' in step["run"]
    assert report.markdown_report([], {}, None).splitlines()[0] == report.MARKER
    (md_option,) = [t for t in pytest_commands()[0] if t.startswith("--flop-report-md=")]
    assert f'Path("{md_option.split("=", 1)[1]}")' in step["run"]
    assert step["env"]["PR_NUMBER"] == "${{ github.event.pull_request.number }}"
    script = workflows.comment_script()
    assert f"const marker = '{report.MARKER}';" in script
    for call in ("github.rest.issues.listComments", "github.rest.issues.updateComment", "github.rest.issues.createComment"):
        assert call in script


def test_the_page_is_uploaded_and_its_artifact_url_goes_to_the_comment() -> None:
    (upload,) = [s for s in steps() if s.get("id") == "upload"]
    assert str(upload["uses"]).startswith("actions/upload-artifact@")
    assert upload["if"] == "always()"  # a failed check uploads its reports too
    (html_option,) = [t for t in pytest_commands()[0] if t.startswith("--flop-report-html=")]
    page = html_option.split("=", 1)[1]
    assert page in upload["with"]["path"].split()
    assert {"flop-report.md", "flop-report.json"} <= set(upload["with"]["path"].split())
    comment = comment_step()
    assert comment["env"]["REPORT_URL"] == f"${{{{ steps.{upload['id']}.outputs.artifact-url }}}}"
    assert page in comment["run"]
    # the run's page when nothing was uploaded
    assert comment["env"]["RUN_URL"] == "${{ github.server_url }}/${{ github.repository }}/actions/runs/${{ github.run_id }}"
    assert steps().index(upload) < steps().index(comment) < steps().index(step_named("Upload the pull request comment"))


def test_workflow_documents_accepting_and_pruning() -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    assert "pytest --flop-update" in text
    assert re.search(r'pytest "[^"]+::[^"]+" --flop-update', text)  # the exact node id form
    assert "git add flopbudget.toml" in text
    assert "--flop-prune" in text


def help_options(pytester: pytest.Pytester) -> set[str]:
    result = pytester.runpytest("--help")
    assert result.ret == 0
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", result.stdout.str()))


def test_every_option_in_the_workflow_is_known_to_pytest(pytester: pytest.Pytester) -> None:
    known = help_options(pytester)
    ours = {opt.flag for opt in settings.OPTIONS}
    assert ours <= known  # the plugin's options are all in the help
    mentioned = set(re.findall(r"--flop-[a-z-]+", WORKFLOW.read_text(encoding="utf-8")))
    assert mentioned and mentioned <= ours, mentioned - ours  # run: steps and comments alike
    choices = {opt.flag: opt.choices for opt in settings.OPTIONS if opt.choices}
    commands = pytest_commands()
    assert commands
    for command in commands:
        for token in command[1:]:
            if not token.startswith("-"):
                continue
            name, _, value = token.partition("=")
            assert name in known, f"{name} is not a pytest option"
            if name in choices:
                assert value in choices[name], f"{token}: not one of {choices[name]}"


# --- suites run under pytester ----------------------------------------------------------

MODELS = """
import torch
from torch import nn

WIDTH = {width}


def linear(width=WIDTH):
    return nn.Linear(1024, width, device="meta"), torch.empty(1, 680, 1024, device="meta")


class EncoderHead(nn.Module):
    def __init__(self, width=WIDTH):
        super().__init__()
        self.encoder = nn.Linear(1024, 1024)
        self.head = nn.Linear(1024, width)

    def forward(self, x):
        return self.head(torch.relu(self.encoder(x)))
"""

# Budget 5.8 GFLOPs: width 4096 (5.70) is under it, width 4224 (5.88) over it.
SUITE = """
import pytest
import models


def test_grows(flops):
    flops(*models.linear())


@pytest.mark.flop_budget(gflops=5.8)
def test_over(flops):
    flops(*models.linear())


def test_same(flops):
    flops(*models.linear(512))
"""


def write_suite(pytester: pytest.Pytester, width: int) -> None:
    pytester.makepyfile(models=MODELS.format(width=width), test_m=SUITE)


def line_of(pytester: pytest.Pytester, text: str) -> int:
    lines = (pytester.path / "test_m.py").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.startswith(text))


def regressed_suite(pytester: pytest.Pytester) -> None:
    """Record the baseline at width 4096, then widen to 4224 (+3.1%): one regressed, one over budget, one ok."""
    write_suite(pytester, 4096)
    pytester.runpytest("--flop-update").assert_outcomes(passed=3)
    write_suite(pytester, 4224)


def test_github_actions_gets_summary_and_annotations(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    regressed_suite(pytester)
    summary = pytester.path / "step_summary.md"
    earlier = "## Unit tests\n\nall green\n"
    summary.write_text(earlier, encoding="utf-8")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=2)
    text = summary.read_text(encoding="utf-8")
    assert text.startswith(earlier)  # appended, not overwritten
    added = text[len(earlier):]
    assert added.splitlines()[0] == report.MARKER
    assert "### ❌ FLOP budget: 1 regressed, 1 over budget" in added
    assert "0 improved · 0 new · 1 unchanged" in added
    changed = added[added.index("| Test | Baseline GFLOPs"):added.index("<details>")]
    assert "`test_m.py::test_grows`" in changed and "`test_m.py::test_over`" in changed
    assert "test_same" not in changed
    grows = next(line for line in changed.splitlines() if "test_grows" in line)
    assert [c.strip() for c in grows.strip("|").split("|")][1:4] == [
        f"{gflops_of(4096):.3f}", f"{gflops_of(4224):.3f}", "+3.1%"]

    errors = [line for line in result.outlines if line.startswith("::")]
    over_line = line_of(pytester, "@pytest.mark.flop_budget")  # pytest's location of a decorated test
    grows_line = line_of(pytester, "def test_grows")
    assert errors == [
        f"::error file=test_m.py,line={over_line},title=FLOP budget::test_m.py::test_over: FLOP budget exceeded: "
        f"{gflops_of(4224):.2f} GFLOPs > 5.80 GFLOPs (+1.4%25)%0A" + errors[0].split("%0A", 1)[1],
        f"::error file=test_m.py,line={grows_line},title=FLOP budget::test_m.py::test_grows: FLOP regression: "
        f"{gflops_of(4096):.2f} -> {gflops_of(4224):.2f} GFLOPs (+3.1%25, allowed +0%25) against flopbudget.toml%0A"
        + errors[1].split("%0A", 1)[1],
    ]
    assert all("\n" not in e for e in errors)

    # A second run (a re-run of the job step) appends a second report after the first.
    pytester.runpytest()
    assert summary.read_text(encoding="utf-8").count(report.MARKER) == 2


@pytest.mark.parametrize(
    "environ, args, ini",
    [
        ({"GITHUB_ACTIONS": "true"}, ["--flop-github=off"], None),
        ({"GITHUB_ACTIONS": "true"}, [], "[pytest]\nflopbudget_github = off\n"),
        ({}, [], None),
        ({"GITHUB_ACTIONS": "false"}, [], None),
    ],
    ids=["option-off", "ini-off", "not-on-github", "github-actions-false"],
)
def test_no_github_output_when_off_or_elsewhere(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, environ: dict, args: list, ini: str | None
) -> None:
    regressed_suite(pytester)
    if ini:
        pytester.makeini(ini)
    summary = pytester.path / "step_summary.md"
    summary.write_text("before\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=1, failed=2)
    assert summary.read_text(encoding="utf-8") == "before\n"
    assert not [line for line in result.outlines if line.startswith("::")]


def test_markdown_report_file(pytester: pytest.Pytester) -> None:
    regressed_suite(pytester)
    result = pytester.runpytest("--flop-report-md=flop-report.md")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*flopbudget: Markdown report written to *flop-report.md"])
    md = (pytester.path / "flop-report.md").read_text(encoding="utf-8")
    lines = md.splitlines()
    assert lines[0] == report.MARKER
    assert "### ❌ FLOP budget: 1 regressed, 1 over budget" in lines
    assert "0 improved · 0 new · 1 unchanged" in lines
    changed = md[md.index("| Test | Baseline GFLOPs"):md.index("```mermaid")]
    rows = [line for line in changed.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == ["test_m.py::test_over", "test_m.py::test_grows"]  # changed only
    chart = md[md.index("```mermaid"):md.index("<details>")]
    assert "xychart-beta" in chart and '"test_over", "test_grows"' in chart
    details = md[md.index("<details>"):md.index("</details>")]
    assert "<summary>All 3 measurements</summary>" in details
    for name in ("test_grows", "test_over", "test_same"):
        assert f"`test_m.py::{name}`" in details
    env_line = next(line for line in lines if line.startswith("**Environment:**"))
    assert f"torch {report.md_text(version('torch'))}" in env_line and "counter torchprofile" in env_line
    assert "```sh\npytest --flop-update\n```" in md
    assert "baseline recorded with" not in md

    # Back to the recorded widths: nothing changed, so no chart and no changed-tests table.
    write_suite(pytester, 4096)
    pytester.runpytest("--flop-report-md=flop-report.md").assert_outcomes(passed=3)
    md = (pytester.path / "flop-report.md").read_text(encoding="utf-8")
    assert "### ✅ FLOP budget: no regressions" in md
    assert "0 improved · 0 new · 3 unchanged" in md
    assert "No test changed its FLOP count." in md
    assert "mermaid" not in md and "| Test | Baseline GFLOPs" not in md
    assert "<summary>All 3 measurements</summary>" in md


def test_baseline_from_another_torch_warns_in_header_and_markdown(pytester: pytest.Pytester) -> None:
    write_suite(pytester, 4096)
    pytester.runpytest("--flop-update").assert_outcomes(passed=3)
    path = pytester.path / "flopbudget.toml"
    text = path.read_text(encoding="utf-8")
    now = version("torch")
    assert f'torch = "{now}"' in text
    path.write_text(text.replace(f'torch = "{now}"', 'torch = "1.13.1"', 1), encoding="utf-8")
    result = pytester.runpytest("--flop-report-md=flop-report.md")
    result.assert_outcomes(passed=3)
    header = result.stdout.str().split("collected", 1)[0]
    assert f"flopbudget: WARNING baseline recorded with torch 1.13.1, this run uses {now}: counts may differ" in header
    md = (pytester.path / "flop-report.md").read_text(encoding="utf-8")
    escaped = report.md_text(now)
    assert f"> ⚠️ baseline recorded with torch 1.13.1, this run used torch {escaped}: counts may differ" in md.splitlines()


def test_regression_names_the_module_that_grew(pytester: pytest.Pytester) -> None:
    suite = """
    import torch
    import models

    def test_model(flops):
        with torch.device("meta"):
            model, x = models.EncoderHead(), torch.empty(1, 680, 1024)
        flops(model, x)
    """
    pytester.makepyfile(models=MODELS.format(width=4096), test_m=textwrap.dedent(suite))
    pytester.runpytest("--flop-update").assert_outcomes(passed=1)
    pytester.makepyfile(models=MODELS.format(width=4224))  # only the head is widened
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    out = result.outlines
    start = next(i for i, line in enumerate(out) if line.strip() == "changed against the baseline:")
    section = []
    for line in out[start + 1:]:
        if not line.startswith("    "):
            break
        section.append(line.split())
    grown = macs_of(4224) - macs_of(4096)
    assert [s[0] for s in section] == ["head"]
    assert section[0][1:] == [f"{grown:+,}", "MACs", "(+3.1%)"]
    # The cost listing still shows both layers, the unchanged encoder included.
    result.stdout.fnmatch_lines(["*modules carrying the cost (top 2 of 2):*", "*head *", "*encoder *1.43 GFLOPs*"])


# --- the workflow's own pytest command, and its comment script -------------------------------


def test_workflow_pytest_command_on_a_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    command = pytest_commands()[0]  # the push step's
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(pytester.path / "summary.md"))
    write_suite(pytester, 4096)
    first = pytester.runpytest(*command[1:])  # no baseline committed: every test fails in CI
    first.assert_outcomes(failed=3)
    assert first.ret == pytest.ExitCode.TESTS_FAILED
    assert [line.split(",")[0] for line in first.outlines if line.startswith("::")] == ["::warning file=test_m.py"] * 3
    monkeypatch.delenv("CI")
    pytester.runpytest("--flop-update").assert_outcomes(passed=3)  # what a maintainer runs locally
    monkeypatch.setenv("CI", "true")
    clean = pytester.runpytest(*command[1:])
    clean.assert_outcomes(passed=3)
    clean.stdout.fnmatch_lines(["*FLOP REPORT*"])
    assert (pytester.path / "flop-report.json").is_file()  # the artifact
    assert "FLOP budget: no regressions" in (pytester.path / "flop-report.html").read_text(encoding="utf-8")
    assert "no regressions" in (pytester.path / "flop-report.md").read_text(encoding="utf-8")
    write_suite(pytester, 4224)
    failed = pytester.runpytest(*command[1:])
    failed.assert_outcomes(passed=1, failed=2)
    assert failed.ret == pytest.ExitCode.TESTS_FAILED
    md = (pytester.path / "flop-report.md").read_text(encoding="utf-8")
    assert "### ❌ FLOP budget: 1 regressed, 1 over budget" in md


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_workflow_pull_request_steps_in_a_shallow_checkout(
    pytester: pytest.Pytester, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fetch step, then the pull-request command, in a shallow clone as actions/checkout makes it;
    without the label a +2.5% raise against the base fails, with it the report says it was accepted."""
    from gitrepo import git, git_environment, make_repo

    git_environment(monkeypatch, tmp_path_factory)
    origin = tmp_path / "origin"
    origin.mkdir()
    make_repo(origin)  # main: the base; pr: a +2.5% raise accepted in flopbudget.toml
    clone = pytester.path / "checkout"
    git(pytester.path, "clone", "-q", "--depth", "1", "--branch", "pr", origin.as_uri(), str(clone))
    fetch = step_named("Fetch the base branch")
    subprocess.run(["bash", "-c", fetch["run"]], cwd=clone, env={**os.environ, "BASE_REF": "main"}, check=True, timeout=60)
    monkeypatch.chdir(clone)
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(clone / "summary.md"))
    pr_step = run_steps()[1]
    command = pytest_commands()[1]
    label, limit = approval(pr_step)

    monkeypatch.setenv("PYTEST_ADDOPTS", limit)  # no label yet
    held = pytester.runpytest(*command[1:])
    held.assert_outcomes(passed=3, failed=1)
    held.stdout.fnmatch_lines([f"*labelled `{label}`*"])
    md = (clone / "flop-report.md").read_text(encoding="utf-8")
    assert "This PR raises 1 test by up to +2.5% against `origin/main`: 1 over --flop-base-rel=1% (needs approval)" in md

    monkeypatch.setenv("PYTEST_ADDOPTS", "")  # the label added: the workflow re-runs without the limit
    approved = pytester.runpytest(*command[1:])
    approved.assert_outcomes(passed=4)
    md = (clone / "flop-report.md").read_text(encoding="utf-8")
    assert "This PR raises 1 test by up to +2.5% against `origin/main`, accepted in `flopbudget.toml`" in md
    assert md in (clone / "summary.md").read_text(encoding="utf-8")


RUN_PAGE = workflows.RUN_URL + "#artifacts"
ARTIFACT = "https://github.com/acme/models/actions/runs/4242/artifacts/99"


def with_link(md: str, url: str = RUN_PAGE) -> str:
    return md.rstrip() + f"\n\n[Charts: flop-report.html in the flop-report artifact]({url})\n"


def prepare_comment(tmp: Path, report_url: str = "") -> str:
    """Run the workflow's step that prepares the comment in ``tmp``; the body it wrote."""
    env = {**os.environ, "PR_NUMBER": "7", "REPORT_URL": report_url, "RUN_URL": workflows.RUN_URL}
    subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", comment_step()["run"]], cwd=tmp,
                   env=env, check=True, timeout=60)
    assert (tmp / "flop-comment" / "pr-number").read_text(encoding="utf-8") == "7\n"
    return (tmp / "flop-comment" / "body.md").read_text(encoding="utf-8")


def test_prepared_comment_links_the_artifact_and_fits_a_comment(tmp_path: Path) -> None:
    missing = prepare_comment(tmp_path)
    assert missing.startswith(report.MARKER + "\n### ⚠️ FLOP budget: no report")
    assert missing.endswith(with_link("", RUN_PAGE).lstrip())

    md = report.markdown_report([], {"torch": "2.5.1"}, None)
    (tmp_path / "flop-report.md").write_text(md, encoding="utf-8")
    assert prepare_comment(tmp_path) == with_link(md)
    assert prepare_comment(tmp_path, ARTIFACT) == with_link(md, ARTIFACT)

    (tmp_path / "flop-report.md").write_text(report.MARKER + "\n" + "x" * 70000, encoding="utf-8")
    body = prepare_comment(tmp_path)
    assert body.startswith(report.MARKER) and len(body) < 65536 and "truncated" in body
    assert body.endswith(f"[Charts: flop-report.html in the flop-report artifact]({RUN_PAGE})\n")  # the link survives


@pytest.mark.skipif(not workflows.node(), reason="node is not installed")
def test_comment_script_creates_then_updates_the_one_comment(tmp_path: Path) -> None:
    head = "a" * 40
    (tmp_path / "flop-comment").mkdir()
    (tmp_path / "flop-comment" / "pr-number").write_text("7\n", encoding="utf-8")
    body = with_link(report.markdown_report([], {"torch": "2.5.1"}, None))
    (tmp_path / "flop-comment" / "body.md").write_text(body, encoding="utf-8")
    others = [
        {"id": 1, "user": {"type": "User"}, "body": f"quoting the bot:\n{report.MARKER}"},
        {"id": 2, "user": {"type": "Bot"}, "body": "coverage report"},
    ]
    calls = workflows.run_comment_script(tmp_path, others, pr_head=head, run_head=head)
    assert calls[0] == ["pull", {"owner": "acme", "repo": "models", "pull_number": 7}]
    assert calls[1] == ["list", "listComments", {"owner": "acme", "repo": "models", "issue_number": 7, "per_page": 100}]
    assert calls[2] == ["create", {"owner": "acme", "repo": "models", "issue_number": 7, "body": body}]
    assert not [c for c in calls if c[0] == "update"]

    ours = {"id": 42, "user": {"type": "Bot"}, "body": report.MARKER + "\n### old report\n"}
    calls = workflows.run_comment_script(tmp_path, [*others, ours], pr_head=head, run_head=head)
    assert calls[2] == ["update", {"owner": "acme", "repo": "models", "comment_id": 42, "body": body}]
    assert not [c for c in calls if c[0] == "create"]

    # Whatever the artifact holds is data: no marker gets one, an oversized body is cut.
    (tmp_path / "flop-comment" / "body.md").write_text("y" * 70000, encoding="utf-8")
    calls = workflows.run_comment_script(tmp_path, [ours], pr_head=head, run_head=head)
    posted = calls[2][1]["body"]
    assert posted.startswith(report.MARKER + "\n") and len(posted) < 65536 and "truncated" in posted


@pytest.mark.skipif(not workflows.node(), reason="node is not installed")
@pytest.mark.parametrize("number", ["", "7; rm -rf /", "0", "-3", "7\n8"])
def test_comment_script_refuses_anything_but_a_pull_request_number(tmp_path: Path, number: str) -> None:
    (tmp_path / "flop-comment").mkdir()
    (tmp_path / "flop-comment" / "pr-number").write_text(number, encoding="utf-8")
    (tmp_path / "flop-comment" / "body.md").write_text(report.MARKER, encoding="utf-8")
    calls = workflows.run_comment_script(tmp_path, [], pr_head="a" * 40, run_head="a" * 40)
    assert [c[0] for c in calls] == ["failed"] and "not a pull request number" in calls[0][1]
