"""One httpx client per process (issue 12): a warm instance builds it once, and the usage
client and the token refresher share it, through real cycles against the loopback fake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from claude_matrix_bot.compose import run
from claude_matrix_bot.httpclient import reset_shared_client, shared_client
from claude_matrix_bot.settings import load_settings
from devstack.fakes.anthropic import FakeAnthropic
from tests.helpers import bot_env


def count_clients(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Client]:
    built: list[httpx.Client] = []
    original = httpx.Client.__init__

    def recording(self: httpx.Client, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(httpx.Client, "__init__", recording)
    return built


def test_cycles_of_one_process_share_one_client_for_usage_and_refresh(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = count_clients(monkeypatch)
    settings = load_settings(bot_env(tmp_path, anthropic.base_url, anthropic.token_url))
    for _ in range(3):
        assert run(settings).status == "ok"
    # A cycle whose access token is about to expire refreshes it through the same client.
    anthropic.write_tokens_dir(tokens_dir, expires_in=30)
    assert run(settings).status == "ok"
    assert anthropic.usage_calls == 4 and anthropic.refresh_calls == 1
    assert len(built) == 1, f"{len(built)} httpx clients built for 4 cycles"
    assert built[0] is shared_client()


def test_reset_closes_the_client_and_the_next_use_builds_a_new_one() -> None:
    first = shared_client()
    reset_shared_client()
    assert first.is_closed
    second = shared_client()
    assert second is not first and not second.is_closed
