"""No import cycles among the shipped modules (issue 22): every `import` and `from … import`
counts, at module level, inside functions (lazy imports) and under `if TYPE_CHECKING:` alike,
since a cycle of any of them is a knot a reader must untie before changing either side."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO

PACKAGE = "claude_matrix_bot"


def modules(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _targets(name: str, path: Path, node: ast.Import | ast.ImportFrom, known: dict[str, Path]) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in known}
    if node.level:
        base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join([*base, *([node.module] if node.module else [])])
    else:
        prefix = node.module or ""
    # `from pkg import mod` depends on the module; `from mod import name` on mod itself.
    return {f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix for a in node.names} & set(known)


def import_graph(root: Path) -> dict[str, set[str]]:
    known = modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                deps |= _targets(name, path, node, known)
        graph[name] = deps - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_among_shipped_modules() -> None:
    graph = import_graph(REPO / "function")
    assert len(graph) > 50, "the package was not found"
    assert cycles(graph) == []


def test_the_measure_finds_a_cycle_through_a_lazy_or_type_only_import(tmp_path: Path) -> None:
    package = tmp_path / PACKAGE
    (package / "core").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "core" / "__init__.py").write_text("")
    (package / "a.py").write_text("from .core import b\n")
    (package / "core" / "b.py").write_text("def f() -> None:\n    from ..c import x\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\nx = 1\n")
    (package / "d.py").write_text("from . import a\n")
    assert cycles(import_graph(tmp_path)) == [[f"{PACKAGE}.a", f"{PACKAGE}.c", f"{PACKAGE}.core.b"]]
