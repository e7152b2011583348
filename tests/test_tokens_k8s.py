"""SecretTokenStore through the real `kubernetes` client against a loopback API server."""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from claude_matrix_bot.errors import BotError, ConfigError, StorageConflict, StorageError
from claude_matrix_bot.tokens.base import OAuthTokens
from claude_matrix_bot.tokens.k8s import SecretTokenStore
from claude_matrix_bot.tokens.oauth import TokenManager, TokenRefresher
from devstack.fakes.anthropic import FakeAnthropic
from devstack.fakes.kube_apiserver import FakeKubeApiServer, b64, core_v1_api, write_kubeconfig

# Distinctive values, so a leak check can look for them (and their base64 forms) anywhere.
ACCESS = "sk-ant-oat01-ACCESS-7f3c2a9e1d"
REFRESH = "sk-ant-ort01-REFRESH-5b8e0c4f6a"
NEW_ACCESS = "sk-ant-oat01-ROTATED-ACCESS-91ab"
NEW_REFRESH = "sk-ant-ort01-ROTATED-REFRESH-c3d4"
EXPIRES_MS = 1767225600000  # 2026-01-01T00:00:00Z
EXPIRES = datetime(2026, 1, 1, tzinfo=UTC)
ALL_SECRETS = (ACCESS, REFRESH, NEW_ACCESS, NEW_REFRESH)


def secret_fragments() -> list[str]:
    return [*ALL_SECRETS, *(b64(v) for v in ALL_SECRETS), "7f3c2a9e1d", "5b8e0c4f6a"]


@pytest.fixture
def fake() -> Iterator[FakeKubeApiServer]:
    with FakeKubeApiServer(namespace="claude-bot", secret_name="claude-oauth-tokens") as server:
        server.put_secret({"accessToken": ACCESS, "refreshToken": REFRESH, "expiresAt": str(EXPIRES_MS)})
        yield server


@pytest.fixture
def store(fake: FakeKubeApiServer) -> SecretTokenStore:
    return SecretTokenStore(fake.secret_name, fake.namespace, core_v1_api(fake))


def rotated(expires_at: datetime = datetime(2026, 1, 2, 8, 30, tzinfo=UTC)) -> OAuthTokens:
    return OAuthTokens(access_token=NEW_ACCESS, refresh_token=NEW_REFRESH, expires_at=expires_at)


# --- load / save ----------------------------------------------------------------------


def test_load_reads_the_secret_through_the_api(fake: FakeKubeApiServer, store: SecretTokenStore) -> None:
    stored = store.load()

    assert stored.tokens == OAuthTokens(ACCESS, REFRESH, EXPIRES)
    assert stored.tokens.expires_at.tzinfo is not None
    assert stored.version == fake.resource_version()
    [request] = fake.requests
    assert (request.method, request.path) == ("GET", fake.secret_path)
    assert request.authorization == f"Bearer {fake.bearer_token}"


def test_rotation_is_written_back_with_the_read_version_as_precondition(
    fake: FakeKubeApiServer, store: SecretTokenStore
) -> None:
    before = store.load()

    after = store.save(rotated(), expect_version=before.version)

    assert fake.secret_data() == {
        "accessToken": NEW_ACCESS,
        "refreshToken": NEW_REFRESH,
        "expiresAt": str(int(rotated().expires_at.timestamp()) * 1000),
    }
    assert after.version == fake.resource_version()
    assert int(after.version) > int(before.version)
    assert after.tokens == rotated()
    patch = fake.requests[-1]
    assert (patch.method, patch.path) == ("PATCH", fake.secret_path)
    assert patch.content_type == "application/merge-patch+json"
    assert patch.body["metadata"]["resourceVersion"] == before.version
    # The write also ends a refresh claim, if this run held one.
    assert patch.body["metadata"]["annotations"] == {"claude-matrix-bot/refreshing": None}
    assert set(patch.body) == {"metadata", "data"}


def test_next_run_uses_the_rotated_tokens(fake: FakeKubeApiServer, store: SecretTokenStore) -> None:
    store.save(rotated(), expect_version=store.load().version)

    # A new process: a new client, a new store.
    next_run = SecretTokenStore(fake.secret_name, fake.namespace, core_v1_api(fake)).load()

    assert next_run.tokens == rotated()
    assert next_run.version == fake.resource_version()


def test_expiry_is_kept_in_milliseconds_and_reads_back_equal(store: SecretTokenStore) -> None:
    precise = datetime(2026, 3, 4, 5, 6, 7, 891234, tzinfo=UTC)

    saved = store.save(rotated(precise), expect_version=store.load().version)

    assert saved.tokens.expires_at == datetime(2026, 3, 4, 5, 6, 7, 891000, tzinfo=UTC)
    assert store.load().tokens == saved.tokens


def test_save_with_a_stale_version_conflicts_and_leaves_the_secret_unchanged(
    fake: FakeKubeApiServer, store: SecretTokenStore
) -> None:
    seen = store.load()
    fake.another_writer({"accessToken": "winner-access", "refreshToken": "winner-refresh"})
    winner_version = fake.resource_version()

    with pytest.raises(StorageConflict, match="409"):
        store.save(rotated(), expect_version=seen.version)

    assert fake.secret_data()["accessToken"] == "winner-access"
    assert fake.secret_data()["refreshToken"] == "winner-refresh"
    assert fake.resource_version() == winner_version


def test_a_version_is_spent_by_the_write_that_used_it(store: SecretTokenStore) -> None:
    seen = store.load()
    store.save(rotated(), expect_version=seen.version)

    with pytest.raises(StorageConflict):
        store.save(OAuthTokens("again", "again", EXPIRES), expect_version=seen.version)

    assert store.load().tokens == rotated()


def test_save_refuses_an_unconditional_write(fake: FakeKubeApiServer, store: SecretTokenStore) -> None:
    with pytest.raises(StorageError, match="resourceVersion"):
        store.save(rotated(), expect_version="")

    assert fake.requests == []


def test_secret_values_with_a_trailing_newline_are_trimmed(fake: FakeKubeApiServer, store: SecretTokenStore) -> None:
    # `kubectl create secret generic --from-file` keeps the newline of files written by echo.
    fake.put_secret({"accessToken": ACCESS + "\n", "refreshToken": REFRESH + "\n", "expiresAt": f"{EXPIRES_MS}\n"})

    assert store.load().tokens == OAuthTokens(ACCESS, REFRESH, EXPIRES)


# --- least privilege and errors -----------------------------------------------------------


def test_another_secret_is_forbidden_and_the_message_explains_the_role(fake: FakeKubeApiServer) -> None:
    other = SecretTokenStore("someone-elses-secret", fake.namespace, core_v1_api(fake))

    with pytest.raises(StorageError) as load_error:
        other.load()
    with pytest.raises(StorageError) as save_error:
        other.save(rotated(), expect_version="1")

    for error, verb in ((load_error, "get"), (save_error, "patch")):
        message = str(error.value)
        assert "403" in message
        assert verb in message
        assert "Role" in message
        assert "resourceNames [someone-elses-secret]" in message
        assert "claude-bot/someone-elses-secret" in message


def test_the_store_only_ever_requests_its_own_secret(fake: FakeKubeApiServer, store: SecretTokenStore) -> None:
    seen = store.load()
    store.save(rotated(), expect_version=seen.version)
    with pytest.raises(StorageConflict):
        store.save(rotated(), expect_version=seen.version)
    fake.delete_secret()
    with pytest.raises(StorageError):
        store.load()

    assert fake.requested_paths() == {fake.secret_path}
    assert {r.method for r in fake.requests} == {"GET", "PATCH"}


def test_missing_secret_names_it(fake: FakeKubeApiServer, store: SecretTokenStore) -> None:
    fake.delete_secret()

    with pytest.raises(StorageError, match=r"Secret claude-bot/claude-oauth-tokens not found \(404\)") as error:
        store.load()

    assert isinstance(error.value, StorageError)
    assert not isinstance(error.value, StorageConflict)
    assert "accessToken, refreshToken, expiresAt" in str(error.value)


def test_wrong_credentials_are_a_storage_error(fake: FakeKubeApiServer) -> None:
    store = SecretTokenStore(fake.secret_name, fake.namespace, core_v1_api(fake, bearer_token="expired-sa-token"))

    with pytest.raises(StorageError, match="401"):
        store.load()


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_storage_errors_and_do_not_stick(
    fake: FakeKubeApiServer, store: SecretTokenStore, status: int
) -> None:
    fake.fail_next(status)

    with pytest.raises(StorageError, match=str(status)):
        store.load()

    assert store.load().tokens.access_token == ACCESS


def test_a_persistent_server_error_on_save_leaves_the_secret_as_it_was(fake: FakeKubeApiServer) -> None:
    # One 5xx is retried now (issue 21 item 3, tests/test_tokens_k8s_writeback.py); an outage
    # that outlasts the retries is still a StorageError, never a conflict, and writes nothing.
    store = SecretTokenStore(fake.secret_name, fake.namespace, core_v1_api(fake), write_retry_delays=(0.01, 0.01))
    seen = store.load()
    fake.fail_next(503, times=100, method="PATCH")

    with pytest.raises(StorageError, match="503") as error:
        store.save(rotated(), expect_version=seen.version)

    assert not isinstance(error.value, StorageConflict)
    fake.clear_faults()
    assert store.load() == seen
    assert [r.status for r in fake.requests if r.method == "PATCH"] == [503, 503, 503]


def test_unreachable_api_server_is_a_storage_error() -> None:
    with FakeKubeApiServer() as gone:
        api = core_v1_api(gone)
    # The port is closed now: connection refused.
    store = SecretTokenStore(gone.secret_name, gone.namespace, api)

    with pytest.raises(StorageError, match="cannot reach the Kubernetes API"):
        store.load()
    with pytest.raises(StorageError, match="cannot reach the Kubernetes API"):
        store.save(rotated(), expect_version="1")


@pytest.mark.parametrize(
    ("data", "raw", "key"),
    [
        ({"refreshToken": REFRESH, "expiresAt": str(EXPIRES_MS)}, {}, "accessToken"),
        ({"accessToken": ACCESS, "expiresAt": str(EXPIRES_MS)}, {}, "refreshToken"),
        ({"accessToken": ACCESS, "refreshToken": REFRESH}, {}, "expiresAt"),
        ({"refreshToken": REFRESH, "expiresAt": str(EXPIRES_MS)}, {"accessToken": "%%%not-base64%%%"}, "accessToken"),
        ({"accessToken": ACCESS, "expiresAt": str(EXPIRES_MS)}, {"refreshToken": "//79"}, "refreshToken"),  # not UTF-8
        ({"accessToken": ACCESS, "refreshToken": REFRESH, "expiresAt": "tomorrow"}, {}, "expiresAt"),
        ({"accessToken": ACCESS, "refreshToken": REFRESH, "expiresAt": "1.5e12"}, {}, "expiresAt"),
        ({"accessToken": ACCESS, "refreshToken": REFRESH, "expiresAt": "9" * 30}, {}, "expiresAt"),
        ({"accessToken": "  \n", "refreshToken": REFRESH, "expiresAt": str(EXPIRES_MS)}, {}, "accessToken"),
    ],
)
def test_malformed_secret_data_names_the_key_never_the_value(
    fake: FakeKubeApiServer, store: SecretTokenStore, data: dict[str, str], raw: dict[str, str], key: str
) -> None:
    fake.put_secret(data, raw_data=raw)

    with pytest.raises(StorageError) as error:
        store.load()

    message = str(error.value)
    assert key in message
    assert "claude-bot/claude-oauth-tokens" in message
    for fragment in [*secret_fragments(), "tomorrow", "not-base64"]:
        assert fragment not in message


def test_the_fake_honours_a_put_precondition_too(fake: FakeKubeApiServer) -> None:
    # The store patches; the fake also serves replace (PUT) for whoever updates instead.
    api = core_v1_api(fake)
    current = api.read_namespaced_secret(fake.secret_name, fake.namespace)
    fake.another_writer()

    with pytest.raises(client.ApiException) as error:
        api.replace_namespaced_secret(fake.secret_name, fake.namespace, current)
    assert error.value.status == 409

    fresh = api.read_namespaced_secret(fake.secret_name, fake.namespace)
    fresh.data = {"accessToken": b64("x"), "refreshToken": b64("y"), "expiresAt": b64("1")}
    before = fake.resource_version()
    api.replace_namespaced_secret(fake.secret_name, fake.namespace, fresh)
    assert int(fake.resource_version()) > int(before)
    assert fake.secret_data()["accessToken"] == "x"


# --- configuration: kubeconfig fallback and the namespace ---------------------------------


@pytest.fixture
def outside_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    # load_incluster_config() keys off these; CI might itself run in a pod.
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)


@pytest.mark.usefixtures("outside_a_cluster")
def test_kubeconfig_fallback_outside_a_cluster(
    fake: FakeKubeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(fake, tmp_path / "kubeconfig")))

    store = SecretTokenStore(fake.secret_name, fake.namespace, namespace_file=tmp_path / "absent")

    assert store.load().tokens == OAuthTokens(ACCESS, REFRESH, EXPIRES)
    assert fake.requests[-1].authorization == f"Bearer {fake.bearer_token}"


@pytest.mark.usefixtures("outside_a_cluster")
def test_namespace_from_the_service_account_file(
    fake: FakeKubeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(fake, tmp_path / "kubeconfig", namespace="elsewhere")))
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("claude-bot\n")

    store = SecretTokenStore(fake.secret_name, None, namespace_file=namespace_file)

    assert store.namespace == "claude-bot"
    assert store.load().version == fake.resource_version()


@pytest.mark.usefixtures("outside_a_cluster")
def test_namespace_from_the_kubeconfig_context_when_there_is_no_service_account(
    fake: FakeKubeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(fake, tmp_path / "kubeconfig", namespace="claude-bot")))

    store = SecretTokenStore(fake.secret_name, None, namespace_file=tmp_path / "absent")

    assert store.namespace == "claude-bot"
    assert store.load().tokens.access_token == ACCESS


@pytest.mark.usefixtures("outside_a_cluster")
def test_no_namespace_anywhere_names_k8s_namespace(
    fake: FakeKubeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(fake, tmp_path / "kubeconfig")))

    with pytest.raises(ConfigError, match="K8S_NAMESPACE"):
        SecretTokenStore(fake.secret_name, None, namespace_file=tmp_path / "absent")

    assert fake.requests == []


@pytest.mark.usefixtures("outside_a_cluster")
def test_no_credentials_at_all_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))

    with pytest.raises(ConfigError, match="no Kubernetes credentials") as error:
        SecretTokenStore("claude-oauth-tokens", "claude-bot")

    assert "kubeconfig" in str(error.value)


@pytest.mark.parametrize(
    ("name", "namespace", "variable"),
    [
        ("../../configmaps/x", "claude-bot", "K8S_OAUTH_SECRET_NAME"),
        ("Tokens", "claude-bot", "K8S_OAUTH_SECRET_NAME"),
        ("claude-oauth-tokens", "kube-system/secrets", "K8S_NAMESPACE"),
    ],
)
def test_names_that_would_address_another_path_are_refused(
    fake: FakeKubeApiServer, name: str, namespace: str, variable: str
) -> None:
    with pytest.raises(ConfigError, match=variable):
        SecretTokenStore(name, namespace, core_v1_api(fake))

    assert fake.requests == []


# --- no secret anywhere ------------------------------------------------------------------


def test_no_secret_value_in_exceptions_logs_or_output(
    fake: FakeKubeApiServer,
    store: SecretTokenStore,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger
    for name in ("kubernetes", "urllib3", "claude_matrix_bot"):
        caplog.set_level(logging.DEBUG, logger=name)
    failures: list[BaseException] = []

    def attempt(action: object) -> None:
        try:
            action()  # type: ignore[operator]
        except BotError as exc:
            failures.append(exc)

    seen = store.load()
    saved = store.save(rotated(), expect_version=seen.version)
    attempt(lambda: store.save(rotated(), expect_version=seen.version))  # 409
    fake.fail_next(500)
    attempt(store.load)
    fake.fail_next(503, times=100, method="PATCH")  # outlasts the write-back's retries
    store.write_retry_delays = (0.01,)
    # (Other values than the Secret holds: the same ones would read as a write that landed.)
    attempt(lambda: store.save(OAuthTokens(ACCESS, REFRESH, EXPIRES), expect_version=saved.version))
    fake.clear_faults()
    attempt(SecretTokenStore("other", fake.namespace, core_v1_api(fake)).load)  # 403
    fake.put_secret({"accessToken": ACCESS, "refreshToken": REFRESH, "expiresAt": "soon-ish"})
    attempt(store.load)
    fake.delete_secret()
    attempt(store.load)  # 404

    assert len(failures) == 6
    rendered = [
        "".join(traceback.format_exception(exc)) + repr(exc) + str(exc.__context__) + str(exc.__cause__)
        for exc in failures
    ]
    # from None: nothing of the client's ApiException (which prints the body) hangs off ours.
    assert all(exc.__suppress_context__ for exc in failures)
    texts = [*rendered, caplog.text, *capfd.readouterr(), repr(store), repr(seen), repr(saved)]
    for text in texts:
        for fragment in secret_fragments():
            assert fragment not in text
    # The log says what happened, without the values.
    assert "wrote OAuth tokens to Secret claude-bot/claude-oauth-tokens" in caplog.text


def test_expiring_soon_is_computed_from_the_stored_milliseconds(store: SecretTokenStore) -> None:
    # What the TokenManager compares with its leeway: an aware UTC instant.
    soon = datetime.now(UTC) + timedelta(minutes=3)
    store.save(OAuthTokens(ACCESS, REFRESH, soon), expect_version=store.load().version)

    loaded = store.load().tokens.expires_at

    assert loaded.utcoffset() == timedelta(0)
    assert abs(loaded - soon) < timedelta(milliseconds=1)


# --- two pods, one Secret: TokenManager on top of SecretTokenStore --------------------------

UA = "claude-code/2.0.55"
LEEWAY = 600
CLAIM = "claude-matrix-bot/refreshing"


class _PausingSecretStore(SecretTokenStore):
    """Waits at a barrier after each of its first two reads of the Secret: after the load,
    so both runs have seen the expiring tokens, and after the refresh claim's read, so both
    claim the same resourceVersion and one of them must get the 409. (Without the second
    pause the loser might read the winner's claim first and wait without a 409: which one
    happened depended on how fast the fake answered.)"""

    def __init__(self, fake: FakeKubeApiServer, barrier: threading.Barrier) -> None:
        super().__init__(
            fake.secret_name,
            fake.namespace,
            core_v1_api(fake),
            claim_poll=timedelta(milliseconds=20),
        )
        self.barrier = barrier
        self.reads = 0

    def _read(self) -> tuple[Any, str]:
        answer = super()._read()
        self.reads += 1
        if self.reads <= 2:
            self.barrier.wait(timeout=10)
        return answer


def test_two_managers_on_one_secret_refresh_once_and_share_the_winners_tokens(fake: FakeKubeApiServer) -> None:
    with FakeAnthropic(expires_in=28800) as anthropic:
        issued = anthropic.issue_tokens(expires_in=120)  # inside the leeway: both runs want to refresh
        fake.put_secret(
            {
                "accessToken": issued.access_token,
                "refreshToken": issued.refresh_token,
                "expiresAt": str(issued.expires_at_ms),
            }
        )
        fake.clear_requests()
        now = datetime.now(UTC)
        barrier = threading.Barrier(2)
        results: list[OAuthTokens] = []
        managers: list[TokenManager] = []
        errors: list[BaseException] = []

        def run() -> None:
            with TokenRefresher(anthropic.token_url, UA, timeout=5.0) as refresher:
                manager = TokenManager(_PausingSecretStore(fake, barrier), refresher, LEEWAY)
                managers.append(manager)
                try:
                    results.append(manager.current(now))
                except BaseException as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        assert errors == []
        assert len(results) == 2
        # The loser uses the winner's tokens (the winner holds its expiry to the microsecond,
        # the Secret to the millisecond).
        assert results[0].secrets() == results[1].secrets()
        assert abs(results[0].expires_at - results[1].expires_at) < timedelta(milliseconds=1)
        assert anthropic.refresh_calls == 1  # one refresh token spent, once
        assert anthropic.invalid_grants == 0
        assert sorted(m.refreshes for m in managers) == [0, 1]
        winner = results[0]
        assert anthropic.is_valid_access(winner.access_token)
        assert anthropic.is_unused_refresh(winner.refresh_token)
        assert fake.secret_data()["refreshToken"] == winner.refresh_token
        assert fake.secret_data()["accessToken"] == winner.access_token
        # The loser's claim lost the compare-and-swap: 409, then it waited for the winner.
        patches = [r for r in fake.requests if r.method == "PATCH"]
        assert 409 in [p.status for p in patches]
        token_writes = [p for p in patches if "data" in p.body and p.status == 200]
        assert len(token_writes) == 1
        assert CLAIM not in fake.annotations()
        assert fake.requested_paths() == {fake.secret_path}


def test_a_claim_left_by_a_crashed_run_expires(fake: FakeKubeApiServer) -> None:
    store = SecretTokenStore(
        fake.secret_name,
        fake.namespace,
        core_v1_api(fake),
        claim_ttl=timedelta(seconds=90),
        claim_wait=timedelta(0),
    )
    api = core_v1_api(fake)
    stale = datetime.now(UTC) - timedelta(seconds=1)
    live = datetime.now(UTC) + timedelta(minutes=5)

    def claim(until: datetime) -> None:
        api.patch_namespaced_secret(
            fake.secret_name,
            fake.namespace,
            {"metadata": {"annotations": {CLAIM: f"crashed-pod/1/x {until:%Y-%m-%dT%H:%M:%SZ}"}}},
            _content_type="application/merge-patch+json",
        )

    claim(live)
    with pytest.raises(StorageError, match="another run"), store.refresh_lock():
        pass  # never entered: the live claim is held by someone else

    claim(stale)
    with store.refresh_lock():
        assert not fake.annotations()[CLAIM].startswith("crashed-pod/")
    # Released on the way out even without a save().
    assert CLAIM not in fake.annotations()
