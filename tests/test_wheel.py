"""The package as users get it: built as an sdist and a wheel, installed (not editable), used.

The sdist is built from a copy of the source tree, and the wheel from the sdist
(``python -m build --no-isolation``: offline, with the setuptools of this environment), so a
file the sdist leaves out fails the wheel too. The wheel is installed into a fresh venv that
sees this environment's packages (torch, pytest, ...) through a directory of links to them
that leaves out every trace of the plugin installed here (its dist-info, its editable finder),
so the only pytest-flopbudget there is the wheel's. A small user suite then runs in a directory
outside the source tree: ``--flop-update``, a passing run and a failing one.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

import pytest_flopbudget

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "pytest_flopbudget"

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("build", "setuptools")),
    reason="building needs the build and setuptools packages (pip install -e '.[test]')",
)


def offline_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "PYTEST_", "CI", "GITHUB_")) and k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}, **extra)
    return env


def run(args: list, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=offline_env(**env), capture_output=True, text=True,
                          timeout=300)


def source_files() -> set[str]:
    """The package's files in the source tree, as paths inside the wheel."""
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / PACKAGE).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")}


def is_plugin_here(name: str) -> bool:
    """This environment's own pytest-flopbudget: the package, its dist-info, its editable finder and .pth."""
    lowered = name.lower().replace("-", "_")
    return lowered == PACKAGE or lowered.startswith((f"{PACKAGE}-", f"__editable__.{PACKAGE}", f"__editable___{PACKAGE}"))


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist and wheel, built offline from a copy of the source tree."""
    where = tmp_path_factory.mktemp("dist")
    source = where / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", "node_modules"))
    done = run([sys.executable, "-m", "build", "--no-isolation", "--outdir", where / "out", source], cwd=where)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return where / "out"


def wheel_of(dist: Path) -> Path:
    (wheel,) = dist.glob("*.whl")
    return wheel


def test_sdist_and_wheel_pass_twine_check(dist: Path) -> None:
    if importlib.util.find_spec("twine") is None:
        pytest.skip("twine is not installed (pip install -e '.[test]')")
    built = sorted(dist.iterdir())
    assert sorted(p.suffix for p in built) == [".gz", ".whl"], built
    done = run([sys.executable, "-m", "twine", "check", "--strict", *built], cwd=dist)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_wheel_holds_every_file_of_the_package(dist: Path) -> None:
    with zipfile.ZipFile(wheel_of(dist)) as wheel:
        names = set(wheel.namelist())
        (info,) = {n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA")}
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
        metadata = wheel.read(f"{info}/METADATA").decode()
    inside = {n for n in names if n.startswith(f"{PACKAGE}/")}
    assert source_files() <= inside, sorted(source_files() - inside)  # py.typed, data files, every module
    assert not {n for n in names if n.startswith(("tests/", "examples/", "benchmarks/"))}
    assert "[pytest11]\nflopbudget = pytest_flopbudget.gate.plugin" in entry_points
    assert f"Version: {pytest_flopbudget.__version__}" in metadata
    for field in ("Requires-Python:", "Author:", "Keywords:", "Classifier: Typing :: Typed",
                  "License-Expression:", "Description-Content-Type: text/markdown"):
        assert field in metadata, field
    if (ROOT / PACKAGE / "py.typed").exists():
        assert f"{PACKAGE}/py.typed" in inside


def user_venv(where: Path) -> Path:
    """A fresh venv that sees this environment's packages, the plugin left out; its python."""
    links = where / "host-packages"
    links.mkdir()
    for directory in dict.fromkeys(Path(sysconfig.get_paths()[key]) for key in ("purelib", "platlib")):
        for entry in directory.iterdir():
            if not is_plugin_here(entry.name) and not (links / entry.name).exists():
                (links / entry.name).symlink_to(entry)
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    (site_packages,) = venv.glob("lib/python*/site-packages")
    # After the venv's own site-packages; .pth files there (but the plugin's) are processed too.
    (site_packages / "zz_host_packages.pth").write_text(f"import site; site.addsitedir({str(links)!r})\n")
    return venv / "bin" / "python"


MODELS = """
import torch
from torch import nn

WIDTH = {width}


def linear():
    return nn.Linear(1024, WIDTH, device="meta"), torch.empty(1, 680, 1024, device="meta")
"""

# Linear(1024 -> w) on (1, 680, 1024): 680 * 1024 * w MACs, 2 * that / 1e9 GFLOPs.
# w = 4096: 5.70 GFLOPs, under the 5.8 budget; w = 4224: 5.88 GFLOPs, over it and grown +3.1%.
SUITE = """
import pytest
import models


@pytest.mark.flop_budget(gflops=5.8)
def test_budget(flops):
    flops(*models.linear())


def test_baseline(flops):
    result = flops(*models.linear())
    assert result.macs == 680 * 1024 * models.WIDTH
"""


def test_the_installed_wheel_runs_a_user_suite(dist: Path, tmp_path: Path) -> None:
    python = user_venv(tmp_path)
    installed = run([python, "-m", "pip", "install", wheel_of(dist)], cwd=tmp_path)  # offline: dependencies must be met
    assert installed.returncode == 0, installed.stdout + installed.stderr
    where = run([python, "-c", "import pytest_flopbudget, sys; print(pytest_flopbudget.__file__)"], cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(tmp_path / "venv"), where.stdout + where.stderr

    project = tmp_path / "project"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (project / "models.py").write_text(MODELS.format(width=4096), encoding="utf-8")
    (project / "test_cost.py").write_text(textwrap.dedent(SUITE), encoding="utf-8")
    pytest_run = [python, "-m", "pytest", "-p", "no:cacheprovider", "-q"]

    update = run([*pytest_run, "--flop-update"], cwd=project)
    assert update.returncode == 0, update.stdout + update.stderr
    assert '["test_cost.py::test_baseline"]\nmacs = 2852126720\n' in (project / "flopbudget.toml").read_text()

    passing = run(pytest_run, cwd=project)
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "2 passed" in passing.stdout

    (project / "models.py").write_text(MODELS.format(width=4224), encoding="utf-8")
    failing = run(pytest_run, cwd=project)
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "2 failed" in failing.stdout
    assert "FLOP budget exceeded: 5.88 GFLOPs > 5.80 GFLOPs" in failing.stdout
    assert "FLOP regression: 5.70 -> 5.88 GFLOPs (+3.1%, allowed +0%) against flopbudget.toml" in failing.stdout
