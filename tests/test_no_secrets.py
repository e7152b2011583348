"""No secret ever appears in a log line, an output, a response or a state file (issue 7).

A session fixture cannot read what other modules' subprocesses printed, so this module
replays the suite's main scenarios itself, with every logger at DEBUG, and keeps
everything they produce: CLI stdout/stderr (subprocesses, LOG_LEVEL=DEBUG), in-process
log records (caplog at DEBUG, every logger), HTTP responses, `status` output, and every
file left in the state directory (nio key store included). Then each secret issued
during the scenarios is looked for in all of it:

- Anthropic access and refresh tokens (every one the fake minted, spent ones included),
- the Matrix access tokens (bot and recipient), MATRIX_STORE_PASSPHRASE,
- TRIGGER_TOKEN, the Kubernetes ServiceAccount bearer token.

The hostile cases matter most: an API that echoes the token in its error body, a token
endpoint that echoes the refresh token, a wrong trigger token that is close to the real one.
Other modules check their own outputs too (assert_no_secrets); this one is the sweep.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from functions_framework import create_app

from devstack.fakes.anthropic import FakeAnthropic
from devstack.fakes.kube_apiserver import FakeKubeApiServer, write_kubeconfig
from devstack.synapse import Homeserver
from tests.helpers import REPO, bot_env, issued_secrets, payload, run_cli
from tests.matrix_scene import make_scene

TRIGGER = "trigger-0f9e8d7c6b5a4938"
PASSPHRASE = "passphrase-for-the-nio-store-71c2"


class Collected:
    """Every text the scenarios produced, with where it came from."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []
        self.secrets: set[str] = {TRIGGER, PASSPHRASE}

    def add(self, where: str, *texts: str) -> None:
        self.texts.extend((where, t) for t in texts)

    def add_tree(self, where: str, root: Path) -> None:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                self.add(f"{where}/{path.relative_to(root)}", path.read_bytes().decode("latin-1"))

    def leaks(self) -> list[str]:
        return [where for where, text in self.texts for secret in self.secrets if secret in text]


@pytest.fixture
def collected(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> Iterator[Collected]:
    caplog.set_level(logging.DEBUG)
    found = Collected()
    yield found
    # What the process wrote to its own stdout/stderr (the bot's handler redacts there).
    out, err = capfd.readouterr()
    found.add("in-process stdout", out)
    found.add("in-process stderr", err)
    assert len(found.texts) > 3 and len(found.secrets) > 3, "the sweep looked at something"
    leaks = found.leaks()
    assert leaks == [], f"a secret leaked into: {sorted(set(leaks))}"


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _usage(now: datetime, weekly: float) -> dict[str, Any]:
    return payload(five_hour=(5.0, now + timedelta(hours=2)), weekly={"seven_day": (weekly, now + timedelta(days=3))})


def test_cli_scenarios_at_debug(tmp_path: Path, anthropic: FakeAnthropic, collected: Collected) -> None:
    tokens = tmp_path / "tokens"
    anthropic.write_tokens_dir(tokens, expires_in=60)  # inside the leeway: refreshed at once
    env = bot_env(
        tmp_path,
        anthropic.base_url,
        anthropic.token_url,
        LOG_LEVEL="DEBUG",
        HEALTH_FAILURES="2",
        TRIGGER_TOKEN=TRIGGER,
        MATRIX_STORE_PASSPHRASE=PASSPHRASE,
    )
    now = _now()
    steps: list[tuple[float, Any]] = [
        (30.0, None),  # refresh, armed
        (55.0, None),  # threshold
        # A usage error body that echoes the access token, and a token endpoint that echoes the refresh token.
        (55.0, ("usage", 500, {"error": "boom", "token": "<access>"}, 1)),
        (55.0, ("usage", 401, {"error": "expired"}, 1)),
        (56.0, ("token", 400, {"error": "invalid_request", "refresh_token": "<echo>"}, 3)),
        (57.0, None),
    ]
    for minutes, (weekly, fault) in enumerate(steps):
        anthropic.set_usage(_usage(now, weekly))
        if fault is not None:
            kind, status, body, times = fault
            if body.get("refresh_token") == "<echo>":
                body = {**body, "refresh_token": (tokens / "refreshToken").read_text().strip()}
            if body.get("token") == "<access>":
                body = {**body, "token": (tokens / "accessToken").read_text().strip()}
            anthropic.fail_next(kind, status, body=body, times=times)
        result = run_cli(env, "run", now=now + timedelta(minutes=5 * minutes))
        collected.add(f"run {minutes} stdout", result.stdout)
        collected.add(f"run {minutes} stderr", result.stderr)
    for args in (("status",), ("status", "--json")):
        result = run_cli(env, *args, now=now + timedelta(hours=1))
        collected.add(" ".join(args), result.stdout, result.stderr)
    collected.add_tree("state", tmp_path / "state")
    collected.secrets |= issued_secrets(anthropic)
    assert anthropic.refresh_calls >= 2 and anthropic.usage_calls >= 5


def test_http_entry_at_debug(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, monkeypatch: pytest.MonkeyPatch, collected: Collected
) -> None:
    now = _now()
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, LOG_LEVEL="DEBUG", MIN_INTERVAL_SEC="0")
    env.update(TRIGGER_TOKEN=TRIGGER, MATRIX_STORE_PASSPHRASE=PASSPHRASE, NOW_OVERRIDE=now.isoformat())
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    anthropic.set_usage(_usage(now, 60.0))
    app = create_app(target="watch", source=str(REPO / "function" / "main.py"))  # type: ignore[no-untyped-call]
    client = app.test_client()
    responses = [
        client.post("/", headers={"Authorization": f"Bearer {TRIGGER}"}),
        client.post("/", headers={"Authorization": f"Bearer {TRIGGER[:-1]}"}),  # near miss
        client.post("/", headers={"ce-triggertoken": TRIGGER[:-2] + "xx"}),
        client.get("/"),  # a stranger: 401 (issue 21 item 4)
        client.get("/", headers={"Authorization": f"Bearer {TRIGGER}"}),
    ]
    anthropic.fail_next("usage", 502, body=f"<html>upstream echoed Bearer {TRIGGER}</html>")
    responses.append(client.post("/", headers={"Authorization": f"Bearer {TRIGGER}"}))
    # The third is a malformed binary event with a wrong token: authentication comes first (docs/design.md §5).
    assert [r.status_code for r in responses] == [200, 401, 401, 401, 200, 502]
    for index, response in enumerate(responses):
        collected.add(f"response {index}", response.get_data(as_text=True), json.dumps(dict(response.headers)))
    collected.add_tree("state", tmp_path / "state")
    collected.secrets |= issued_secrets(anthropic)


def test_kubernetes_secret_store_at_debug(tmp_path: Path, anthropic: FakeAnthropic, collected: Collected) -> None:
    with FakeKubeApiServer(bearer_token="k8s-sa-bearer-3c4d5e6f7a8b9c0d") as kube:
        issued = anthropic.issue_tokens(expires_in=60)  # refreshed and written back through the API
        kube.put_secret(
            {
                "accessToken": issued.access_token,
                "refreshToken": issued.refresh_token,
                "expiresAt": str(issued.expires_at_ms),
            }
        )
        env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, LOG_LEVEL="DEBUG")
        del env["LOCAL_MODE"]
        env.update(
            K8S_OAUTH_SECRET_NAME=kube.secret_name,
            K8S_NAMESPACE=kube.namespace,
            KUBECONFIG=str(write_kubeconfig(kube, tmp_path / "kubeconfig")),
        )
        now = _now()
        anthropic.set_usage(_usage(now, 20.0))
        result = run_cli(env, "run", now=now)
        assert result.code == 0, result.stderr
        assert kube.secret_data()["refreshToken"] != issued.refresh_token, "written back to the Secret"
        collected.add("k8s run", result.stdout, result.stderr)
        collected.add_tree("state", tmp_path / "state")
        collected.secrets |= issued_secrets(anthropic) | {kube.bearer_token}


@pytest.mark.synapse
def test_matrix_delivery_at_debug(
    homeserver: Homeserver,
    anthropic: FakeAnthropic,
    tmp_path: Path,
    collected: Collected,
) -> None:
    scene = make_scene(homeserver, anthropic, tmp_path, LOG_LEVEL="DEBUG", MATRIX_STORE_PASSPHRASE=PASSPHRASE)
    try:
        scene.run(0, 60.0)
        scene.proxy.stop()  # a failed delivery's messages too
        scene.run(5, 85.0, code=1)
        scene.proxy.start()
        scene.run(10, 85.0)
        assert scene.count("passed 80%") == 1
        collected.add("matrix runs", *scene.outputs)
        collected.add_tree("state", scene.state_dir)
        collected.secrets |= scene.secrets()
    finally:
        scene.proxy.stop()
        scene.recipient.close()


# --- issue 21 item 6: echoes that are not the exact string ------------------------------------


def _echoes(secret: str) -> str:
    """An upstream body quoting `secret` every way the issue found leaking."""
    raw = secret.encode()
    return "\n".join(
        [
            f"b64 {base64.b64encode(raw).decode()}",
            f"b64-in-json {base64.b64encode(json.dumps({'token': secret}).encode()).decode()}",
            f"urlsafe-unpadded {base64.urlsafe_b64encode(b'Bearer ' + raw).decode().rstrip('=')}",
            f"url-encoded {quote(f'Bearer {secret}', safe='')}",
            f"split {secret[:17]}\n      {secret[17:]}",
            f"truncated {secret[:15]}…",
            f"lower {secret.lower()}",
        ]
    )


def _encoded_leaks(secret: str, text: str) -> list[str]:
    """Which forms of `secret` appear in `text`: any 12-character run of it or of its base64
    (std or URL-safe, any alignment), without regard to case or whitespace."""
    folded = "".join(text.split()).lower()
    raw = secret.encode()
    forms = {"plain": secret}
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()[offset + 1 : -4]
        forms[f"b64@{offset}"] = encoded
        forms[f"urlsafe@{offset}"] = encoded.replace("+", "-").replace("/", "_")
    return [
        name for name, form in forms.items() if any(form[i : i + 12].lower() in folded for i in range(len(form) - 11))
    ]


def test_encoded_echoes_reach_no_output(
    tmp_path: Path, anthropic: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = tmp_path / "tokens"
    anthropic.write_tokens_dir(tokens, expires_in=86400)
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, HEALTH_FAILURES="1", TRIGGER_TOKEN=TRIGGER)
    now = _now()
    anthropic.set_usage(_usage(now, 30.0))
    outputs = [run_cli(env, "run", now=now)]
    access = (tokens / "accessToken").read_text().strip()
    anthropic.fail_next("usage", 500, body=f"<pre>upstream saw:\n{_echoes(access)}</pre>")
    outputs.append(run_cli(env, "run", now=now + timedelta(minutes=5)))
    anthropic.write_tokens_dir(tokens, expires_in=60)  # due for a refresh: the token endpoint echoes it
    refresh = (tokens / "refreshToken").read_text().strip()
    body = {"error": "invalid_request", "error_description": _echoes(refresh), "echo": refresh.lower()}
    anthropic.fail_next("token", 400, body=body)
    outputs.append(run_cli(env, "run", now=now + timedelta(minutes=10)))
    assert [result.code for result in outputs] == [0, 1, 1]
    assert "OAuth error invalid_request" in outputs[2].stderr, "the code word is what is quoted"
    status = run_cli(env, "status", "--json", now=now + timedelta(minutes=11))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = create_app(target="watch", source=str(REPO / "function" / "main.py"))  # type: ignore[no-untyped-call]
    answer = app.test_client().get("/", headers={"Authorization": f"Bearer {TRIGGER}"})
    assert answer.status_code == 200
    texts = {
        **{f"run {i} stdout (the room)": r.stdout for i, r in enumerate(outputs)},
        **{f"run {i} stderr": r.stderr for i, r in enumerate(outputs)},
        "state.json": (tmp_path / "state" / "state.json").read_text(),
        "status": status.stdout + status.stderr,
        "GET /": answer.get_data(as_text=True),
    }
    assert '"degraded"' in texts["run 1 stdout (the room)"] and "last_error" in texts["state.json"]
    leaks = {
        where: found
        for where, text in texts.items()
        for secret in (access, refresh)
        if (found := _encoded_leaks(secret, text))
    }
    assert leaks == {}
