"""Bounded upstream answers (issue 21, item 7): a gzip bomb from the usage or token
endpoint fails cleanly with little memory, a server trickling one byte every 5 s fails
within the promised 10 s (`httpclient.DEADLINE_SEC`), both counted like any failed cycle.
Against the loopback fake (`devstack/fakes/anthropic.py`) and a trickling server
(`devstack/fakes/trickle.py`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from claude_matrix_bot.errors import TokenRefreshError
from claude_matrix_bot.httpclient import DEADLINE_SEC, MAX_ANSWER_BYTES, install_deadline, shared_client
from claude_matrix_bot.tokens.oauth import TokenRefresher
from devstack.fakes.anthropic import FakeAnthropic
from devstack.fakes.trickle import Trickle, usage_answer
from tests.helpers import REPO, bot_env, payload

GIB = 1024**3
# The child may map this much address space at most: the unbounded client needed 2.1 GB
# for the bomb below, the bounded one stays far under (its peak RSS is reported).
ADDRESS_SPACE_LIMIT = 1024 * 1024 * 1024
AGENT = "claude-code/2.0.55"


def _gzip_of_zeros(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    parts = [packer.compress(block) for _ in range(size // len(block))]
    return b"".join([*parts, packer.flush()])


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """About 1 MB of gzip that inflates to 1 GiB."""
    return _gzip_of_zeros(GIB)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _run_limited(env: dict[str, str], tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], int]:
    """`claude-matrix-bot run` under an address-space limit; (the process, its peak RSS in KiB).

    The peak is the child's own VmHWM: `getrusage().ru_maxrss` keeps the high-water mark of
    the process it was spawned from across exec, so it reported pytest's peak (340 MB after a
    memory-hungry test earlier in the suite) instead of the bot's."""
    rss_file = tmp_path / "maxrss"
    code = (
        "import resource, runpy, sys\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE_LIMIT}, {ADDRESS_SPACE_LIMIT}))\n"
        "sys.argv = ['claude-matrix-bot', 'run']\n"
        "try:\n"
        "    runpy.run_module('claude_matrix_bot', run_name='__main__')\n"
        "finally:\n"
        "    hwm = [line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')]\n"
        f"    open({str(rss_file)!r}, 'w').write(hwm[0])\n"
    )
    full = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO / "function"), **env}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=120, check=False
    )
    return proc, int(rss_file.read_text() or 0) if rss_file.exists() else 0


def test_a_gzip_bomb_from_the_usage_endpoint_fails_cleanly_with_little_memory(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, bomb: bytes
) -> None:
    now = _now()
    anthropic.set_usage(payload(five_hour=(20.0, now + timedelta(hours=3))))
    anthropic.fail_next(
        "usage", status=200, body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )
    env = {**bot_env(tmp_path, anthropic.base_url, anthropic.token_url), "NOW_OVERRIDE": now.isoformat()}

    proc, peak_kib = _run_limited(env, tmp_path)

    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr
    assert f"larger than {MAX_ANSWER_BYTES} bytes once inflated" in proc.stderr
    health = json.loads((tmp_path / "state" / "state.json").read_text())["health"]
    assert health["consecutive_failures"] == 1
    assert 0 < peak_kib < 200 * 1024, f"peak RSS {peak_kib} KiB"


def test_a_gzip_bomb_from_the_token_endpoint_is_a_refresh_failure(anthropic: FakeAnthropic, bomb: bytes) -> None:
    issued = anthropic.issue_tokens()
    anthropic.fail_next("token", status=200, body=bomb[: len(bomb) // 16], headers={"Content-Encoding": "gzip"})

    with (
        TokenRefresher(token_url=anthropic.token_url, user_agent=AGENT) as refresher,
        pytest.raises(TokenRefreshError, match=r"larger than .* bytes once inflated"),
    ):
        refresher.refresh(issued.refresh_token, _now())


def test_an_answer_too_large_as_sent_is_refused(anthropic: FakeAnthropic, tmp_path: Path, tokens_dir: Path) -> None:
    now = _now()
    anthropic.fail_next("usage", status=200, body=b" " * (MAX_ANSWER_BYTES + 1) + b"{}")
    env = {**bot_env(tmp_path, anthropic.base_url, anthropic.token_url), "NOW_OVERRIDE": now.isoformat()}

    proc, _ = _run_limited(env, tmp_path)

    assert proc.returncode == 1, proc.stderr
    assert f"answer larger than {MAX_ANSWER_BYTES} bytes, refused" in proc.stderr


def test_a_usage_endpoint_trickling_a_byte_every_5s_fails_within_the_deadline(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path
) -> None:
    now = _now()
    answer = usage_answer(json.dumps(payload(five_hour=(20.0, now + timedelta(hours=3)))).encode())
    with Trickle(answer, interval=5.0) as trickle:
        env = bot_env(tmp_path, trickle.url, anthropic.token_url)
        proc, _ = _run_limited({**env, "NOW_OVERRIDE": now.isoformat()}, tmp_path)

        assert proc.returncode == 1, proc.stderr
        assert "timed out" in proc.stderr
        # The deadline, not the answer's end, stopped it: a byte every 5 s for 10 s.
        assert trickle.sent <= DEADLINE_SEC / 5 + 1 < len(answer)
    health = json.loads((tmp_path / "state" / "state.json").read_text())["health"]
    assert health["consecutive_failures"] == 1


def test_a_token_endpoint_trickling_a_byte_every_5s_fails_within_the_deadline() -> None:
    answer = usage_answer(b'{"access_token": "a-new-access-token-1234", "expires_in": 3600}')
    with Trickle(answer, interval=5.0) as trickle:
        with (
            TokenRefresher(token_url=trickle.url + "/v1/oauth/token", user_agent=AGENT) as refresher,
            pytest.raises(TokenRefreshError, match="timed out"),
        ):
            refresher.refresh("a-refresh-token-5678", _now())
        assert trickle.sent <= DEADLINE_SEC / 5 + 1 < len(answer)


@pytest.mark.parametrize("proxy", [None, "http://127.0.0.1:9"], ids=["direct", "behind-a-proxy"])
def test_the_deadline_reaches_every_connection_pool(proxy: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx keeps its pools private; this holds an upgrade of httpx to what the deadline needs."""
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    if proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy)
    client: Any = shared_client()
    assert install_deadline(client)
    backends = [type(t._pool._network_backend).__name__ for t in [client._transport, *client._mounts.values()] if t]
    assert backends and all(name == "_DeadlineBackend" for name in backends)
    assert isinstance(client, httpx.Client)
