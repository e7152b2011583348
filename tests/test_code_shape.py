"""The shipped code stays readable in pieces (issues 13, 22): no function over 50 lines, no
module over 350 lines (room under the old 60/400, so the next limit family does not start
with a split), in function/ (the package and the functions-framework entry point).

A function's lines run from its first decorator to its last line, nested functions
included; a module's are its physical lines."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO

SHIPPED = REPO / "function"
MAX_FUNCTION_LINES = 50
MAX_MODULE_LINES = 350


def shipped_modules() -> list[Path]:
    modules = sorted(SHIPPED.rglob("*.py"))
    assert len(modules) > 20, "the package was not found"
    return modules


def function_lengths(module: Path, root: Path = SHIPPED) -> list[tuple[int, str]]:
    tree = ast.parse(module.read_text(), filename=str(module))
    lengths = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            assert node.end_lineno is not None
            lengths.append((node.end_lineno - first + 1, f"{module.relative_to(root)}:{node.lineno} {node.name}"))
    return lengths


def test_no_shipped_module_is_longer_than_350_lines() -> None:
    long = {
        str(m.relative_to(SHIPPED)): n
        for m in shipped_modules()
        if (n := len(m.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_shipped_function_is_longer_than_50_lines() -> None:
    long = [(n, where) for m in shipped_modules() for n, where in function_lengths(m) if n > MAX_FUNCTION_LINES]
    assert long == []


def test_the_measure_counts_from_the_decorator_to_the_last_line(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    module = tmp_path / "long.py"
    module.write_text(f"import functools\n\n\n@functools.cache\ndef long() -> None:\n{body}\n")
    assert function_lengths(module, tmp_path) == [(MAX_FUNCTION_LINES + 2, "long.py:5 long")]
