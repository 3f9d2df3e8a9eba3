"""The SDK's module graph has no cycle, counting imports inside functions.

A cycle means a module can't be understood, imported or tested without the ones that import
it; imports hidden in functions only hide it. Imports under ``if TYPE_CHECKING:`` don't run and
don't count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SDK = Path(__file__).resolve().parents[1] / "sdk" / "infersight"


def _modules(root: Path) -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports (importing ``a.b.c`` imports ``a.b`` too)."""
    modules = _modules(root)
    top = root.name
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        targets: list[str] = []
        for node in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets += [alias.name for alias in node.names]
                continue
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets += [
                f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in modules else prefix for alias in node.names
            ]
        deps: set[str] = set()
        for target in targets:
            if not target.startswith(top):
                continue
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target != name:
                deps.add(target)  # also a module's own package, for ``from . import name_in_init``
            parts = target.split(".")
            for i in range(1, len(parts)):  # the parent packages run first (its own already ran)
                parent = ".".join(parts[:i])
                if parent in modules and not name.startswith(parent + "."):
                    deps.add(parent)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_sdk_has_no_import_cycle() -> None:
    graph = import_graph(SDK)
    found = cycles(graph)
    detail = "\n".join(
        " <-> ".join(c) + "\n    " + "\n    ".join(f"{a} -> {b}" for a in c for b in sorted(graph[a]) if b in c)
        for c in found
    )
    assert not found, "import cycles in the SDK:\n" + detail


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from . import b\n", [["pkg.a", "pkg.b"]]),
        ("def f():\n    from .b import x\n", [["pkg.a", "pkg.b"]]),  # inside a function: counts
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import x\n", []),
        ("import os\n", []),
        ("from . import VERSION\n", [["pkg", "pkg.a"]]),  # a name from the package's __init__
    ],
)
def test_the_cycle_finder_sees_function_level_imports(tmp_path: Path, source: str, expected: list[list[str]]) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .a import *\nVERSION = 1\n")
    (pkg / "a.py").write_text(source)
    (pkg / "b.py").write_text("def g():\n    from . import a\n")
    assert cycles(import_graph(pkg)) == expected
