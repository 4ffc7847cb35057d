"""The package layout: which part may import which, and no import cycles.

Read from the source (``ast``), so a violation is found without importing anything:

- ``results`` (plain data) imports nothing else of the package;
- ``report`` and ``baseline`` import only ``results`` (and themselves);
- ``engine`` imports no pytest and nothing of the pytest side, the store or the reports;
- module-level imports between the package's modules form no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pytest_flopbudget"
NAME = "pytest_flopbudget"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> list[str]:
    """The absolute module names an ``from ... import ...`` statement loads (submodules included)."""
    if node.level:
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1])
        target = f"{base}.{node.module}" if node.module else base
    else:
        target = node.module or ""
    # ``from pkg import sub`` loads the submodule; ``from mod import name`` loads the module
    return [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names]


def _imports(module: str, top_level_only: bool) -> set[str]:
    """What ``module`` imports: every import, or those that run when the module is imported."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # also imports under module-level if/try (not inside functions or classes)
        stack, nodes = list(tree.body), []
        while stack:
            node = stack.pop()
            nodes.append(node)
            if isinstance(node, (ast.If, ast.Try)):
                stack.extend(ast.iter_child_nodes(node))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.update(_resolve(module, path, node))
    return found


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


ALLOWED = {
    "results": {"results"},
    "report": {"results", "report"},
    "baseline": {"results", "baseline"},
    "engine": {"results", "engine"},
    "deploy": {"results", "deploy"},
    "cli": {"", "results", "engine", "baseline", "report", "cli"},  # the flopbudget command: no pytest side
}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _part(m) in ALLOWED))
def test_each_part_imports_only_what_it_may(module: str) -> None:
    allowed = ALLOWED[_part(module)]
    inner = {m for m in _imports(module, top_level_only=False) if m == NAME or m.startswith(NAME + ".")}
    wrong = sorted(m for m in inner if _part(m) not in allowed)
    assert not wrong, f"{module} imports {wrong}; {_part(module)} may import only {sorted(allowed)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _part(m) in ("engine", "results", "report", "baseline", "deploy", "cli")))
def test_the_engine_results_reports_and_store_import_no_pytest(module: str) -> None:
    outer = {m.split(".")[0] for m in _imports(module, top_level_only=False)}
    assert not outer & {"pytest", "_pytest", "pluggy", "xdist"}, f"{module} imports {sorted(outer & {'pytest', '_pytest', 'pluggy'})}"


def test_no_import_cycles() -> None:
    graph = {
        m: {i for i in _imports(m, top_level_only=True) if i in MODULES and i != m}
        for m in MODULES
    }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_graph_is_read() -> None:
    """The checks above see the package (a guard against a layout the scan no longer finds)."""
    assert {"pytest_flopbudget.engine.count", "pytest_flopbudget.gate.plugin", "pytest_flopbudget.results.result"} <= set(MODULES)
    assert "pytest_flopbudget.results.conventions" in _imports("pytest_flopbudget.results.result", top_level_only=True)
