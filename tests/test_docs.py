"""The README says what the code does: its example runs, every option is in it, CI runs its command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_flopbudget.gate.settings import OPTIONS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_readme_usage_example_runs_as_documented(pytester: pytest.Pytester) -> None:
    example = next(block for block in code_blocks("python") if block.startswith("# tests/test_model_cost.py"))
    pytester.makepyfile(test_model_cost=example)
    first = pytester.runpytest("--flop-update")
    first.assert_outcomes(passed=2)
    assert (pytester.path / "flopbudget.toml").exists()
    again = pytester.runpytest("--flop-report")
    again.assert_outcomes(passed=2)
    again.stdout.fnmatch_lines(["*FLOP REPORT*", "*0 over-budget, 0 regressed, 0 new, 0 improved, 3 ok*"])


def test_readme_training_step_example_runs_as_documented(pytester: pytest.Pytester) -> None:
    example = next(block for block in code_blocks("python") if block.startswith("# tests/test_train_cost.py"))
    pytester.makepyfile(test_train_cost=example)
    pytester.runpytest("--flop-update").assert_outcomes(passed=1)
    entry = (pytester.path / "flopbudget.toml").read_text()
    assert '"backward" = 4096\n"forward" = 3072\n"optimizer" = 4040\n' in entry
    pytester.runpytest().assert_outcomes(passed=1)


def test_every_option_and_its_ini_twin_is_documented() -> None:
    table = README.split("## Options", 1)[1].split("\n## ", 1)[0]
    for opt in OPTIONS:
        assert f"`{opt.flag}" in table, f"{opt.flag} missing from the README's option table"
        assert f"`{opt.ini}`" in table, f"{opt.ini} missing from the README's option table"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    first, second, oldest = [line for line in ci.splitlines() if line.startswith("python3 -m venv")]
    assert first in code_blocks("sh")[1], "the README's second command must be what .ci/run runs"
    assert "torch==2.14.1" in second and second in code_blocks("sh")[2], "the torch 2.14.1 run of .ci/run is documented"
    assert "torch==2.9.1" in oldest and oldest in code_blocks("sh")[2], "the torch 2.9.1 run of .ci/run is documented"
    assert '"torch>=2.9"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8"), "the oldest torch CI runs is pyproject's lower bound"
    main = code_blocks("sh")[0].strip()
    assert main.endswith("python -m pytest examples -n 2 --flop-report") and '-e ".[examples]"' in main


def test_hooks_in_readme_are_the_declared_hooks() -> None:
    from pytest_flopbudget.gate import hookspecs

    declared = {name for name in dir(hookspecs) if name.startswith("pytest_flopbudget_")}
    documented = set(re.findall(r"def (pytest_flopbudget_\w+)\(", README))
    assert documented == declared


def test_readme_images_exist_and_stay_small() -> None:
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert "docs/html-report-var.png" in images
    for image in images:
        path = ROOT / image
        assert path.is_file(), image
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size < 300_000, f"{image}: keep README screenshots under 300 KB"
