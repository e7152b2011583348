"""docs/design.md is the repository's own design document: every reference the code, tests and
docs make to it points at a section it has, and its list of settings is the declared one."""

from __future__ import annotations

import re
from pathlib import Path

from claude_matrix_bot.settings import Settings
from claude_matrix_bot.settings_spec import declared
from tests.helpers import REPO

DESIGN = REPO / "docs" / "design.md"
CITATION = re.compile(r"docs/design\.md §(\d+)")
SEARCHED = ("function", "shim", "devstack", "tests", "scripts", "docs", "deploy", "terraform")
SUFFIXES = {".py", ".md", ".sh", ".yaml", ".yml", ".tf", ".js", ".mjs"}


def _sections() -> dict[int, str]:
    """Section number -> its text, from the `## n. Title` headings."""
    parts = re.split(r"^## (\d+)\. .*$", DESIGN.read_text(encoding="utf-8"), flags=re.M)
    return {int(number): text for number, text in zip(parts[1::2], parts[2::2], strict=True)}


def _sources() -> list[Path]:
    files = [REPO / "README.md", REPO / "Makefile", REPO / "Dockerfile"]
    for top in SEARCHED:
        files.extend(
            path
            for path in (REPO / top).rglob("*")
            if path.suffix in SUFFIXES and "node_modules" not in path.parts and path.is_file()
        )
    return files


def test_the_sections_are_numbered_in_order() -> None:
    assert list(_sections()) == list(range(1, len(_sections()) + 1))


def test_every_citation_points_at_a_section_that_exists() -> None:
    sections = _sections()
    missing = [
        f"{path.relative_to(REPO)}: §{number}"
        for path in _sources()
        for number in CITATION.findall(path.read_text(encoding="utf-8", errors="replace"))
        if int(number) not in sections
    ]
    assert missing == []


def test_section_3_names_every_setting() -> None:
    interface = _sections()[3]
    assert [item.env for item in declared(Settings) if f"`{item.env}`" not in interface] == []


def test_the_code_cites_this_document_by_its_path() -> None:
    old_form = "DESIGN" + " §"  # the brief's name, outside the repository
    assert [str(path.relative_to(REPO)) for path in _sources() if old_form in path.read_text(errors="replace")] == []
