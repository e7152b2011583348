"""The development stack's shape (issue 13, STYLE rule 8), checked statically: the demo and
the bench build on devstack/, never on tests/; fixtures are shared through conftest.py, never
imported from another test module; helpers shared by several test modules live in modules of
their own (tests/scenarios.py, tests/helpers.py, devstack/...), never in a test module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.helpers import REPO


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import in `path`, a relative one under its absolute name."""
    package = path.relative_to(REPO).parent.parts
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) + 1 - node.level] if node.level else ()
            module = ".".join([*base, node.module] if node.module else base)
            found.append((module, [alias.name for alias in node.names]))
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


# Python source run in a child interpreter (`python -c "from tests.test_x import ..."`) counts too.
_IMPORT_IN_TEXT = re.compile(r"\b(?:from|import)\s+tests\.test_\w+")


def test_no_module_in_tests_imports_from_a_test_module() -> None:
    sources = sorted((REPO / "tests").rglob("*.py"))
    assert len([path for path in sources if path.name.startswith("test_")]) > 40
    offending = [
        f"{path.relative_to(REPO)} imports {names or ''} from {module}"
        for path in sources
        for module, names in _imports(path)
        # `from tests import test_x` names the test module among the imported names.
        if any(name.startswith("tests.test_") for name in [module, *(f"{module}.{n}" for n in names)])
    ] + [
        f"{path.relative_to(REPO)} runs {found}"
        for path in sources
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        for found in _IMPORT_IN_TEXT.findall(node.value)
    ]
    assert offending == []
