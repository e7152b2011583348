"""The development stack's shape (issue 13, STYLE rule 8), checked statically: the demo and
the bench build on devstack/, never on tests/; fixtures are shared through conftest.py, never
imported from another test module; helpers shared by several test modules live in modules of
their own (tests/scenarios.py, tests/helpers.py, devstack/...), never in a test module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from devstack.synapse import REPO_SYNAPSE_VENV, SynapseMissing, synapse_python
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


# --- Synapse found by plain `pytest` on a clone (issue 22) ----------------------------------


def _venv_python(root: Path) -> Path:
    python = root / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    return python


def test_synapse_is_the_repository_s_own_venv_without_any_setting(tmp_path: Path) -> None:
    python = _venv_python(tmp_path / ".venv-synapse")
    assert synapse_python({}, repo=tmp_path) == str(python)
    assert synapse_python({"SYNAPSE_PYTHON": " "}, repo=tmp_path) == str(python)


def test_synapse_python_names_another_venv(tmp_path: Path) -> None:
    _venv_python(tmp_path / ".venv-synapse")
    elsewhere = _venv_python(tmp_path / "shared-synapse")
    assert synapse_python({"SYNAPSE_PYTHON": str(elsewhere)}, repo=tmp_path) == str(elsewhere)


def test_without_a_synapse_environment_the_error_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(SynapseMissing, match="make synapse") as caught:
        synapse_python({}, repo=tmp_path)
    assert str(tmp_path / ".venv-synapse") in str(caught.value)
    with pytest.raises(SynapseMissing, match="SYNAPSE_PYTHON=/nowhere/python"):
        synapse_python({"SYNAPSE_PYTHON": "/nowhere/python"}, repo=tmp_path)


def test_the_makefile_builds_the_venv_the_tests_look_for() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert f"SYNAPSE_VENV ?= {REPO_SYNAPSE_VENV}\n" in makefile
