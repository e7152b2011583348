"""Several accounts (docs/design.md §6), the parts below the cycle: `ACCOUNTS`, the per-account
token stores (a directory per account; one Secret with `<account>.` keys, written
compare-and-swap per account) and the loopback fake serving each account its own usage.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from claude_matrix_bot.errors import ConfigError, StorageConflict, StorageError
from claude_matrix_bot.settings import load_settings
from claude_matrix_bot.tokens.base import OAuthTokens
from claude_matrix_bot.tokens.k8s import SecretTokenStore
from claude_matrix_bot.tokens.local import DirectoryTokenStore
from claude_matrix_bot.tokens.oauth import TokenManager, TokenRefresher
from devstack.fakes.anthropic import FakeAnthropic, IssuedTokens
from devstack.fakes.kube_apiserver import FakeKubeApiServer, core_v1_api
from tests.helpers import payload

UA = "claude-code/2.0.55"
LEEWAY = 600
BASE_ENV = {"LOCAL_MODE": "1", "ALERT_SINK": "stdout"}


# --- ACCOUNTS --------------------------------------------------------------------------


def test_accounts_unset_is_the_single_account_layout() -> None:
    assert load_settings(BASE_ENV).accounts == ()
    assert load_settings({**BASE_ENV, "ACCOUNTS": ""}).accounts == ()


def test_accounts_are_parsed_in_order() -> None:
    assert load_settings({**BASE_ENV, "ACCOUNTS": "work,priv"}).accounts == ("work", "priv")
    assert load_settings({**BASE_ENV, "ACCOUNTS": " work , priv-2 "}).accounts == ("work", "priv-2")
    assert load_settings({**BASE_ENV, "ACCOUNTS": "a" * 32}).accounts == ("a" * 32,)


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("Work,priv", "'Work'"),
        ("work,,priv", "''"),
        ("work,priv/x", "'priv/x'"),
        ("work,../etc", "'../etc'"),
        ("a" * 33, "a" * 33),
        ("work,priv.tokens", "'priv.tokens'"),
        ("work,work", "listed twice"),
        ("nio", "reserved"),
    ],
)
def test_bad_accounts_are_refused_naming_the_variable_and_the_name(value: str, needle: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({**BASE_ENV, "ACCOUNTS": value})
    message = str(error.value)
    assert "ACCOUNTS" in message
    assert needle in message


def test_bad_accounts_are_reported_together_with_other_bad_variables() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({**BASE_ENV, "ACCOUNTS": "Work", "HEALTH_FAILURES": "zero"})
    assert "ACCOUNTS" in str(error.value)
    assert "HEALTH_FAILURES" in str(error.value)


# --- LOCAL_MODE: OAUTH_TOKENS_DIR/<account>/ ----------------------------------------------------


def test_each_account_reads_and_refreshes_its_own_directory(tmp_path: Path, anthropic: FakeAnthropic) -> None:
    work = anthropic.write_tokens_dir(tmp_path / "tokens" / "work", account="work", expires_in=60)
    priv = anthropic.write_tokens_dir(tmp_path / "tokens" / "priv", account="priv")
    priv_files = {p.name: p.read_bytes() for p in (tmp_path / "tokens" / "priv").iterdir()}

    store = DirectoryTokenStore.for_account(tmp_path / "tokens", "work")
    with TokenRefresher(anthropic.token_url, UA) as refresher:
        fresh = TokenManager(store, refresher, LEEWAY).current(datetime.now(UTC))

    assert store.directory == tmp_path / "tokens" / "work"
    assert fresh.access_token != work.access_token, "work's token expired within the leeway: refreshed"
    assert anthropic.account_of(fresh.access_token) == "work"
    assert (tmp_path / "tokens" / "work" / "refreshToken").read_text() == fresh.refresh_token
    assert anthropic.is_unused_refresh(fresh.refresh_token)
    # The other account's files were not touched, not even their locks.
    assert {p.name: p.read_bytes() for p in (tmp_path / "tokens" / "priv").iterdir()} == priv_files
    assert DirectoryTokenStore.for_account(tmp_path / "tokens", "priv").load().tokens.access_token == priv.access_token


def test_a_missing_account_directory_names_it(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"tokens/priv: file accessToken is missing"):
        DirectoryTokenStore.for_account(tmp_path / "tokens", "priv").load()


# --- the cluster: one Secret, `<account>.` keys -----------------------------------------------


def _secret_with(fake: FakeKubeApiServer, **accounts: IssuedTokens | OAuthTokens) -> None:
    data: dict[str, str] = {}
    for name, tokens in accounts.items():
        if isinstance(tokens, IssuedTokens):
            expires_ms = tokens.expires_at_ms
        else:
            expires_ms = int(tokens.expires_at.timestamp() * 1000)
        data[f"{name}.accessToken"] = tokens.access_token
        data[f"{name}.refreshToken"] = tokens.refresh_token
        data[f"{name}.expiresAt"] = str(expires_ms)
    fake.put_secret(data)


WORK = OAuthTokens("at-work-S3CR3T", "rt-work-S3CR3T", datetime(2026, 1, 1, tzinfo=UTC))
PRIV = OAuthTokens("at-priv-S3CR3T", "rt-priv-S3CR3T", datetime(2026, 1, 2, tzinfo=UTC))
NEW_WORK = OAuthTokens("at-work-NEW", "rt-work-NEW", datetime(2026, 1, 3, tzinfo=UTC))


@pytest.fixture
def kube() -> FakeKubeApiServer:
    with FakeKubeApiServer(namespace="claude-bot", secret_name="claude-oauth-tokens") as server:
        yield server


def _store(fake: FakeKubeApiServer, account: str) -> SecretTokenStore:
    base = SecretTokenStore(fake.secret_name, fake.namespace, core_v1_api(fake), claim_poll=timedelta(milliseconds=20))
    return base.for_account(account)


def test_an_account_reads_its_own_prefixed_keys(kube: FakeKubeApiServer) -> None:
    _secret_with(kube, work=WORK, priv=PRIV)

    assert _store(kube, "work").load().tokens == WORK
    assert _store(kube, "priv").load().tokens == PRIV
    assert "account work" in _store(kube, "work").where
    assert "work" in repr(_store(kube, "work"))


def test_an_account_writes_only_its_own_three_keys(kube: FakeKubeApiServer) -> None:
    _secret_with(kube, work=WORK, priv=PRIV)
    store = _store(kube, "work")

    store.save(NEW_WORK, expect_version=store.load().version)

    patch = kube.requests[-1]
    assert patch.method == "PATCH"
    assert set(patch.body["data"]) == {"work.accessToken", "work.refreshToken", "work.expiresAt"}
    assert patch.body["metadata"]["annotations"] == {"claude-matrix-bot/refreshing.work": None}
    data = kube.secret_data()
    assert (data["work.accessToken"], data["work.refreshToken"]) == ("at-work-NEW", "rt-work-NEW")
    assert (data["priv.accessToken"], data["priv.refreshToken"]) == (PRIV.access_token, PRIV.refresh_token)
    assert "accessToken" not in data, "no unprefixed keys appear"
    assert store.load().tokens == NEW_WORK


def test_another_accounts_write_in_between_is_retried_not_a_conflict(kube: FakeKubeApiServer) -> None:
    _secret_with(kube, work=WORK, priv=PRIV)
    store = _store(kube, "work")
    seen = store.load()
    kube.another_writer({"priv.accessToken": "at-priv-ROTATED", "priv.refreshToken": "rt-priv-ROTATED"})

    saved = store.save(NEW_WORK, expect_version=seen.version)

    statuses = [r.status for r in kube.requests if r.method == "PATCH"]
    assert statuses == [409, 200], "the first patch lost to the other account, the second one won"
    data = kube.secret_data()
    assert data["work.refreshToken"] == "rt-work-NEW"
    assert data["priv.refreshToken"] == "rt-priv-ROTATED", "the other account's write is kept"
    assert store.load().version == saved.version


def test_a_write_to_the_accounts_own_keys_in_between_is_a_conflict(kube: FakeKubeApiServer) -> None:
    _secret_with(kube, work=WORK, priv=PRIV)
    store = _store(kube, "work")
    seen = store.load()
    kube.another_writer({"work.refreshToken": "rt-work-WINNER"})

    with pytest.raises(StorageConflict):
        store.save(NEW_WORK, expect_version=seen.version)

    assert kube.secret_data()["work.refreshToken"] == "rt-work-WINNER", "the winner's token is kept"


def test_missing_account_keys_are_named(kube: FakeKubeApiServer) -> None:
    _secret_with(kube, work=WORK)

    with pytest.raises(StorageError) as error:
        _store(kube, "priv").load()

    message = str(error.value)
    assert "priv.accessToken" in message and "priv.refreshToken" in message and "priv.expiresAt" in message
    assert "account priv" in message
    assert WORK.access_token not in message


def test_another_secret_stays_forbidden_for_an_account(kube: FakeKubeApiServer) -> None:
    other = SecretTokenStore("someone-elses-secret", kube.namespace, core_v1_api(kube)).for_account("work")

    with pytest.raises(StorageError, match="403"):
        other.load()


class _MeetingRefresher:
    """Refreshes, then waits until the other account has refreshed too: both write-backs
    then race on one resourceVersion, so one of them must meet a 409."""

    def __init__(self, inner: TokenRefresher, barrier: threading.Barrier) -> None:
        self.inner = inner
        self.barrier = barrier

    def refresh(self, refresh_token: str, now: datetime) -> OAuthTokens:
        fresh = self.inner.refresh(refresh_token, now)
        self.barrier.wait(timeout=20)
        return fresh


def test_two_accounts_refreshing_at_once_on_one_secret_both_keep_their_tokens(kube: FakeKubeApiServer) -> None:
    with FakeAnthropic(expires_in=28800) as anthropic:
        issued = {name: anthropic.issue_tokens(expires_in=60, account=name) for name in ("work", "priv")}
        _secret_with(kube, **issued)
        kube.clear_requests()
        now = datetime.now(UTC)
        barrier = threading.Barrier(2)
        results: dict[str, OAuthTokens] = {}
        errors: list[BaseException] = []

        def refresh(account: str) -> None:
            try:
                with TokenRefresher(anthropic.token_url, UA, timeout=5.0) as inner:
                    manager = TokenManager(_store(kube, account), _MeetingRefresher(inner, barrier), LEEWAY)
                    results[account] = manager.current(now)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=refresh, args=(name,)) for name in ("work", "priv")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        assert errors == []
        assert set(results) == {"work", "priv"}
        assert anthropic.refresh_calls == 2
        assert anthropic.invalid_grants == 0
        data = kube.secret_data()
        for name, fresh in results.items():
            assert fresh.access_token != issued[name].access_token
            assert anthropic.account_of(fresh.access_token) == name
            assert data[f"{name}.accessToken"] == fresh.access_token
            assert data[f"{name}.refreshToken"] == fresh.refresh_token
            assert anthropic.is_unused_refresh(fresh.refresh_token), f"{name}'s newest refresh token is stored"
        token_writes = [r for r in kube.requests if r.method == "PATCH" and "data" in r.body]
        assert 409 in [w.status for w in token_writes], "the second write-back met the first one's version"
        assert [w.status for w in token_writes].count(200) == 2
        assert not any(key.startswith("claude-matrix-bot/refreshing") for key in kube.annotations())


# --- the fake: per-account answers ---------------------------------------------------------------


def _usage(fake: FakeAnthropic, token: str) -> httpx.Response:
    return httpx.get(
        fake.base_url + "/api/oauth/usage",
        headers={"Authorization": f"Bearer {token}", "anthropic-beta": "oauth-2025-04-20", "User-Agent": UA},
    )


def test_the_fake_answers_each_account_its_own_usage(anthropic: FakeAnthropic) -> None:
    reset = datetime(2026, 1, 8, tzinfo=UTC)
    anthropic.set_usage(payload(weekly={"seven_day": (10.0, reset)}))
    anthropic.set_usage(payload(weekly={"seven_day": (70.0, reset)}), account="work")
    work = anthropic.issue_tokens(account="work")
    priv = anthropic.issue_tokens(account="priv")  # no answer of its own: the default one

    assert _usage(anthropic, work.access_token).json()["seven_day"]["utilization"] == 70.0
    assert _usage(anthropic, priv.access_token).json()["seven_day"]["utilization"] == 10.0
    assert anthropic.usage_calls_by_account == {"work": 1, "priv": 1}

    anthropic.fail_next("usage", 503, account="priv")
    assert _usage(anthropic, work.access_token).status_code == 200, "a fault for priv leaves work alone"
    assert _usage(anthropic, priv.access_token).status_code == 503

    anthropic.revoke(account="work")
    assert _usage(anthropic, work.access_token).status_code == 401
    assert _usage(anthropic, priv.access_token).status_code == 200


def test_the_account_label_follows_the_refresh_chain(anthropic: FakeAnthropic) -> None:
    work = anthropic.issue_tokens(account="work")
    with TokenRefresher(anthropic.token_url, UA) as refresher:
        fresh = refresher.refresh(work.refresh_token, datetime.now(UTC))
        assert anthropic.account_of(fresh.access_token) == "work"
        assert anthropic.account_of(fresh.refresh_token) == "work"
        anthropic.revoke_refresh(account="work")
        with pytest.raises(Exception, match="invalid_grant"):
            refresher.refresh(fresh.refresh_token, datetime.now(UTC))


def test_the_fake_keeps_account_labels_across_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "fake.json"
    with FakeAnthropic(state_file=state) as first:
        work = first.issue_tokens(account="work")
        first.set_usage(payload(weekly={"seven_day": (42.0, None)}), account="work")
    with FakeAnthropic(state_file=state) as second:
        assert second.account_of(work.access_token) == "work"
        assert _usage(second, work.access_token).json()["seven_day"]["utilization"] == 42.0
