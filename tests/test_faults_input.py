"""Fault catalogue, input rows (issue 7): hostile HTTP requests to the function and bad
environment values, through the real entry points.

tests/test_http_function.py already proves huge bodies (413), wrong content types (415),
malformed CloudEvents (400) and missing/wrong TRIGGER_TOKEN (401) through the test
client; here: what needs a real socket (absurd Content-Length, chunked floods, a body
sent slowly, raw header tricks), more token and encoding edge cases, and every
environment variable's bad value (exit 2 / HTTP 500 naming it, before any I/O).
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from functions_framework import create_app

from claude_matrix_bot import cli
from devstack.fakes.anthropic import FakeAnthropic
from tests.helpers import REPO, bot_env

TOKEN = "input-trigger-token-5b7c9e"


# --- raw sockets against a real functions-framework server -----------------------------------


def _raw(
    url: str, request: bytes, *, pause: float = 0.0, chunks: int = 1, timeout: float = 30
) -> tuple[int, dict[str, str], bytes]:
    """Send `request` (optionally in slow pieces) and read one HTTP answer.

    The answer is parsed by `http.client` (Content-Length, chunked, or until close):
    a hand-made reader that took whatever arrived with the head made the 413 test
    flaky, because the head and the body may come in separate segments."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        size = max(1, len(request) // chunks)
        for offset in range(0, len(request), size):
            sock.sendall(request[offset : offset + size])
            if pause:
                time.sleep(pause)
        answer = http.client.HTTPResponse(sock, method="POST")
        answer.begin()
        body = answer.read()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, body


def test_absurd_content_length_is_refused_before_reading(
    function_server: tuple[str, Path],
    anthropic: FakeAnthropic,
) -> None:
    url, _ = function_server
    request = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999999999\r\n\r\n{}"
    )
    # Answered at once, without waiting for (or buffering) the announced body.
    status, headers, body = _raw(url, request, timeout=5)
    assert status == 413
    assert b"larger than" in body
    # Delimited: the client knows where the answer ends without waiting for a close.
    assert headers["content-length"] == str(len(body))
    assert anthropic.usage_calls == 0


EIGHT_MIB = 8 * 1024 * 1024


def test_a_large_body_from_urllib_gets_its_413(function_server: tuple[str, Path], anthropic: FakeAnthropic) -> None:
    """urllib sends the whole body before it reads: the answer must survive that."""
    url, _ = function_server
    request = urllib.request.Request(  # noqa: S310 (a loopback URL)
        url, data=b"x" * EIGHT_MIB, method="POST", headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)  # noqa: S310 (a loopback URL)
    assert refused.value.code == 413
    assert b"larger than" in refused.value.read()
    assert anthropic.usage_calls == 0


def test_a_large_body_from_httpx_gets_its_413(function_server: tuple[str, Path], anthropic: FakeAnthropic) -> None:
    url, _ = function_server
    response = httpx.post(url, content=b"x" * EIGHT_MIB, headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 413
    assert "larger than" in response.json()["error"]
    assert anthropic.usage_calls == 0
    assert httpx.get(url, timeout=10).status_code == 200, "the server still answers"


def test_chunked_flood_without_length_is_413(function_server: tuple[str, Path], anthropic: FakeAnthropic) -> None:
    url, _ = function_server

    def chunks() -> Any:
        for _ in range(40):
            yield b"x" * 4096

    response = httpx.post(url, content=chunks(), headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 413
    assert anthropic.usage_calls == 0


def test_a_slow_body_blocks_nobody_and_is_served_when_complete(
    function_server: tuple[str, Path],
    anthropic: FakeAnthropic,
) -> None:
    url, _ = function_server
    body = b'{"ping": "slowly"}'
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    parts = urlsplit(url)
    # The body stalls half sent while status is asked: connected first, so a server that
    # waited for it would be waiting now (a sleep-timed sender proved nothing when late).
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as slow:
        slow.sendall(head + body[:5])
        assert httpx.get(url, timeout=10).status_code == 200, "status answers while a body trickles in"
        slow.sendall(body[5:])
        answer = http.client.HTTPResponse(slow, method="POST")
        answer.begin()
        answer.read()
    assert answer.status == 200


def test_header_tricks_do_not_reach_the_response(function_server: tuple[str, Path]) -> None:
    url, _ = function_server
    request = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"ce-specversion: 1.0\r\nce-type: t\r\nce-source: /s\r\n"
        b"ce-id: </script>%0d%0aSet-Cookie: pwned=1\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
    status, headers, body = _raw(url, request)
    assert status == 200
    assert "set-cookie" not in headers
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["event"]["id"] == "</script>%0d%0aSet-Cookie: pwned=1", "echoed as JSON data only"


# --- the test client: encodings and token edge cases ---------------------------------------------


@pytest.fixture
def client(tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in bot_env(tmp_path, anthropic.base_url, anthropic.token_url, MIN_INTERVAL_SEC="0").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TRIGGER_TOKEN", TOKEN)
    app = create_app(target="watch", source=str(REPO / "function" / "main.py"))  # type: ignore[no-untyped-call]
    return app.test_client()


@pytest.mark.parametrize(
    "authorization",
    [
        f"Basic {TOKEN}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Bearer{TOKEN}",
        f"Bearer {TOKEN.upper()}",
        "Bearer ",
        "Bearer \x00",
    ],
    ids=["basic-scheme", "suffix", "truncated", "no-space", "other-case", "empty", "nul"],
)
def test_near_miss_tokens_are_401(client: Any, anthropic: FakeAnthropic, authorization: str) -> None:
    response = client.post("/", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert TOKEN not in response.get_data(as_text=True)
    assert anthropic.usage_calls == 0


def test_token_in_a_query_string_is_not_accepted(client: Any, anthropic: FakeAnthropic) -> None:
    assert client.post(f"/?token={TOKEN}").status_code == 401
    assert anthropic.usage_calls == 0


def test_scheme_case_and_padding_are_tolerated(client: Any) -> None:
    assert client.post("/", headers={"Authorization": f"bearer   {TOKEN}  "}).status_code == 200


@pytest.mark.parametrize(
    ("content_type", "data", "status"),
    [
        ("application/cloudevents+json", b"\xff\xfe\x00{", 400),
        ("application/cloudevents+json", b'{"specversion": 1, "type": [], "source": {}, "id": null}', 400),
        ("application/cloudevents+json", b"[" * 100_000 + b"]" * 100_000, 413),
        ("application/cloudevents+json", b"[" * 30_000 + b"]" * 30_000, 400),
        ("multipart/form-data; boundary=x", b"--x\r\n\r\nhello\r\n--x--", 415),
        ("application/json; charset=latin-1", b'{"caf\xe9": 1}', 200),
        ("text/plain", b"\xff\xfe not utf-8 at all", 200),
    ],
    ids=[
        "ce-not-utf8",
        "ce-wrong-types",
        "ce-deep-nesting-too-big",
        "ce-deep-nesting",
        "multipart",
        "latin1",
        "binary",
    ],
)
def test_odd_bodies(client: Any, anthropic: FakeAnthropic, content_type: str, data: bytes, status: int) -> None:
    response = client.post("/", data=data, headers={"Content-Type": content_type, "Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("application/json")
    # A plain trigger's body is never interpreted: it only starts a cycle.
    assert anthropic.usage_calls == (1 if status == 200 else 0)


# --- bad environment values: one message naming every offender, before any I/O ------------------

BAD_VALUES: list[tuple[str, str, dict[str, str]]] = [
    ("MATRIX_ROOM_ID", "general", {}),
    ("MATRIX_ROOM_ID", "", {"ALERT_SINK": "matrix"}),  # required for the Matrix sink
    ("LOCAL_MODE", "perhaps", {}),
    ("K8S_OAUTH_SECRET_NAME", "", {"LOCAL_MODE": "0"}),  # required without LOCAL_MODE
    ("OAUTH_REFRESH_LEEWAY_SEC", "-5", {}),
    ("WEEKLY_THRESHOLDS", "0,150", {}),
    ("WEEKLY_THRESHOLDS", ",,", {}),
    ("STATE_URL", "ftp://example.org/state", {}),
    ("STATE_URL", "file://relative/dir", {}),
    ("STATE_URL", "s3://", {}),
    ("FORECAST_ENABLED", "sometimes", {}),
    ("FORECAST_WINDOW_SEC", "30", {}),
    ("FORECAST_MIN_SAMPLES", "1", {}),
    ("FORECAST_MIN_SPAN_SEC", "0", {}),
    ("FORECAST_MIN_SPAN_SEC", "99999", {}),  # longer than the window: no forecast could fire
    ("ALERT_SINK", "email", {}),
    ("ANTHROPIC_BASE_URL", "api.anthropic.com", {}),
    ("ANTHROPIC_TOKEN_URL", "file:///etc/passwd", {}),
    ("NOW_OVERRIDE", "2026-01-01T00:00:00", {}),
    ("NOW_OVERRIDE", "tomorrow", {}),
    ("RESET_SHIFT_TOLERANCE_SEC", "1e3", {}),
    ("HEALTH_FAILURES", "0", {}),
    ("ANTHROPIC_USER_AGENT", "claude-code/2.0\r\nX-Injected: 1", {}),
    ("MIN_INTERVAL_SEC", "soon", {}),
    ("MATRIX_TRUSTED_DEVICES", "@alice:example.org", {}),
    ("MATRIX_TRUSTED_DEVICES", "alice:DEVICE:key", {}),
    ("TRIGGER_TOKEN", "too-short", {}),
    ("K8S_OAUTH_SECRET_NAME", "../../configmaps/x", {"LOCAL_MODE": "0"}),
    ("K8S_NAMESPACE", "Claude_Bot", {}),
    ("LOG_FORMAT", "xml", {}),
    # Seen only on disk, but still before the lease, the state or the API (issue 12).
    ("MATRIX_CREDS_DIR", "/nonexistent/matrix-bot", {"ALERT_SINK": "matrix", "MATRIX_ROOM_ID": "!r:example.org"}),
]


@pytest.mark.parametrize(("name", "value", "extra"), BAD_VALUES, ids=[f"{n}={v!r}"[:60] for n, v, _ in BAD_VALUES])
def test_bad_value_stops_both_entry_points_before_any_io(
    tmp_path: Path,
    anthropic: FakeAnthropic,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    extra: dict[str, str],
) -> None:
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, **extra)
    env[name] = value
    for key in (*env, "TRIGGER_TOKEN", "K8S_OAUTH_SECRET_NAME", "MATRIX_ROOM_ID"):
        monkeypatch.delenv(key, raising=False)
    for key, val in env.items():
        monkeypatch.setenv(key, val)

    assert cli.main(["run"]) == 2
    err = capsys.readouterr().err
    assert f"{name}:" in err and "Traceback" not in err

    app = create_app(target="watch", source=str(REPO / "function" / "main.py"))  # type: ignore[no-untyped-call]
    # A bad TRIGGER_TOKEN is still the token: only its holder hears about it (issue 21 item 4).
    headers = {"Authorization": f"Bearer {value}"} if name == "TRIGGER_TOKEN" else {}
    response = app.test_client().post("/", headers=headers)
    assert response.status_code == 500
    assert name in response.get_json()["error"]

    assert anthropic.requests == [], "no request before the configuration is valid"
    assert not (tmp_path / "state").exists(), "no state directory touched"
    assert not (tmp_path / "tokens").exists()


def test_every_bad_variable_is_named_in_one_message(tmp_path: Path, anthropic: FakeAnthropic) -> None:
    from tests.helpers import run_cli

    env = {name: value for name, value, extra in BAD_VALUES if not extra and value}
    result = run_cli(env, "run")
    assert result.code == 2
    for name in env:
        assert f"{name}:" in result.stderr, name
    assert result.stdout == ""
    assert anthropic.requests == []


def test_an_unresolvable_namespace_stops_the_run_before_the_lease(
    tmp_path: Path, anthropic: FakeAnthropic, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No K8S_NAMESPACE, no ServiceAccount and no usable kubeconfig: exit 2, nothing written."""
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, LOCAL_MODE="0", K8S_OAUTH_SECRET_NAME="tokens")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("K8S_NAMESPACE", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    assert cli.main(["run"]) == 2
    assert "no Kubernetes credentials" in caplog.text
    assert not (tmp_path / "state").exists(), "no lease, no state written"
    assert anthropic.requests == []


# --- refusal order: authentication, then size, then shape (docs/design.md §5) -------------------------


@pytest.mark.parametrize(
    ("content_type", "data", "headers"),
    [
        ("application/x-www-form-urlencoded", b"a=1&b=2", {}),
        ("multipart/form-data; boundary=x", b"--x\r\n\r\nhello\r\n--x--", {}),
        ("application/json", b"x" * (128 * 1024), {}),
        ("application/cloudevents+json", b"{not json", {}),
        ("application/cloudevents+json", json.dumps({"specversion": "1.0", "type": "t"}).encode(), {}),
        ("application/json", b"{}", {"ce-specversion": "9.9", "ce-type": "t"}),
    ],
    ids=["form", "multipart", "too-large", "ce-garbage", "ce-missing-attributes", "ce-bad-specversion"],
)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-0123456789"], ids=["no-token", "wrong-token"])
def test_an_unauthenticated_caller_learns_nothing_but_401(
    client: Any,
    anthropic: FakeAnthropic,
    content_type: str,
    data: bytes,
    headers: dict[str, str],
    authorization: str | None,
) -> None:
    sent = {**headers, "Content-Type": content_type}
    if authorization:
        sent["Authorization"] = authorization
    response = client.post("/", data=data, headers=sent)
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.get_json() == {"error": "missing or wrong trigger token"}
    assert anthropic.usage_calls == 0


def test_an_authenticated_caller_then_hears_size_then_shape(client: Any, anthropic: FakeAnthropic) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    big = client.post("/", data=b"x" * (128 * 1024), headers={**auth, "Content-Type": "multipart/form-data; b=x"})
    assert big.status_code == 413, "size before shape"
    assert (
        client.post(
            "/", data=b"--x\r\n\r\nhi\r\n--x--", headers={**auth, "Content-Type": "multipart/form-data; boundary=x"}
        ).status_code
        == 415
    )
    assert (
        client.post("/", data=b"{", headers={**auth, "Content-Type": "application/cloudevents+json"}).status_code == 400
    )
    assert anthropic.usage_calls == 0


def test_a_structured_event_may_carry_the_token_in_its_extension(client: Any, anthropic: FakeAnthropic) -> None:
    event = {"specversion": "1.0", "type": "dev.knative.sources.ping", "source": "/ping", "id": "7"}
    wrong = client.post(
        "/",
        data=json.dumps({**event, "triggertoken": "nope-nope-nope-nope"}),
        content_type="application/cloudevents+json",
    )
    assert wrong.status_code == 401
    right = client.post(
        "/", data=json.dumps({**event, "triggertoken": TOKEN}), content_type="application/cloudevents+json"
    )
    assert right.status_code == 200, right.get_data(as_text=True)
    assert right.get_json()["event"] == {"id": "7", "type": "dev.knative.sources.ping"}
    assert anthropic.usage_calls == 1


@pytest.fixture
def trigger_token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIGGER_TOKEN", TOKEN)


@pytest.fixture
def guarded_server(trigger_token_env: None, function_server: tuple[str, Path]) -> str:
    """A real functions-framework server with TRIGGER_TOKEN set (the env is set first: argument order)."""
    return function_server[0]


def test_an_absurd_length_without_the_token_is_401_at_once(guarded_server: str, anthropic: FakeAnthropic) -> None:
    request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 99999999999999\r\n\r\n{}"
    status, headers, body = _raw(guarded_server, request, timeout=5)
    assert status == 401
    assert json.loads(body) == {"error": "missing or wrong trigger token"}
    assert headers["content-length"] == str(len(body))
    with_token = request.replace(b"Host: x\r\n", f"Host: x\r\nAuthorization: Bearer {TOKEN}\r\n".encode())
    assert _raw(guarded_server, with_token, timeout=5)[0] == 413
    assert anthropic.usage_calls == 0


def test_structured_events_are_read_by_the_sdk_with_their_specversion_checked(
    client: Any, anthropic: FakeAnthropic
) -> None:
    """The hand-written reader checked specversion in binary mode only (issue 12, item 9)."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    event = {"type": "dev.knative.sources.ping", "source": "/ping", "id": "8"}
    bad = client.post(
        "/", data=json.dumps({**event, "specversion": "9.9"}), headers=auth, content_type="application/cloudevents+json"
    )
    assert bad.status_code == 400
    assert "9.9" not in bad.get_json()["error"], "problems never quote the body"
    old = client.post(
        "/", data=json.dumps({**event, "specversion": "0.3"}), headers=auth, content_type="application/cloudevents+json"
    )
    assert old.status_code == 200, old.get_data(as_text=True)
    assert anthropic.usage_calls == 1
