"""The token write-back survives a flaky Kubernetes API (issue 21 item 3).

The refresh spends the old refresh token, so a write-back that fails loses the chain:
every later run gets `invalid_grant`. Driven through the real `kubernetes` client against
the loopback API server (devstack/fakes/kube_apiserver.py), the real token refresher
against the fake Anthropic token endpoint, and a real directory state store: one 5xx on
the PATCH, a PATCH that lands but is answered too late (a client timeout), and an outage
that outlasts the retries. In each case nothing is lost: the pair reaches the Secret, or
waits encrypted in the state store until a later run writes it back, and the chain goes on.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from claude_matrix_bot.errors import StorageError
from claude_matrix_bot.store import Durability, Expect
from claude_matrix_bot.store.file import DirectoryStore
from claude_matrix_bot.tokens.k8s import SecretTokenStore
from claude_matrix_bot.tokens.oauth import TokenManager, TokenRefresher
from claude_matrix_bot.tokens.pending import PENDING_FILE, SafekeepingTokenStore
from devstack.fakes.anthropic import FakeAnthropic
from devstack.fakes.kube_apiserver import FakeKubeApiServer, core_v1_api, write_kubeconfig
from tests.helpers import bot_env, payload, run_cli

UA = "claude-cli/2.1.300 (external, cli)"
LEEWAY = 600
FAST = (0.01, 0.01, 0.01)  # the write-back's pauses, shortened for tests


@pytest.fixture
def anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(expires_in=28800) as fake:
        yield fake


@pytest.fixture
def kube(anthropic: FakeAnthropic) -> Iterator[FakeKubeApiServer]:
    with FakeKubeApiServer(namespace="claude-bot", secret_name="claude-oauth-tokens") as server:
        issued = anthropic.issue_tokens(expires_in=120)  # inside the leeway: the run refreshes
        server.put_secret(
            {
                "accessToken": issued.access_token,
                "refreshToken": issued.refresh_token,
                "expiresAt": str(issued.expires_at_ms),
            }
        )
        yield server


class Run:
    """One process: a new API client, Secret store, state store and refresher."""

    def __init__(
        self, kube: FakeKubeApiServer, anthropic: FakeAnthropic, state_dir: Path, *, read_timeout: float = 20.0
    ) -> None:
        self.secret = SecretTokenStore(
            kube.secret_name,
            kube.namespace,
            core_v1_api(kube),
            write_retry_delays=FAST,
            request_timeout=(5.0, read_timeout),
            claim_poll=timedelta(milliseconds=20),
        )
        self.state = DirectoryStore(state_dir)
        self.store = SafekeepingTokenStore(self.secret, self.state, PENDING_FILE, self.secret.where)
        self.refresher = TokenRefresher(anthropic.token_url, UA, timeout=5.0)
        self.manager = TokenManager(self.store, self.refresher, LEEWAY)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.refresher.close()


def _token_writes(kube: FakeKubeApiServer) -> list[int]:
    return [r.status for r in kube.requests if r.method == "PATCH" and "data" in (r.body or {})]


def _assert_chain_alive(kube: FakeKubeApiServer, anthropic: FakeAnthropic, state_dir: Path) -> None:
    """The Secret holds an unspent refresh token, and the next refresh works with it."""
    assert anthropic.is_unused_refresh(kube.secret_data()["refreshToken"])
    with Run(kube, anthropic, state_dir) as later:
        rejected = later.manager.current(datetime.now(UTC))
        refreshed = later.manager.after_unauthorized(datetime.now(UTC), rejected)  # forces one refresh
    assert anthropic.is_valid_access(refreshed.access_token)
    assert kube.secret_data()["refreshToken"] == refreshed.refresh_token
    assert anthropic.invalid_grants == 0


def test_one_5xx_on_the_write_back_is_retried_and_the_chain_goes_on(
    kube: FakeKubeApiServer, anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    kube.fail_next(503, method="PATCH", writes_tokens=True)
    with Run(kube, anthropic, tmp_path) as run:
        fresh = run.manager.current(datetime.now(UTC))

    assert anthropic.refresh_calls == 1
    assert _token_writes(kube) == [503, 200]
    assert kube.secret_data()["refreshToken"] == fresh.refresh_token
    assert not (tmp_path / PENDING_FILE).exists()
    _assert_chain_alive(kube, anthropic, tmp_path)


def test_a_write_back_answered_too_late_is_read_back_not_repeated(
    kube: FakeKubeApiServer, anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    # The API server applies the PATCH and holds its answer until the client has read the
    # Secret back: the client's read timeout always passes first, however slow the machine.
    # (A 0.5 s timeout against a 2 s stall applied to every request, so a loaded machine
    # could time out an ordinary one too.)
    kube.stall_next(10.0)
    with Run(kube, anthropic, tmp_path, read_timeout=3.0) as run:
        fresh = run.manager.current(datetime.now(UTC))
    kube.release_stalled()

    assert anthropic.refresh_calls == 1
    deadline = time.monotonic() + 10  # the fake records the stalled PATCH once it has answered
    while not _token_writes(kube) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _token_writes(kube) == [200], "written once: the read after the timeout found it there"
    assert kube.secret_data()["refreshToken"] == fresh.refresh_token
    assert "claude-matrix-bot/refreshing" not in kube.annotations(), "the same write ended the claim"
    assert not (tmp_path / PENDING_FILE).exists()
    _assert_chain_alive(kube, anthropic, tmp_path)


def test_an_outage_keeps_the_pair_encrypted_in_the_state_store_until_a_run_writes_it_back(
    kube: FakeKubeApiServer, anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    spent = kube.secret_data()
    kube.fail_next(503, times=1000, method="PATCH", writes_tokens=True)
    with Run(kube, anthropic, tmp_path) as run:
        fresh = run.manager.current(datetime.now(UTC))  # the cycle goes on with the new pair

    assert anthropic.refresh_calls == 1 and anthropic.is_valid_access(fresh.access_token)
    assert kube.secret_data() == spent, "the Secret still holds the spent pair"
    kept = (tmp_path / PENDING_FILE).read_bytes()
    for secret in fresh.secrets():
        for form in (secret, base64.b64encode(secret.encode()).decode(), secret[:16]):
            assert form.encode() not in kept, "never in clear"
    assert (tmp_path / PENDING_FILE).stat().st_mode & 0o077 == 0

    # A run during the outage: the kept pair, not the spent one (no refresh, no invalid_grant).
    with Run(kube, anthropic, tmp_path) as during:
        assert during.manager.current(datetime.now(UTC)).secrets() == fresh.secrets()
    assert anthropic.refresh_calls == 1

    kube.clear_faults()
    with Run(kube, anthropic, tmp_path) as after:
        assert after.manager.current(datetime.now(UTC)).secrets() == fresh.secrets()
    assert kube.secret_data()["refreshToken"] == fresh.refresh_token, "written back"
    assert not (tmp_path / PENDING_FILE).exists()
    assert anthropic.refresh_calls == 1
    _assert_chain_alive(kube, anthropic, tmp_path)


def test_a_kept_pair_the_secret_has_moved_past_is_dropped(
    kube: FakeKubeApiServer, anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    kube.fail_next(503, times=1000, method="PATCH", writes_tokens=True)
    with Run(kube, anthropic, tmp_path) as run:
        run.manager.current(datetime.now(UTC))
    assert (tmp_path / PENDING_FILE).exists()
    kube.clear_faults()
    # Someone bootstraps the tokens again meanwhile: the kept pair is not sealed under them.
    again = anthropic.issue_tokens()
    kube.put_secret(
        {"accessToken": again.access_token, "refreshToken": again.refresh_token, "expiresAt": str(again.expires_at_ms)}
    )
    with Run(kube, anthropic, tmp_path) as later:
        assert later.manager.current(datetime.now(UTC)).access_token == again.access_token
    assert not (tmp_path / PENDING_FILE).exists()
    assert kube.secret_data()["refreshToken"] == again.refresh_token


def test_when_the_state_store_fails_too_the_failure_says_the_token_is_spent(
    kube: FakeKubeApiServer, anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    kube.fail_next(503, times=1000, method="PATCH", writes_tokens=True)
    with Run(kube, anthropic, tmp_path) as run:
        run.store.state = _FullStore(tmp_path)
        with pytest.raises(StorageError, match="spent"):
            run.manager.current(datetime.now(UTC))


class _FullStore(DirectoryStore):
    def write(self, key: str, data: bytes, *, expect: Expect, durability: Durability = "durable") -> str:
        raise StorageError(f"cannot write {key}: No space left on device")


def test_a_cli_cycle_rides_out_one_5xx_on_the_write_back(
    kube: FakeKubeApiServer, anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    # The whole path, as the CronJob runs it: `claude-matrix-bot run` in a subprocess, the
    # Secret through a kubeconfig, the composition root's stores, the default retry pauses.
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)
    del env["LOCAL_MODE"]
    env.update(
        K8S_OAUTH_SECRET_NAME=kube.secret_name,
        K8S_NAMESPACE=kube.namespace,
        KUBECONFIG=str(write_kubeconfig(kube, tmp_path / "kubeconfig")),
    )
    now = datetime.now(UTC).replace(microsecond=0)
    anthropic.set_usage(
        payload(five_hour=(5.0, now + timedelta(hours=2)), weekly={"seven_day": (20.0, now + timedelta(days=3))})
    )
    kube.fail_next(503, method="PATCH", writes_tokens=True)

    first = run_cli(env, "run", now=now)

    assert first.code == 0, first.stderr
    assert '"kind": "armed"' in first.stdout
    assert _token_writes(kube) == [503, 200]
    assert anthropic.is_unused_refresh(kube.secret_data()["refreshToken"])
    later = run_cli(env, "run", now=now + timedelta(minutes=5))
    assert later.code == 0, later.stderr
    assert anthropic.refresh_calls == 1 and anthropic.invalid_grants == 0
