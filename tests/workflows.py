"""The example GitHub Actions workflows as data, and a small runner for their ``run:`` steps.

``run_job(workflow, event, checkout, python_bin)`` runs a job the way a GitHub runner would for
the steps that are shell scripts: ``bash --noprofile --norc -eo pipefail`` (``shell: bash``) in
the checkout, the workflow's and the step's ``env:``, ``GITHUB_OUTPUT`` / ``GITHUB_ENV`` /
``GITHUB_STEP_SUMMARY`` files read back between steps, ``if:`` conditions and ``${{ ... }}``
expressions evaluated from a table of the ones the workflows use (an expression or condition
not in the table fails the test: add it here with its meaning). ``uses:`` steps are skipped,
their outputs empty. pip runs offline (``PIP_NO_INDEX``, no build isolation, no configuration
file): every requirement must already be installed where the job's python sees it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples" / "github-actions"
CHECK = EXAMPLES / "flopbudget.yml"
COMMENT = EXAMPLES / "flopbudget-comment.yml"

APPROVAL = "${{ !contains(github.event.pull_request.labels.*.name, 'flops-approved') && '--flop-base-rel=1%' || '' }}"
SERVER, REPOSITORY, RUN_ID = "https://github.com", "acme/models", "4242"
RUN_URL = f"{SERVER}/{REPOSITORY}/actions/runs/{RUN_ID}"


def load(path: Path = CHECK) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def job(path: Path = CHECK) -> dict:
    (only,) = load(path)["jobs"].values()
    return only


def steps(path: Path = CHECK) -> list[dict]:
    return job(path)["steps"]


def step_named(start: str, path: Path = CHECK) -> dict:
    (step,) = [s for s in steps(path) if s.get("name", "").startswith(start)]
    return step


@dataclasses.dataclass
class Event:
    """What GitHub puts in the expressions' contexts for one run."""

    name: str  # "push" or "pull_request"
    ref_name: str  # the branch pushed, or the pull request's branch
    default_branch: str
    base_ref: str = ""  # pull requests only
    number: int = 0
    labels: tuple[str, ...] = ()

    def value(self, expression: str, outputs: dict[str, dict[str, str]]) -> str:
        """The value of ``${{ expression }}`` (expression without the braces)."""
        known = {
            "github.base_ref": self.base_ref,
            "github.event.pull_request.number": str(self.number) if self.number else "",
            "github.server_url": SERVER,
            "github.repository": REPOSITORY,
            "github.run_id": RUN_ID,
            APPROVAL[4:-3]: "" if "flops-approved" in self.labels else "--flop-base-rel=1%",
        }
        if expression in known:
            return known[expression]
        step_output = re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expression)
        assert step_output, f"expression not known to tests/workflows.py: ${{{{ {expression} }}}}"
        return outputs.get(step_output.group(1), {}).get(step_output.group(2), "")

    def condition(self, text: str, failed: bool) -> bool:
        pr = self.name == "pull_request"
        known = {
            None: not failed,  # success()
            "github.event_name != 'pull_request'": not failed and not pr,
            "github.event_name == 'pull_request'": not failed and pr,
            "always()": True,
            "always() && github.event_name == 'pull_request'": pr,
            "github.event_name == 'pull_request' || github.ref_name == github.event.repository.default_branch":
                pr or self.ref_name == self.default_branch,
        }
        assert text in known, f"condition not known to tests/workflows.py: {text}"
        return known[text]


def substitute(text: str, event: Event, outputs: dict[str, dict[str, str]]) -> str:
    return re.sub(r"\$\{\{\s*(.*?)\s*\}\}", lambda m: event.value(m.group(1), outputs), text)


@dataclasses.dataclass
class StepRun:
    name: str
    returncode: int | None  # None: skipped
    output: str
    seconds: float = 0.0  # for the log, never asserted on


@dataclasses.dataclass
class JobRun:
    ran: bool
    steps: list[StepRun]
    outputs: dict[str, dict[str, str]]
    summary: str

    @property
    def failed(self) -> bool:
        return any(s.returncode not in (None, 0) for s in self.steps)

    def step(self, name: str) -> StepRun:
        """The step of that name, or the only one whose name starts so."""
        found = [s for s in self.steps if s.name == name] or [s for s in self.steps if s.name.startswith(name)]
        assert len(found) == 1, (name, [s.name for s in self.steps])
        return found[0]

    def log(self) -> str:
        return "\n".join(f"--- {s.name}: {s.returncode} ({s.seconds:.1f} s)\n{s.output}" for s in self.steps)


def read_key_values(path: Path) -> dict[str, str]:
    """``GITHUB_OUTPUT`` / ``GITHUB_ENV`` lines: ``key=value`` and ``key<<DELIM`` ... ``DELIM``."""
    values, lines = {}, path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            values[key] = "\n".join(lines[i + 1:end])
            i = end + 1
            continue
        if line:
            key, value = line.split("=", 1)
            values[key] = value
        i += 1
    return values


def job_environment(scratch: Path, python_bin: Path) -> dict[str, str]:
    """The runner's environment: no pip configuration, offline pip, the job's python first on PATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "GITHUB_", "PYTEST_", "RUNNER_")) and k not in ("CI", "VIRTUAL_ENV", "PYTHONPATH")}
    temp = scratch / "runner-temp"
    temp.mkdir(parents=True, exist_ok=True)
    env.update({
        "PATH": f"{python_bin}{os.pathsep}{env.get('PATH', '')}",
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "RUNNER_TEMP": str(temp),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",  # pip reads this one inverted: "0" turns build isolation off
        "PIP_CACHE_DIR": str(scratch / "pip-cache"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    })
    return env


def run_job(path: Path, event: Event, checkout: Path, python_bin: Path, scratch: Path, timeout: int = 300) -> JobRun:
    workflow = load(path)
    (the_job,) = workflow["jobs"].values()
    outputs: dict[str, dict[str, str]] = {}
    scratch.mkdir(parents=True, exist_ok=True)
    summary = scratch / "step-summary.md"
    summary.write_text("", encoding="utf-8")
    if not event.condition(the_job.get("if"), failed=False):
        return JobRun(False, [], outputs, "")
    base = job_environment(scratch, python_bin)
    base["GITHUB_STEP_SUMMARY"] = str(summary)
    added_env: dict[str, str] = {}
    done: list[StepRun] = []
    failed = False
    for number, step in enumerate(the_job["steps"]):
        name = step.get("name") or step.get("uses", f"step {number}")
        if "uses" in step or not event.condition(step.get("if"), failed):
            done.append(StepRun(name, None, ""))
            continue
        assert "${{" not in step["run"], f"{name}: expressions go through env:, never into the script"
        env = {**base, **{k: substitute(str(v), event, outputs) for k, v in workflow.get("env", {}).items()}, **added_env}
        env.update({k: substitute(str(v), event, outputs) for k, v in step.get("env", {}).items()})
        output_file, env_file = scratch / f"output-{number}", scratch / f"env-{number}"
        env.update({"GITHUB_OUTPUT": str(output_file), "GITHUB_ENV": str(env_file)})
        script = scratch / f"step-{number}.sh"
        script.write_text(step["run"], encoding="utf-8")
        started = time.perf_counter()
        result = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=checkout, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
        )
        done.append(StepRun(name, result.returncode, result.stdout, time.perf_counter() - started))
        failed = failed or result.returncode != 0
        if "id" in step:
            outputs[step["id"]] = read_key_values(output_file)
        added_env.update(read_key_values(env_file))
    return JobRun(True, done, outputs, summary.read_text(encoding="utf-8"))


def job_python(venv: Path, host_site_packages: Path) -> Path:
    """A fresh venv (no pip of its own) that sees ``host_site_packages`` after its own: torch and the
    plugin without reinstalling them, while what pip installs lands in the fresh venv. pip itself is
    the host's, run as ``python -m pip``; it leaves alone what it finds outside this venv."""
    import sys

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    (site_packages,) = venv.glob("lib/python*/site-packages")
    (site_packages / "zz_host_packages.pth").write_text(
        f"import site; site.addsitedir({str(host_site_packages)!r})\n", encoding="utf-8")
    return venv / "bin"


# --- the comment workflow's script under node -------------------------------------------------------

NODE_HARNESS = r"""
const fs = require('fs');
const [scriptPath, statePath] = process.argv.slice(2);
const script = fs.readFileSync(scriptPath, 'utf8');
const state = JSON.parse(fs.readFileSync(statePath, 'utf8'));
const calls = [];
const github = {
  paginate: async (fn, params) => { calls.push(['list', fn.name, params]); return state.comments; },
  rest: {
    issues: {
      listComments: function listComments() { throw new Error('use paginate'); },
      updateComment: async (p) => { calls.push(['update', p]); return { data: { id: p.comment_id } }; },
      createComment: async (p) => { calls.push(['create', p]); return { data: { id: 999 } }; },
    },
    pulls: {
      get: async (p) => { calls.push(['pull', p]); return { data: { number: p.pull_number, head: { sha: state.head } } }; },
    },
  },
};
const context = { repo: { owner: 'acme', repo: 'models' }, serverUrl: 'https://github.com', runId: 4242 };
const core = {
  info: (m) => calls.push(['info', m]),
  warning: (m) => calls.push(['warning', m]),
  setFailed: (m) => calls.push(['failed', m]),
};
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
new AsyncFunction('require', 'github', 'context', 'core', script)(require, github, context, core)
  .then(() => console.log(JSON.stringify(calls)), (e) => { console.error(e); process.exit(1); });
"""


def node() -> str | None:
    return shutil.which("node") or shutil.which("nodejs")


def comment_script() -> str:
    (step,) = [s for s in steps(COMMENT) if str(s.get("uses", "")).startswith("actions/github-script@")]
    return step["with"]["script"]


def run_comment_script(workdir: Path, comments: list[dict], *, pr_head: str, run_head: str) -> list:
    """The comment workflow's script in ``workdir`` (which holds the downloaded flop-comment/), with a fake
    GitHub API whose pull request is at ``pr_head``; the run tested ``run_head``. Returns the API calls."""
    harness = workdir / ".harness"
    harness.mkdir(exist_ok=True)
    (harness / "script.js").write_text(comment_script(), encoding="utf-8")
    (harness / "harness.js").write_text(NODE_HARNESS, encoding="utf-8")
    (harness / "state.json").write_text(json.dumps({"comments": comments, "head": pr_head}), encoding="utf-8")
    done = subprocess.run(
        [node(), str(harness / "harness.js"), str(harness / "script.js"), str(harness / "state.json")],
        cwd=workdir, capture_output=True, text=True, timeout=60, env={**os.environ, "HEAD_SHA": run_head},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
