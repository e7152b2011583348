"""Fixtures shared across the suite. Component-specific fixtures live beside their tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_matrix_bot.httpclient import reset_shared_client
from tests.fakes.anthropic import FakeAnthropic

# Session-scoped storage servers (moto S3, GCS emulators), shared by every module.
pytest_plugins = ("tests.fakes.storage_servers",)


@pytest.fixture(autouse=True)
def _fresh_http_client() -> Iterator[None]:
    """The bot keeps one httpx client per process; each test starts with a new one."""
    yield
    reset_shared_client()


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
