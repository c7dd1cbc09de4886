"""The shape of the package (docs/ARCHITECTURE, issue 14): no import cycle between modules or
between the packages of ``aem``, pure algorithms, the compiled body only inside the policy runner,
and a ``Trainer.learn`` that reads on one screen."""

from __future__ import annotations

import ast
from pathlib import Path

import aem

SRC = Path(aem.__file__).parent


def modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = modules()


def imports_of(name: str, path: Path) -> set[str]:
    """The ``aem`` modules ``name`` imports, at any level of the file. ``from package import
    submodule`` depends on the submodule only (the package is being initialised already)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            submodules = [
                f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in MODULES
            ]
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(module)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def layer(name: str) -> str:
    return ".".join(name.split(".")[:2])


def test_no_import_cycle_between_modules_or_packages() -> None:
    assert cycles(GRAPH) == []
    packages: dict[str, set[str]] = {}
    for name, imported in GRAPH.items():
        packages.setdefault(layer(name), set()).update(
            layer(m) for m in imported if layer(m) != layer(name)
        )
    assert cycles(packages) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_algorithms_import_only_checks_and_themselves() -> None:
    for name, imported in GRAPH.items():
        if name.startswith("aem.algorithms"):
            assert all(m.startswith(("aem.algorithms", "aem.checks")) for m in imported), name


def test_the_compiled_body_is_passed_only_inside_the_policy_runner() -> None:
    users = sorted(name for name, path in MODULES.items() if "body=" in path.read_text())
    assert users == [] or users == ["aem.policy.runner"], users


def test_trainer_learn_fits_on_one_screen() -> None:
    tree = ast.parse(MODULES["aem.trainer.loop"].read_text())
    learn = next(
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "learn"
    )
    assert learn.end_lineno - learn.lineno + 1 <= 60
