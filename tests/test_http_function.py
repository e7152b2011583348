"""The HTTP entry (`function/main.py`, target `watch`) through functions-framework's
own test client: plain POSTs, PingSource CloudEvents in binary and structured mode,
status, and the hostile or mistimed requests it must refuse (issues 2, 5 and 7)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from functions_framework import create_app

from claude_matrix_bot.store.file import DirectoryStore
from claude_matrix_bot.store.lease import acquire_lease
from devstack.fakes.anthropic import FakeAnthropic
from tests.helpers import REPO, assert_no_secrets, bot_env, issued_secrets, payload

NOW = datetime(2031, 3, 3, 12, 0, tzinfo=UTC)
PING_HEADERS = {
    "ce-specversion": "1.0",
    "ce-type": "dev.knative.sources.ping",
    "ce-source": "/apis/v1/namespaces/claude-matrix-bot/pingsources/claude-matrix-bot",
    "ce-id": "5f3b2a8e-1c4d-4e6f-9a7b-0c1d2e3f4a5b",
    "ce-time": "2031-03-03T12:00:00Z",
}


@pytest.fixture
def client(tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in bot_env(tmp_path, anthropic.base_url, anthropic.token_url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("NOW_OVERRIDE", NOW.isoformat())
    anthropic.set_usage(
        payload(five_hour=(12.0, NOW + timedelta(hours=2)), weekly={"seven_day": (40.0, NOW + timedelta(days=3))})
    )
    app = create_app(target="watch", source=str(REPO / "function" / "main.py"))
    return app.test_client()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def _json(response: Any) -> dict[str, Any]:
    doc = json.loads(response.get_data(as_text=True))
    assert isinstance(doc, dict)
    return doc


def _advance(monkeypatch: pytest.MonkeyPatch, minutes: int) -> None:
    monkeypatch.setenv("NOW_OVERRIDE", (NOW + timedelta(minutes=minutes)).isoformat())


def test_plain_post_runs_a_cycle(client: Any, anthropic: FakeAnthropic, capsys: pytest.CaptureFixture[str]) -> None:
    response = client.post("/")
    assert response.status_code == 200
    body = _json(response)
    assert body["status"] == "ok" and body["new_alerts"] == 1 and body["delivered"] == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [line["kind"] for line in lines] == ["armed"]
    assert anthropic.usage_calls == 1


@pytest.mark.parametrize(
    ("content_type", "data"),
    [("application/x-www-form-urlencoded", b"{}"), ("text/plain", b"tick"), ("application/json", b'{"any": 1}')],
    ids=["curl-d", "text", "json"],
)
def test_a_plain_post_with_a_body_runs_a_cycle(client: Any, content_type: str, data: bytes) -> None:
    """`curl -X POST -d '{}' URL` (curl's default form type) is a plain trigger too: its body is not read."""
    response = client.post("/", data=data, headers={"Content-Type": content_type})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert _json(response)["status"] == "ok"


def test_binary_pingsource_event(client: Any) -> None:
    response = client.post("/", headers={**PING_HEADERS, "Content-Type": "application/json"}, data=b"{}")
    assert response.status_code == 200
    body = _json(response)
    assert body["event"]["type"] == "dev.knative.sources.ping"


def test_structured_cloudevent(client: Any) -> None:
    event = {"specversion": "1.0", "type": "dev.knative.sources.ping", "source": "/ping", "id": "42", "data": {}}
    response = client.post("/", data=json.dumps(event), content_type="application/cloudevents+json")
    assert response.status_code == 200
    assert _json(response)["event"]["id"] == "42"


@pytest.mark.parametrize(
    ("headers", "data", "content_type"),
    [
        ({"ce-specversion": "1.0", "ce-type": "dev.knative.sources.ping"}, b"{}", "application/json"),
        ({**PING_HEADERS, "ce-specversion": "9.9"}, b"{}", "application/json"),
        ({}, b"{not json", "application/cloudevents+json"),
        ({}, b'["a list"]', "application/cloudevents+json"),
        ({}, b'{"specversion": "1.0", "type": "x"}', "application/cloudevents+json"),
    ],
    ids=[
        "binary-missing-attributes",
        "binary-bad-specversion",
        "structured-garbage",
        "structured-list",
        "structured-missing-attributes",
    ],
)
def test_malformed_cloudevents_are_400_and_change_nothing(
    client: Any, anthropic: FakeAnthropic, state_dir: Path, headers: dict[str, str], data: bytes, content_type: str
) -> None:
    response = client.post("/", headers=headers, data=data, content_type=content_type)
    assert response.status_code == 400
    assert "error" in _json(response)
    assert anthropic.usage_calls == 0
    assert not (state_dir / "state.json").exists()


def test_get_answers_status_without_secrets(client: Any, anthropic: FakeAnthropic) -> None:
    assert _json(client.get("/"))["armed"] is False
    assert client.post("/").status_code == 200
    response = client.get("/")
    assert response.status_code == 200
    body = _json(response)
    assert body["buckets"]["seven_day"]["utilization"] == 40.0
    assert_no_secrets(issued_secrets(anthropic), response.get_data(as_text=True))


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(client: Any, method: str) -> None:
    response = client.open("/", method=method)
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]


def test_too_soon_is_429_without_calling_the_api(
    client: Any, anthropic: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.post("/").status_code == 200
    _advance(monkeypatch, 0)
    response = client.post("/")
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert anthropic.usage_calls == 1
    _advance(monkeypatch, 5)
    assert client.post("/").status_code == 200
    assert anthropic.usage_calls == 2


def test_held_lease_is_409(client: Any, anthropic: FakeAnthropic, state_dir: Path) -> None:
    acquire_lease(DirectoryStore(state_dir), holder="another-cycle", now=NOW, ttl_sec=240)
    response = client.post("/")
    assert response.status_code == 409
    assert _json(response)["status"] == "busy"
    assert anthropic.usage_calls == 0


def test_huge_body_is_413(client: Any, anthropic: FakeAnthropic) -> None:
    response = client.post("/", data=b"x" * (2 * 1024 * 1024), content_type="application/json")
    assert response.status_code == 413
    assert anthropic.usage_calls == 0


def test_unexpected_content_type_is_415(client: Any, anthropic: FakeAnthropic) -> None:
    response = client.post("/", data=b"<xml/>", content_type="application/xml")
    assert response.status_code == 415
    assert anthropic.usage_calls == 0


def test_upstream_failure_is_502_with_json(client: Any, anthropic: FakeAnthropic) -> None:
    anthropic.fail_next("usage", 503)
    response = client.post("/")
    assert response.status_code == 502
    body = _json(response)
    assert body["status"] == "failed" and body["failure"] == "upstream"


def test_bad_configuration_is_500_naming_the_variable(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEEKLY_THRESHOLDS", "lots")
    response = client.post("/")
    assert response.status_code == 500
    assert "WEEKLY_THRESHOLDS" in _json(response)["error"]


class TestTriggerToken:
    TOKEN = "trigger-secret-0123456789abcdef"

    @pytest.fixture(autouse=True)
    def _token(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TRIGGER_TOKEN", self.TOKEN)

    def test_missing_token_is_401(self, client: Any, anthropic: FakeAnthropic) -> None:
        response = client.post("/")
        assert response.status_code == 401
        assert anthropic.usage_calls == 0

    def test_wrong_token_is_401(self, client: Any, anthropic: FakeAnthropic) -> None:
        response = client.post("/", headers={"Authorization": "Bearer nope"})
        assert response.status_code == 401
        assert self.TOKEN not in response.get_data(as_text=True)
        assert anthropic.usage_calls == 0

    def test_bearer_token_is_accepted(self, client: Any) -> None:
        assert client.post("/", headers={"Authorization": f"Bearer {self.TOKEN}"}).status_code == 200

    def test_cloudevent_extension_is_accepted(self, client: Any) -> None:
        headers = {**PING_HEADERS, "ce-triggertoken": self.TOKEN}
        assert client.post("/", headers=headers, data=b"{}", content_type="application/json").status_code == 200

    def test_structured_attribute_is_accepted(self, client: Any) -> None:
        event = {"specversion": "1.0", "type": "t", "source": "/s", "id": "1", "triggertoken": self.TOKEN}
        response = client.post("/", data=json.dumps(event), content_type="application/cloudevents+json")
        assert response.status_code == 200

    def test_status_needs_the_token_and_never_shows_it(self, client: Any) -> None:
        client.post("/", headers={"Authorization": f"Bearer {self.TOKEN}"})  # something to show
        response = client.get("/", headers={"Authorization": f"Bearer {self.TOKEN}"})
        assert response.status_code == 200
        assert "seven_day" in response.get_data(as_text=True)
        assert self.TOKEN not in response.get_data(as_text=True)

    @pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"])
    @pytest.mark.parametrize("path", ["/", "/status", "/anything/else?x=1"])
    def test_every_method_and_path_needs_the_token(
        self, client: Any, anthropic: FakeAnthropic, method: str, path: str
    ) -> None:
        # Issue 21 item 4: GET and HEAD used to serve the whole status to anyone.
        client.post("/", headers={"Authorization": f"Bearer {self.TOKEN}"})
        calls = anthropic.usage_calls
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789abcdef"}):
            response = client.open(path, method=method, headers=headers)
            assert response.status_code == 401, (method, path)
            if method != "HEAD":
                assert _json(response) == {"error": "missing or wrong trigger token"}
            text = response.get_data(as_text=True)
            for leak in ("seven_day", "armed", "utilization", "last_error", self.TOKEN):
                assert leak not in text
        assert anthropic.usage_calls == calls

    @pytest.mark.parametrize(
        ("name", "value"),
        [("TRIGGER_TOKEN", "short-token"), ("HEALTH_FAILURES", "0"), ("LOG_FORMAT", "xml")],
    )
    def test_a_configuration_error_reaches_only_an_authenticated_caller(
        self, client: Any, monkeypatch: pytest.MonkeyPatch, name: str, value: str
    ) -> None:
        # Checked before any setting is read: not even a short token's length reaches a stranger.
        monkeypatch.setenv(name, value)
        token = value if name == "TRIGGER_TOKEN" else self.TOKEN
        for method in ("GET", "HEAD", "POST"):
            refused = client.open("/", method=method)
            assert refused.status_code == 401, method
            assert name not in refused.get_data(as_text=True)
            assert "characters" not in refused.get_data(as_text=True)
        answered = client.get("/", headers={"Authorization": f"Bearer {token}"})
        assert answered.status_code == 500
        assert name in _json(answered)["error"]
