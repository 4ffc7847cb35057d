"""The README and the documentation site say what the code does: every Python block in them runs,
every option is documented, the site builds with strict link checking, CI runs the README's command."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_flopbudget.gate.settings import OPTIONS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
PAGES = {path.name: path.read_text(encoding="utf-8") for path in sorted((ROOT / "docs").glob("*.md"))}
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.S | re.M)


def code_blocks(language: str, text: str = README) -> list[str]:
    return [textwrap.dedent(m.group(3)) for m in FENCE.finditer(text) if m.group(2) == language]


def _python_blocks() -> list[tuple[str, str]]:
    blocks = []
    for name, text in [("README.md", README), *(("docs/" + n, t) for n, t in PAGES.items())]:
        for m in FENCE.finditer(text):
            if m.group(2) == "python":
                line = text[: m.start()].count("\n") + 1
                blocks.append((f"{name}:{line}", textwrap.dedent(m.group(3))))
    return blocks


BLOCKS = _python_blocks()

CONFTEST_CHECK = """
import torch
from torch import nn


def test_a_measurement_runs_with_this_conftest(flops):
    assert flops(nn.Linear(8, 4), torch.zeros(2, 8)).macs == 2 * 8 * 4
"""


@pytest.mark.parametrize("where, code", BLOCKS, ids=[where for where, _ in BLOCKS])
def test_every_python_block_runs(where: str, code: str, pytester: pytest.Pytester) -> None:
    """A test file runs as a test suite (recorded, then checked against what it recorded), a
    conftest.py under a measuring test, and any other block as a script."""
    if code.startswith("# conftest.py"):
        pytester.makeconftest(code)
        pytester.makepyfile(test_check=CONFTEST_CHECK)
        pytester.runpytest("--flop-update").assert_outcomes(passed=1)
    elif "def test_" in code:
        pytester.makepyfile(**{"test_" + re.sub(r"\W", "_", where): code})
        recorded = pytester.runpytest("--flop-update")
        outcomes = recorded.parseoutcomes()
        assert outcomes.get("passed", 0) >= 1 and not outcomes.get("failed") and not outcomes.get("errors"), recorded.stdout.str()
        checked = pytester.runpytest()
        assert not checked.parseoutcomes().get("failed"), checked.stdout.str()
    else:
        done = subprocess.run([sys.executable, "-c", code], cwd=pytester.path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{where}:\n{done.stdout}\n{done.stderr}"


def test_the_blocks_are_found() -> None:
    assert len(BLOCKS) >= 10 and any(where.startswith("README.md") for where, _ in BLOCKS)


def test_readme_usage_example_runs_as_documented(pytester: pytest.Pytester) -> None:
    example = next(block for block in code_blocks("python") if block.startswith("# tests/test_model_cost.py"))
    pytester.makepyfile(test_model_cost=example)
    first = pytester.runpytest("--flop-update")
    first.assert_outcomes(passed=2)
    assert (pytester.path / "flopbudget.toml").exists()
    again = pytester.runpytest("--flop-report")
    again.assert_outcomes(passed=2)
    again.stdout.fnmatch_lines(["*FLOP REPORT*", "*0 over-budget, 0 regressed, 0 new, 0 improved, 3 ok*"])


def test_training_step_example_runs_as_documented(pytester: pytest.Pytester) -> None:
    example = next(block for block in code_blocks("python", PAGES["training.md"]) if block.startswith("# tests/test_train_cost.py"))
    pytester.makepyfile(test_train_cost=example)
    pytester.runpytest("--flop-update").assert_outcomes(passed=1)
    entry = (pytester.path / "flopbudget.toml").read_text()
    assert '"backward" = 4096\n"forward" = 3072\n"optimizer" = 4040\n' in entry
    pytester.runpytest().assert_outcomes(passed=1)


def test_every_option_and_its_ini_twin_is_documented() -> None:
    table = PAGES["options.md"]
    for opt in OPTIONS:
        assert f"`{opt.flag}" in table, f"{opt.flag} missing from docs/options.md"
        assert f"`{opt.ini}`" in table, f"{opt.ini} missing from docs/options.md"
        assert f"`{opt.flag}`" in README, f"{opt.flag} missing from the README's list of options"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line for line in ci.splitlines() if line.startswith("python3 -m venv")]
    shell = code_blocks("sh")
    assert any(commands[0] in block for block in shell), "the README's test command must be what .ci/run runs first"
    for command in commands[1:]:
        assert any(command in block for block in shell), f"every run of .ci/run is documented in the README: {command}"
    assert any("torch==2.9.1" in command for command in commands), "CI runs the oldest supported torch"
    assert '"torch>=2.9"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8"), "the oldest torch CI runs is pyproject's lower bound"
    main = next(block.strip() for block in shell if "pytest examples" in block)
    assert main.endswith("python -m pytest examples -n 2 --flop-report") and '-e ".[examples]"' in main


def test_hooks_in_the_docs_are_the_declared_hooks() -> None:
    from pytest_flopbudget.gate import hookspecs

    declared = {name for name in dir(hookspecs) if name.startswith("pytest_flopbudget_")}
    documented = set(re.findall(r"def (pytest_flopbudget_\w+)\(", "\n".join(PAGES.values())))
    assert documented == declared


def test_readme_is_for_users_and_short() -> None:
    assert len(README.splitlines()) < 300
    install = README.index("## Install")
    assert install < README.index("## Quick start") < README.index("## Working on the plugin")
    assert "pip install pytest-flopbudget" in README


def test_readme_images_exist_and_stay_small() -> None:
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert "docs/html-report-var.png" in images
    for image in images:
        path = ROOT / image
        assert path.is_file(), image
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size < 300_000, f"{image}: keep README screenshots under 300 KB"


def test_readme_links_point_at_pages_that_exist() -> None:
    for target in re.findall(r"\]\((docs/[^)#]+)", README):
        assert (ROOT / target).is_file(), target


def test_the_documentation_site_builds_with_strict_link_checking(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "index.html").is_file()


def test_the_site_home_page_is_the_readme() -> None:
    """docs/index.md is written from README.md by .ci/docs_index.py; an edited README needs it re-run."""
    result = subprocess.run([sys.executable, str(ROOT / ".ci" / "docs_index.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
