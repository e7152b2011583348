"""Token refresh against the loopback fake: rotation, write-before-use, races, the 401 path."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from claude_matrix_bot.errors import (
    Forbidden,
    ServerError,
    StorageConflict,
    StorageError,
    TokenRefreshError,
    Unauthorized,
)
from claude_matrix_bot.tokens.base import OAuthTokens, StoredTokens
from claude_matrix_bot.tokens.local import DirectoryTokenStore
from claude_matrix_bot.tokens.oauth import InvalidGrant, TokenManager, TokenRefresher, fetch_with_refresh
from claude_matrix_bot.usage import UsageClient
from devstack.fakes.anthropic import CLIENT_ID, HTML_BODY, FakeAnthropic, IssuedTokens

UA = "claude-code/2.0.55"
LEEWAY = 600


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(expires_in=28800) as server:
        yield server


@pytest.fixture
def refresher(fake: FakeAnthropic) -> Iterator[TokenRefresher]:
    with TokenRefresher(fake.token_url, UA, timeout=5.0) as token_refresher:
        yield token_refresher


@pytest.fixture
def usage(fake: FakeAnthropic) -> Iterator[UsageClient]:
    with UsageClient(fake.base_url, UA, timeout=5.0) as client:
        yield client


def _now(issued: IssuedTokens, *, before_expiry: timedelta) -> datetime:
    """A "now" relative to the fake's expiry, so tests choose fresh or expiring tokens."""
    return issued.expires_at - before_expiry


def issued_tokens(fake: FakeAnthropic) -> set[str]:
    """Every token the fake minted, to prove none of them leaks."""
    with fake._lock:
        return set(fake._access) | set(fake._refresh)


def _secrets_absent(text: str, *tokens: str) -> None:
    for token in tokens:
        assert token not in text


# --- TokenRefresher ----------------------------------------------------------------------


def test_refresh_rotates_and_sends_what_claude_code_sends(fake: FakeAnthropic, refresher: TokenRefresher) -> None:
    issued = fake.issue_tokens()
    now = datetime(2026, 1, 2, 12, tzinfo=UTC)
    fresh = refresher.refresh(issued.refresh_token, now)
    assert fresh.expires_at == now + timedelta(seconds=28800)
    assert fresh.refresh_token != issued.refresh_token
    assert fake.is_valid_access(fresh.access_token)
    assert fake.is_unused_refresh(fresh.refresh_token)
    (request,) = fake.requests
    assert request.path == "/v1/oauth/token"
    assert request.header("content-type") == "application/json"
    assert request.header("user-agent") == UA
    assert json.loads(request.body) == {
        "grant_type": "refresh_token",
        "refresh_token": issued.refresh_token,
        "client_id": "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
    }


def test_reusing_a_refresh_token_is_invalid_grant(fake: FakeAnthropic, refresher: TokenRefresher) -> None:
    issued = fake.issue_tokens()
    now = datetime.now(UTC)
    refresher.refresh(issued.refresh_token, now)
    with pytest.raises(InvalidGrant) as info:
        refresher.refresh(issued.refresh_token, now)
    message = str(info.value)
    assert "already used or was revoked" in message
    assert "bootstrap" in message
    _secrets_absent(message, issued.refresh_token, issued.access_token)
    assert fake.invalid_grants == 1


def test_server_without_rotation_keeps_the_old_refresh_token() -> None:
    with FakeAnthropic(rotate_refresh_tokens=False) as fake, TokenRefresher(fake.token_url, UA) as refresher:
        issued = fake.issue_tokens()
        fresh = refresher.refresh(issued.refresh_token, datetime.now(UTC))
        assert fresh.refresh_token == issued.refresh_token
        assert fresh.access_token != issued.access_token


@pytest.mark.parametrize("status", [500, 502, 503])
def test_token_endpoint_5xx_keeps_the_refresh_token(
    fake: FakeAnthropic, refresher: TokenRefresher, status: int
) -> None:
    issued = fake.issue_tokens()
    fake.fail_next("token", status, body=HTML_BODY)
    with pytest.raises(TokenRefreshError) as info:
        refresher.refresh(issued.refresh_token, datetime.now(UTC))
    assert not isinstance(info.value, InvalidGrant)
    assert "kept for the next run" in str(info.value)
    assert fake.is_unused_refresh(issued.refresh_token)


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        '{"refresh_token": "x", "expires_in": 3600}',
        '{"access_token": "a", "expires_in": "soon"}',
        '{"access_token": "a", "expires_in": -5}',
        '{"access_token": "a", "refresh_token": 7, "expires_in": 60}',
    ],
)
def test_malformed_token_answer(fake: FakeAnthropic, refresher: TokenRefresher, body: str) -> None:
    fake.fail_next("token", 200, body=body)
    with pytest.raises(TokenRefreshError):
        refresher.refresh(fake.issue_tokens().refresh_token, datetime.now(UTC))


def test_token_endpoint_timeout(fake: FakeAnthropic) -> None:
    issued = fake.issue_tokens()
    fake.fail_next("token", 200, delay=30)
    with TokenRefresher(fake.token_url, UA, timeout=0.3) as refresher, pytest.raises(TokenRefreshError) as info:
        refresher.refresh(issued.refresh_token, datetime.now(UTC))
    assert "timed out" in str(info.value)
    _secrets_absent(str(info.value), issued.refresh_token)


def test_token_endpoint_unreachable(fake: FakeAnthropic) -> None:
    issued = fake.issue_tokens()
    with (
        TokenRefresher(fake.token_url, UA) as refresher,
        fake.refusing_connections(),
        pytest.raises(TokenRefreshError, match="unreachable"),
    ):
        refresher.refresh(issued.refresh_token, datetime.now(UTC))


def test_token_endpoint_other_refusal(fake: FakeAnthropic) -> None:
    issued = fake.issue_tokens()
    with (
        TokenRefresher(fake.token_url, UA, client_id="someone-else") as refresher,
        pytest.raises(TokenRefreshError, match="401") as info,
    ):
        refresher.refresh(issued.refresh_token, datetime.now(UTC))
    assert not isinstance(info.value, InvalidGrant)
    assert "invalid_client" in str(info.value)


# --- TokenManager ----------------------------------------------------------------------------


def test_fresh_tokens_are_used_without_refresh(fake: FakeAnthropic, refresher: TokenRefresher, tmp_path: Path) -> None:
    issued = fake.write_tokens_dir(tmp_path)
    manager = TokenManager(DirectoryTokenStore(tmp_path), refresher, LEEWAY)
    tokens = manager.current(_now(issued, before_expiry=timedelta(seconds=LEEWAY + 1)))
    assert tokens.access_token == issued.access_token
    assert fake.refresh_calls == 0


def test_expiring_tokens_are_refreshed_and_saved(
    fake: FakeAnthropic, refresher: TokenRefresher, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    issued = fake.write_tokens_dir(tmp_path)
    store = DirectoryTokenStore(tmp_path)
    manager = TokenManager(store, refresher, LEEWAY)
    caplog.set_level(logging.DEBUG)
    now = _now(issued, before_expiry=timedelta(seconds=LEEWAY))  # exactly at the leeway: refresh
    tokens = manager.current(now)
    assert tokens.access_token != issued.access_token
    assert store.load().tokens == tokens
    assert fake.refresh_calls == 1
    assert "OAuth tokens refreshed, access token expires at" in caplog.text
    _secrets_absent(caplog.text, issued.access_token, issued.refresh_token, tokens.access_token, tokens.refresh_token)


def test_new_tokens_are_stored_before_they_are_used(
    fake: FakeAnthropic, refresher: TokenRefresher, usage: UsageClient, tmp_path: Path
) -> None:
    """A crash (here: the usage call failing) after the refresh must not lose the new refresh token."""
    issued = fake.write_tokens_dir(tmp_path)
    store = DirectoryTokenStore(tmp_path)
    manager = TokenManager(store, refresher, LEEWAY)
    fake.fail_next("usage", 503)
    with pytest.raises(ServerError):
        fetch_with_refresh(manager, usage, _now(issued, before_expiry=timedelta(seconds=60)))
    saved = store.load().tokens
    assert saved.refresh_token != issued.refresh_token
    assert fake.is_unused_refresh(saved.refresh_token)
    assert fake.is_valid_access(saved.access_token)


class _PausingStore:
    """A DirectoryTokenStore whose first load() waits at a barrier, so two managers both see expiry."""

    def __init__(self, inner: DirectoryTokenStore, barrier: threading.Barrier) -> None:
        self.inner = inner
        self.barrier = barrier
        self.first = True

    def load(self) -> StoredTokens:
        stored = self.inner.load()
        if self.first:
            self.first = False
            self.barrier.wait(timeout=10)
        return stored

    def save(self, tokens: OAuthTokens, *, expect_version: str) -> StoredTokens:
        return self.inner.save(tokens, expect_version=expect_version)

    def refresh_lock(self) -> object:
        return self.inner.refresh_lock()


def test_two_runs_on_one_directory_refresh_once(fake: FakeAnthropic, tmp_path: Path) -> None:
    issued = fake.write_tokens_dir(tmp_path)
    now = _now(issued, before_expiry=timedelta(seconds=30))
    barrier = threading.Barrier(2)
    results: list[OAuthTokens] = []
    errors: list[BaseException] = []

    def run() -> None:
        store = _PausingStore(DirectoryTokenStore(tmp_path), barrier)
        with TokenRefresher(fake.token_url, UA, timeout=5.0) as refresher:
            try:
                results.append(TokenManager(store, refresher, LEEWAY).current(now))
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(results) == 2
    assert results[0] == results[1]  # the loser took the winner's tokens
    assert fake.refresh_calls == 1
    assert fake.invalid_grants == 0
    assert DirectoryTokenStore(tmp_path).load().tokens == results[0]


class _RacedStore:
    """A store without a refresh lock (like a Secret) where another writer lands during our refresh."""

    def __init__(self, inner: DirectoryTokenStore, intruder: OAuthTokens) -> None:
        self.inner = inner
        self.intruder: OAuthTokens | None = intruder
        self.conflicts = 0

    def load(self) -> StoredTokens:
        return self.inner.load()

    def save(self, tokens: OAuthTokens, *, expect_version: str) -> StoredTokens:
        if self.intruder is not None:
            current = self.inner.load()
            self.inner.save(self.intruder, expect_version=current.version)
            self.intruder = None
        try:
            return self.inner.save(tokens, expect_version=expect_version)
        except StorageConflict:
            self.conflicts += 1
            raise


def test_conflict_on_save_takes_the_winners_tokens(
    fake: FakeAnthropic, refresher: TokenRefresher, tmp_path: Path
) -> None:
    issued = fake.write_tokens_dir(tmp_path)
    winner = fake.issue_tokens()
    winner_tokens = OAuthTokens(winner.access_token, winner.refresh_token, winner.expires_at)
    store = _RacedStore(DirectoryTokenStore(tmp_path), winner_tokens)
    manager = TokenManager(store, refresher, LEEWAY)
    tokens = manager.current(_now(issued, before_expiry=timedelta(seconds=30)))
    assert store.conflicts == 1
    assert tokens == winner_tokens
    assert DirectoryTokenStore(tmp_path).load().tokens == winner_tokens
    assert fake.refresh_calls == 1


class _StaleFirstLoadStore:
    """Its first load() returns what was there before another run refreshed (no lock, like a Secret)."""

    def __init__(self, inner: DirectoryTokenStore, stale: StoredTokens) -> None:
        self.inner = inner
        self.stale: StoredTokens | None = stale

    def load(self) -> StoredTokens:
        if self.stale is not None:
            stale, self.stale = self.stale, None
            return stale
        return self.inner.load()

    def save(self, tokens: OAuthTokens, *, expect_version: str) -> StoredTokens:
        return self.inner.save(tokens, expect_version=expect_version)


def test_lockless_store_rereads_before_spending(fake: FakeAnthropic, refresher: TokenRefresher, tmp_path: Path) -> None:
    issued = fake.write_tokens_dir(tmp_path)
    directory = DirectoryTokenStore(tmp_path)
    stale = directory.load()
    now = _now(issued, before_expiry=timedelta(seconds=30))
    first = TokenManager(directory, refresher, LEEWAY).current(now)  # the other run
    second = TokenManager(_StaleFirstLoadStore(directory, stale), refresher, LEEWAY).current(now)
    assert second == first
    assert fake.refresh_calls == 1
    assert fake.invalid_grants == 0


def test_invalid_grant_after_another_run_rotated_takes_its_tokens(
    fake: FakeAnthropic, refresher: TokenRefresher, tmp_path: Path
) -> None:
    """The narrowest race without a lock: both read, the other run spends and saves while we spend."""
    issued = fake.write_tokens_dir(tmp_path)
    directory = DirectoryTokenStore(tmp_path)
    now = _now(issued, before_expiry=timedelta(seconds=30))

    class SpendsFirst:
        def refresh(self, refresh_token: str, when: datetime) -> OAuthTokens:
            TokenManager(directory, refresher, LEEWAY).current(when)  # the other run wins
            return refresher.refresh(refresh_token, when)

    class NoLock:
        def load(self) -> StoredTokens:
            return directory.load()

        def save(self, tokens: OAuthTokens, *, expect_version: str) -> StoredTokens:
            return directory.save(tokens, expect_version=expect_version)

    tokens = TokenManager(NoLock(), SpendsFirst(), LEEWAY).current(now)
    assert tokens == directory.load().tokens
    assert tokens.access_token != issued.access_token
    assert fake.invalid_grants == 1  # ours lost, and that was recovered from


def test_invalid_grant_with_nothing_newer_propagates(
    fake: FakeAnthropic, refresher: TokenRefresher, tmp_path: Path
) -> None:
    issued = fake.write_tokens_dir(tmp_path)
    refresher.refresh(issued.refresh_token, datetime.now(UTC))  # spent behind the bot's back
    manager = TokenManager(DirectoryTokenStore(tmp_path), refresher, LEEWAY)
    with pytest.raises(InvalidGrant) as info:
        manager.current(_now(issued, before_expiry=timedelta(seconds=30)))
    _secrets_absent(str(info.value), issued.refresh_token, issued.access_token)


def test_save_failure_is_a_loud_storage_error(fake: FakeAnthropic, refresher: TokenRefresher, tmp_path: Path) -> None:
    issued = fake.write_tokens_dir(tmp_path)

    class BrokenSave:
        def load(self) -> StoredTokens:
            return DirectoryTokenStore(tmp_path).load()

        def save(self, tokens: OAuthTokens, *, expect_version: str) -> StoredTokens:
            raise StorageError("disk full")

    with pytest.raises(StorageError, match="invalid_grant") as info:
        TokenManager(BrokenSave(), refresher, LEEWAY).current(_now(issued, before_expiry=timedelta(seconds=1)))
    assert "bootstrapped again" in str(info.value)


def test_lock_failure_refuses_before_spending(fake: FakeAnthropic, refresher: TokenRefresher, tmp_path: Path) -> None:
    """A store that cannot take its refresh lock (read-only directory) must fail before a token is spent."""
    issued = fake.write_tokens_dir(tmp_path)

    class ReadOnly(DirectoryTokenStore):
        def refresh_lock(self) -> contextlib.AbstractContextManager[None]:
            raise StorageError(f"OAUTH_TOKENS_DIR {self.directory} is not writable (Read-only file system)")

    manager = TokenManager(ReadOnly(tmp_path), refresher, LEEWAY)
    with pytest.raises(StorageError, match="not writable"):
        manager.current(_now(issued, before_expiry=timedelta(seconds=1)))
    assert fake.refresh_calls == 0
    assert fake.is_unused_refresh(issued.refresh_token)


# --- fetch_with_refresh -----------------------------------------------------------------------


def test_401_refreshes_once_and_retries(
    fake: FakeAnthropic,
    refresher: TokenRefresher,
    usage: UsageClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    issued = fake.write_tokens_dir(tmp_path)
    fake.revoke(issued.access_token)  # revoked early: the stored expiry still looks fine
    store = DirectoryTokenStore(tmp_path)
    manager = TokenManager(store, refresher, LEEWAY)
    reading = fetch_with_refresh(manager, usage, _now(issued, before_expiry=timedelta(hours=2)))
    assert reading.buckets["seven_day"].utilization == 36.0
    assert fake.refresh_calls == 1
    assert fake.usage_calls == 2
    fresh = store.load().tokens
    assert fresh.access_token != issued.access_token
    assert "answered 401; refreshing once" in caplog.text
    _secrets_absent(caplog.text, *issued_tokens(fake))


def test_second_401_propagates(
    fake: FakeAnthropic, refresher: TokenRefresher, usage: UsageClient, tmp_path: Path
) -> None:
    issued = fake.write_tokens_dir(tmp_path)
    fake.fail_next("usage", 401, times=5)
    manager = TokenManager(DirectoryTokenStore(tmp_path), refresher, LEEWAY)
    with pytest.raises(Unauthorized) as info:
        fetch_with_refresh(manager, usage, _now(issued, before_expiry=timedelta(hours=2)))
    assert fake.refresh_calls == 1
    assert fake.usage_calls == 2
    _secrets_absent(str(info.value), issued.access_token, issued.refresh_token)


def test_401_right_after_an_expiry_refresh_does_not_refresh_again(
    fake: FakeAnthropic, refresher: TokenRefresher, usage: UsageClient, tmp_path: Path
) -> None:
    issued = fake.write_tokens_dir(tmp_path)
    fake.fail_next("usage", 401, times=5)
    manager = TokenManager(DirectoryTokenStore(tmp_path), refresher, LEEWAY)
    with pytest.raises(Unauthorized):
        fetch_with_refresh(manager, usage, _now(issued, before_expiry=timedelta(seconds=5)))
    assert fake.refresh_calls == 1
    assert fake.usage_calls == 1


def test_401_uses_tokens_another_run_stored_without_refreshing(
    fake: FakeAnthropic, refresher: TokenRefresher, usage: UsageClient, tmp_path: Path
) -> None:
    issued = fake.write_tokens_dir(tmp_path)
    store = DirectoryTokenStore(tmp_path)
    manager = TokenManager(store, refresher, LEEWAY)
    now = _now(issued, before_expiry=timedelta(hours=2))
    rejected = manager.current(now)
    newer = fake.issue_tokens()
    store.save(
        OAuthTokens(newer.access_token, newer.refresh_token, newer.expires_at), expect_version=store.load().version
    )
    assert manager.after_unauthorized(now, rejected).access_token == newer.access_token
    assert fake.refresh_calls == 0


def test_invalidated_old_access_token_after_refresh() -> None:
    """Servers that kill the old access token on refresh: the bot must use the new one at once."""
    with FakeAnthropic(invalidate_old_access=True) as fake, TokenRefresher(fake.token_url, UA) as refresher:
        issued = fake.issue_tokens()
        fresh = refresher.refresh(issued.refresh_token, datetime.now(UTC))
        assert not fake.is_valid_access(issued.access_token)
        assert fake.is_valid_access(fresh.access_token)


def test_forbidden_is_not_retried(
    fake: FakeAnthropic, refresher: TokenRefresher, usage: UsageClient, tmp_path: Path
) -> None:
    issued = fake.write_tokens_dir(tmp_path, scopes=("user:inference",))
    manager = TokenManager(DirectoryTokenStore(tmp_path), refresher, LEEWAY)
    with pytest.raises(Forbidden):
        fetch_with_refresh(manager, usage, _now(issued, before_expiry=timedelta(hours=2)))
    assert fake.refresh_calls == 0
    assert fake.usage_calls == 1


# --- the fake as a process (what the CLI tests and the demo drive) ----------------------------

REPO = Path(__file__).resolve().parents[1]


def _start_fake_process(state_file: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.fakes.anthropic", "--port", "0", "--state-file", str(state_file), *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("READY http://127.0.0.1:"), line
    return process, line.split()[1]


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


def test_fake_process_with_control_api_keeps_the_chain_across_restarts(tmp_path: Path) -> None:
    state_file = tmp_path / "fake.json"
    tokens_dir = tmp_path / "tokens"
    process, base_url = _start_fake_process(state_file, "--tokens-dir", str(tokens_dir), "--expires-in", "3600")
    try:
        with httpx.Client(base_url=base_url) as control:
            usage_payload = {"five_hour": {"utilization": 12.5, "resets_at": None}, "seven_day": None}
            assert control.post("/_control/usage", json={"payload": usage_payload}).status_code == 200
            store = DirectoryTokenStore(tokens_dir)
            expiring = store.load().tokens.expires_at - timedelta(seconds=10)
            with (
                TokenRefresher(base_url + "/v1/oauth/token", UA) as refresher,
                UsageClient(base_url, UA) as usage,
            ):
                reading = fetch_with_refresh(TokenManager(store, refresher, LEEWAY), usage, expiring)
                assert reading.buckets["five_hour"].utilization == 12.5
                assert reading.null_buckets == ("seven_day",)
                control.post("/_control/fail", json={"kind": "usage", "status": 503, "times": 1})
                with pytest.raises(ServerError):
                    usage.fetch(store.load().tokens.access_token, expiring)
            stats = control.get("/_control/stats").json()
        assert stats["refresh_calls"] == 1
        assert stats["usage_calls"] == 2
        assert stats["invalid_grants"] == 0
        assert {r["user_agent"] for r in stats["requests"]} == {UA}
    finally:
        _stop(process)

    # A restarted fake (new port) remembers which refresh tokens are spent.
    process, base_url = _start_fake_process(state_file)
    try:
        saved = DirectoryTokenStore(tokens_dir).load().tokens
        with TokenRefresher(base_url + "/v1/oauth/token", UA) as refresher:
            assert refresher.refresh(saved.refresh_token, datetime.now(UTC)).access_token
            with pytest.raises(InvalidGrant):
                refresher.refresh(saved.refresh_token, datetime.now(UTC))
        with httpx.Client(base_url=base_url) as control:
            minted = control.post("/_control/tokens", json={"tokens_dir": str(tmp_path / "more")}).json()
            assert DirectoryTokenStore(tmp_path / "more").load().tokens.access_token == minted["access_token"]
            assert control.post("/_control/revoke", json={"all": True}).status_code == 200
            with UsageClient(base_url, UA) as usage, pytest.raises(Unauthorized):
                usage.fetch(minted["access_token"], datetime.now(UTC))
    finally:
        _stop(process)


# --- the token endpoint as it is (docs/design.md §2) -------------------------------------------


def test_the_fake_token_endpoint_refuses_a_form_body_and_a_foreign_agent(fake: FakeAnthropic) -> None:
    """platform.claude.com refuses a form body, and its CDN refuses clients without Claude
    Code's User-Agent: the fake does too, so a bot that sent either would fail here."""
    issued = fake.issue_tokens()
    form = {"grant_type": "refresh_token", "refresh_token": issued.refresh_token, "client_id": CLIENT_ID}
    with httpx.Client(timeout=5.0) as http:
        by_form = http.post(fake.token_url, data=form, headers={"User-Agent": UA})
        assert by_form.status_code == 400 and by_form.json()["error"] == "invalid_request"
        foreign = http.post(fake.token_url, json=form, headers={"User-Agent": "python-httpx/0.28"})
        assert foreign.status_code == 403 and foreign.headers["content-type"].startswith("text/html")
    assert fake.is_unused_refresh(issued.refresh_token), "neither refusal spent the refresh token"
    with TokenRefresher(fake.token_url, UA, timeout=5.0) as refresher:
        refresher.refresh(issued.refresh_token, datetime(2026, 1, 2, 12, tzinfo=UTC))
    assert not fake.is_unused_refresh(issued.refresh_token)


def test_a_refresh_refused_by_the_cdn_names_the_user_agent(fake: FakeAnthropic) -> None:
    issued = fake.issue_tokens()
    with (
        TokenRefresher(fake.token_url, "python-httpx/0.28", timeout=5.0) as refresher,
        pytest.raises(TokenRefreshError, match="ANTHROPIC_USER_AGENT") as info,
    ):
        refresher.refresh(issued.refresh_token, datetime(2026, 1, 2, 12, tzinfo=UTC))
    assert "python-httpx/0.28" in str(info.value) and "(403" in str(info.value)
    assert fake.is_unused_refresh(issued.refresh_token), "kept for the next run"
