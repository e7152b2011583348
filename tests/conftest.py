"""Fixtures shared across the suite. Component-specific fixtures live beside their tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.anthropic import FakeAnthropic

# Session-scoped storage servers (moto S3, GCS emulators), shared by every module.
pytest_plugins = ("tests.fakes.storage_servers",)


@pytest.fixture
def anthropic() -> Iterator[FakeAnthropic]:
    """A fresh loopback fake of the usage and token endpoints."""
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def tokens_dir(tmp_path: Path, anthropic: FakeAnthropic) -> Path:
    directory = tmp_path / "tokens"
    anthropic.write_tokens_dir(directory)
    return directory
