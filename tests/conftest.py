"""Fixtures shared across the suite, each defined once here. Component-specific fixtures live
beside their tests; the servers and fakes themselves come from the development stack (devstack/)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from claude_matrix_bot.httpclient import reset_shared_client
from devstack.bot import bot_env
from devstack.fakes.anthropic import FakeAnthropic
from devstack.function_server import FunctionServer
from devstack.synapse import Homeserver
from tests.helpers import REAL_NOW
from tests.matrix_scene import MatrixScene, armed_scene

# Session-scoped storage servers (moto S3, GCS emulators), shared by every module.
pytest_plugins = ("tests.fakes.storage_servers",)

# Property tests run the same examples on every run and machine: a failure is found by the
# commit that causes it, not by a later run's draw. No time budget per example or for
# generation (a loaded 2-core runner is slow, not wrong). HYPOTHESIS_PROFILE=explore searches
# afresh (random draws) when hunting for new counterexamples.
settings.register_profile("ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


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


@pytest.fixture
def start() -> datetime:
    """Simulated time a day after the real clock: the fake's tokens (valid for an hour of real
    time) look expired to the bot, so a simulated week exercises refresh rotation."""
    return (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)


@pytest.fixture(scope="module")
def homeserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Homeserver]:
    """A throwaway Synapse per test module (users are registered with unique names)."""
    server = Homeserver(tmp_path_factory.mktemp("synapse"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def scene(homeserver: Homeserver, anthropic: FakeAnthropic, tmp_path: Path) -> Iterator[MatrixScene]:
    """A bot already armed in alice's encrypted room, through a proxy that can break sends."""
    with armed_scene(homeserver, anthropic, tmp_path) as s:
        yield s


@pytest.fixture
def function_server(tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path) -> Iterator[tuple[str, Path]]:
    """`functions-framework --target watch` serving the bot (stdout sink) at REAL_NOW;
    yields (url, its stdout+stderr file)."""
    env = {
        **bot_env(tmp_path, anthropic.base_url, anthropic.token_url, MIN_INTERVAL_SEC="0"),
        "NOW_OVERRIDE": REAL_NOW.isoformat(),
    }
    out = tmp_path / "function.stdout"
    with FunctionServer(env, log=out, cwd=tmp_path, inherit_env=True) as server:
        yield f"{server.url}/", out
