"""The development stack's shape (issue 13, STYLE rule 8), checked statically: the demo and
the bench build on devstack/, never on tests/; fixtures are shared through conftest.py, never
imported from another test module."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every absolute import in `path`."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
    return found


def _fixtures(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.FunctionDef) and any("fixture" in ast.unparse(d) for d in node.decorator_list):
            names.add(node.name)
    return names


def test_scripts_and_the_stack_never_import_tests() -> None:
    sources = sorted((REPO / "scripts").glob("*.py")) + sorted((REPO / "devstack").rglob("*.py"))
    assert len(sources) > 5
    offending = [
        f"{path.relative_to(REPO)}: {module}"
        for path in sources
        for module, _ in _imports(path)
        if module == "tests" or module.startswith("tests.")
    ]
    assert offending == []


def test_no_test_module_imports_another_modules_fixtures() -> None:
    tests = REPO / "tests"
    fixtures = {path.stem: _fixtures(path) for path in tests.glob("test_*.py")}
    offending = [
        f"{path.name} imports {name} from {module}"
        for path in sorted(tests.glob("*.py"))
        for module, names in _imports(path)
        if module.startswith("tests.test_")
        for name in names
        if name in fixtures.get(module.removeprefix("tests."), set())
    ]
    assert offending == []
    assert "homeserver" in _fixtures(tests / "conftest.py")
    assert [stem for stem, names in fixtures.items() if "homeserver" in names] == []
