"""The test environment is installed from hash-pinned locks, like the image (issue 21 item 8).

`make venv` installs requirements-test.lock (requirements.lock plus the test extra) with
`--require-hashes --no-deps`, then the project itself; the test homeserver's virtualenv
installs requirements-synapse.lock the same way. So the tests run every package the image
ships at the version it ships, and a clean clone tests what the last `make lock` resolved.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
LOCKS = ("requirements.lock", "requirements-test.lock", "requirements-synapse.lock")


def locked(name: str) -> dict[str, tuple[str, frozenset[str]]]:
    """A lock file as {normalised name: (version, sha256 hashes)}; every line hash-pinned."""
    logical = re.sub(r"\\\n", " ", (REPO / name).read_text())
    entries: dict[str, tuple[str, frozenset[str]]] = {}
    for raw in logical.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)(?:\s*;[^-]*)?((?:\s+--hash=sha256:[0-9a-f]{64})+)", line)
        assert match, f"{name}: not a hash-pinned line: {line[:80]}"
        package = canonicalize_name(match.group(1))
        assert package not in entries, f"{name}: {package} pinned twice"
        entries[package] = (match.group(2), frozenset(re.findall(r"sha256:([0-9a-f]{64})", match.group(3))))
    return entries


@pytest.mark.parametrize("name", LOCKS)
def test_every_lock_pins_every_package_with_hashes(name: str) -> None:
    entries = locked(name)
    assert entries and all(hashes for _, hashes in entries.values())


def test_the_test_lock_ships_the_images_versions_and_the_test_extra() -> None:
    image, test = locked("requirements.lock"), locked("requirements-test.lock")
    differing = {n: (v, test.get(n, ("missing",))[0]) for n, (v, _) in image.items() if test.get(n, ("",))[0] != v}
    assert not differing, f"requirements-test.lock differs from the image's lock: {differing}; run `make lock`"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for raw in project["optional-dependencies"]["test"]:
        requirement = Requirement(raw)
        if canonicalize_name(requirement.name) == canonicalize_name(project["name"]):
            continue
        version = test.get(canonicalize_name(requirement.name), ("",))[0]
        assert version and requirement.specifier.contains(version, prereleases=True), f"{raw}: run `make lock`"


def test_the_synapse_lock_pins_synapse() -> None:
    assert "matrix-synapse" in locked("requirements-synapse.lock")


def test_this_environment_runs_the_images_versions() -> None:
    """What the suite imports is what the image ships (17 of 93 packages differed before)."""
    image = locked("requirements.lock")
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    differing = {n: (v, installed[n]) for n, (v, _) in image.items() if n in installed and installed[n] != v}
    assert not differing, f"this venv is not the lock's (image, installed): {differing}; run `make venv`"
    assert "matrix-nio" in installed and "kubernetes" in installed


def test_make_venv_installs_from_the_locks_only() -> None:
    makefile = (REPO / "Makefile").read_text()
    installs = [line.strip() for line in makefile.splitlines() if "$(call INSTALL" in line]
    assert installs, "make venv installs through $(INSTALL)"
    for line in installs:
        assert "--no-deps" in line, line
        assert "--require-hashes" in line or "--no-build-isolation -e ." in line, line
    assert "-r requirements-test.lock" in makefile and "-r requirements-synapse.lock" in makefile
