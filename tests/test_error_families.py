"""Errors carry what the shell needs (issue 13): the families' class attributes, the
install hint of a missing extra, and a token Secret refused by RBAC reported as the
storage failure it is, through the real HTTP handler and the fake Kubernetes API."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from claude_matrix_bot import errors
from claude_matrix_bot.hints import explain
from claude_matrix_bot.http import handle
from claude_matrix_bot.store import open_store
from devstack.fakes.anthropic import FakeAnthropic
from devstack.fakes.kube_apiserver import FakeKubeApiServer, write_kubeconfig
from tests.helpers import bot_env

# docs/design.md §3 (exit codes) and the HTTP trigger's table in http.py.
FAMILIES = [
    (errors.ConfigError, "config", 2, 500),
    (errors.UpstreamError, "upstream", 1, 502),
    (errors.InvalidGrant, "upstream", 1, 502),
    (errors.StorageError, "storage", 1, 500),
    (errors.CorruptState, "storage", 1, 500),
    (errors.LeaseHeld, "busy", 0, 409),
    (errors.DeliveryError, "delivery", 1, 503),
]


@pytest.mark.parametrize(("family", "failure", "exit_code", "http_status"), FAMILIES)
def test_each_family_says_how_the_shell_reports_it(
    family: type[errors.BotError], failure: str, exit_code: int, http_status: int
) -> None:
    error = family("x")
    assert isinstance(error, errors.BotError)
    assert (error.failure, error.exit_code, error.http_status) == (failure, exit_code, http_status)


def test_corrupt_state_is_still_a_value_error() -> None:
    assert isinstance(errors.CorruptState("x"), ValueError)


@pytest.mark.parametrize(("url", "module", "extra"), [("s3://b/p", "boto3", "s3"), ("gs://b/p", "google.cloud", "gcs")])
def test_a_missing_extra_is_an_import_error_with_the_install_hint(
    url: str, module: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes `import` raise ImportError, as on an install without the extra.
    monkeypatch.setitem(sys.modules, module, None)  # type: ignore[arg-type]
    for backend in ("claude_matrix_bot.store.s3", "claude_matrix_bot.store.gcs"):
        monkeypatch.delitem(sys.modules, backend, raising=False)
    with pytest.raises(ImportError, match=rf"pip install 'claude-matrix-bot\[{extra}\]'") as caught:
        open_store(url)
    assert isinstance(caught.value, errors.ConfigError)


@pytest.fixture
def kube() -> Iterator[FakeKubeApiServer]:
    with FakeKubeApiServer(namespace="claude-bot", secret_name="claude-oauth-tokens") as server:
        server.put_secret({"accessToken": "a", "refreshToken": "r", "expiresAt": "1767225600000"})
        yield server


def test_a_token_secret_refused_by_rbac_is_a_storage_failure_not_upstream(
    tmp_path: Path, kube: FakeKubeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeAnthropic() as anthropic:
        env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, NOW_OVERRIDE="2026-01-01T08:00:00Z")
        del env["LOCAL_MODE"]
        # The Role names only claude-oauth-tokens: the fake answers 403 for any other Secret.
        env.update(K8S_OAUTH_SECRET_NAME="someone-elses-secret", K8S_NAMESPACE=kube.namespace)
        monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(kube, tmp_path / "kubeconfig")))

        response = handle("POST", {}, b"", env)

        assert anthropic.usage_calls == 0
    assert response.status == 500, response.body
    assert response.body["failure"] == "storage"
    assert "403" in response.body["error"] and "Role" in response.body["error"]
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert state["health"]["consecutive_failures"] == 1, "still counted, so the room hears of it"
    assert datetime(2026, 1, 1, 8, tzinfo=UTC).isoformat()[:10] in state["health"]["last_attempt_at"]


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        (errors.InvalidGrant("invalid_grant", status=400), "re-bootstrap"),
        (
            errors.TokenRefreshError("token endpoint refused the refresh (400, OAuth error x)", status=400),
            "re-bootstrap",
        ),
        # A passing outage keeps the refresh token: re-bootstrapping would be wasted work.
        (errors.TokenRefreshError("token endpoint failed (503, …), kept", status=503), "nothing to do unless"),
        (errors.TokenRefreshError("token endpoint timed out (ReadTimeout)"), "nothing to do unless"),
        # The CDN in front of the token endpoint refuses foreign agents (docs/design.md §2).
        (
            errors.TokenRefreshError("refused (403, …); ANTHROPIC_USER_AGENT is 'curl/8'", status=403),
            "ANTHROPIC_USER_AGENT",
        ),
    ],
    ids=["invalid-grant", "refused", "5xx", "timeout", "cdn-agent"],
)
def test_a_failed_refresh_says_what_to_do_for_its_cause(error: errors.TokenRefreshError, hint: str) -> None:
    assert hint in explain(error, str)[1]
