"""The house rules of docs/architecture.md, checked on the source: layers, sizes, no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO

PACKAGE = REPO / "corral"
MAX_LINES = 600
# In-sandbox interpreter drivers are standalone scripts (each runs alone in its own process),
# so they cannot share helpers with the agent package and are allowed to be long.
SIZE_EXEMPT = ("corral/agent/drivers/",)


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = modules()


def runtime_imports(path: Path, name: str) -> set[str]:
    """Modules imported when `name` is imported (module level, not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    imported: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    imported.add(candidate if candidate in MODULES else base)
            elif isinstance(node, ast.If | ast.Try):
                visit(node.body)
                visit(node.orelse)
                if isinstance(node, ast.Try):
                    for handler in node.handlers:
                        visit(handler.body)

    visit(tree.body)
    return imported


GRAPH = {name: {m for m in runtime_imports(path, name) if m in MODULES} for name, path in MODULES.items()}


def test_no_module_is_over_the_size_limit() -> None:
    big = {
        str(path.relative_to(REPO)): n
        for path in MODULES.values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
        and not str(path.relative_to(REPO)).startswith(SIZE_EXEMPT)
    }
    assert big == {}, f"split these modules (limit {MAX_LINES} lines): {big}"


def test_there_is_no_import_cycle() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            connect(node)
    assert cycles == []


@pytest.mark.parametrize(
    ("dependency", "allowed"),
    [
        ("docker", ("corral.sandbox_backend.docker",)),
        ("aiosqlite", ("corral.sandbox_backend.store",)),
        ("sqlite3", ("corral.sandbox_backend.store",)),
        ("mcp", ("corral.tools", "corral.server")),
    ],
)
def test_dependencies_stay_behind_their_boundary(dependency: str, allowed: tuple[str, ...]) -> None:
    offenders = sorted(
        name
        for name, path in MODULES.items()
        if not name.startswith(allowed)
        and any(m == dependency or m.startswith(dependency + ".") for m in runtime_imports(path, name))
    )
    assert offenders == []


@pytest.mark.parametrize(
    ("layer", "must_not_import"),
    [
        ("corral.sandbox_backend", ("corral.service", "corral.tools", "corral.server", "corral.cli")),
        ("corral.service", ("corral.tools", "corral.server", "corral.cli")),
        ("corral.tools", ("corral.server", "corral.cli", "corral.sandbox_backend")),
        ("corral.agent", ("corral.service", "corral.tools", "corral.server", "corral.sandbox_backend")),
    ],
)
def test_layers_only_import_downwards(layer: str, must_not_import: tuple[str, ...]) -> None:
    offenders = sorted(
        f"{name} -> {target}"
        for name, targets in GRAPH.items()
        if name.startswith(layer)
        for target in targets
        if target.startswith(must_not_import)
    )
    assert offenders == []


def test_features_do_not_depend_on_the_sandbox_service_itself() -> None:
    features = ("corral.service.execution", "corral.service.processes", "corral.service.ports",
                "corral.service.files", "corral.service.git")
    offenders = sorted(
        name for name, targets in GRAPH.items()
        if name.startswith(features) and "corral.service.sandboxes" in targets
    )
    assert offenders == []
