"""The trigger shim against a real functions-framework server on loopback."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shim import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, ShimConfig, ShimConfigError, load_config, trigger
from shim.__main__ import main

REPO = Path(__file__).resolve().parents[1]
FAKE_SOURCE = REPO / "tests" / "fakes" / "trigger_target.py"
VENV_BIN = Path(sys.executable).parent
TOKEN = "tt-5ecret-trigger-token-value"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class FakeFunction:
    """The running fake: its URL and the control directory that steers it."""

    url: str
    control: Path

    def plan(self, *statuses: int) -> None:
        (self.control / "requests.jsonl").unlink(missing_ok=True)
        (self.control / "plan.json").write_text(json.dumps({"statuses": list(statuses)}))

    def requests(self) -> list[dict[str, Any]]:
        log = self.control / "requests.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture(scope="module")
def fake_function(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeFunction]:
    control = tmp_path_factory.mktemp("trigger-target")
    (control / "plan.json").write_text(json.dumps({"statuses": [200]}))
    port = _free_port()
    env = {**os.environ, "TRIGGER_TARGET_DIR": str(control)}
    server = subprocess.Popen(
        [
            str(VENV_BIN / "functions-framework"),
            "--source",
            str(FAKE_SOURCE),
            "--target",
            "target",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if server.poll() is not None:
                detail = server.stderr.read().decode() if server.stderr else ""
                raise RuntimeError(f"functions-framework exited: {detail}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("functions-framework did not listen within 30 s") from None
                time.sleep(0.1)
        yield FakeFunction(url=f"http://127.0.0.1:{port}/", control=control)
    finally:
        server.terminate()
        server.wait(timeout=10)


def _config(url: str, **overrides: Any) -> ShimConfig:
    values: dict[str, Any] = {"function_url": url, "max_attempts": 4, "backoff_sec": 1.0, "timeout_sec": 10.0}
    values.update(overrides)
    return ShimConfig(**values)


def _run_shim(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The shim as the CronJob runs it: a separate process, configured by its environment only."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("SHIM_", "TRIGGER_", "FUNCTION_"))}
    return subprocess.run(
        [sys.executable, "-m", "shim"],
        env={**clean, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_success_posts_empty_json_with_token_and_prints_summary(fake_function: FakeFunction) -> None:
    fake_function.plan(200)
    result = _run_shim({"FUNCTION_URL": fake_function.url, "TRIGGER_TOKEN": TOKEN})
    assert result.returncode == EXIT_OK, result.stderr
    assert json.loads(result.stdout) == {"status": 200, "request": 1}
    (request,) = fake_function.requests()
    assert request["method"] == "POST"
    assert request["path"] == "/"
    assert request["body"] == "{}"
    assert request["headers"]["content-type"] == "application/json"
    assert request["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in result.stdout + result.stderr


def test_no_token_configured_sends_no_authorization_header(fake_function: FakeFunction) -> None:
    fake_function.plan(200)
    result = _run_shim({"FUNCTION_URL": fake_function.url})
    assert result.returncode == EXIT_OK, result.stderr
    (request,) = fake_function.requests()
    assert "authorization" not in request["headers"]


def test_retries_on_503_with_doubling_backoff_then_succeeds(fake_function: FakeFunction) -> None:
    fake_function.plan(503, 503, 200)
    waits: list[float] = []
    log = io.StringIO()
    outcome = trigger(_config(fake_function.url, trigger_token=TOKEN), sleep=waits.append, log=log)
    assert (outcome.exit_code, outcome.status, outcome.attempts) == (EXIT_OK, 200, 3)
    assert waits == [1.0, 2.0]
    assert len(fake_function.requests()) == 3
    assert all(r["headers"]["authorization"] == f"Bearer {TOKEN}" for r in fake_function.requests())
    assert "HTTP 503" in log.getvalue()
    assert TOKEN not in log.getvalue()


def test_persistent_500_fails_after_bounded_attempts(fake_function: FakeFunction) -> None:
    fake_function.plan(500)
    waits: list[float] = []
    outcome = trigger(_config(fake_function.url), sleep=waits.append, log=io.StringIO())
    assert (outcome.exit_code, outcome.status, outcome.attempts) == (EXIT_FAILED, 500, 4)
    assert waits == [1.0, 2.0, 4.0]
    assert len(fake_function.requests()) == 4


def test_persistent_500_exit_code_from_a_real_process(fake_function: FakeFunction) -> None:
    fake_function.plan(500)
    result = _run_shim({"FUNCTION_URL": fake_function.url, "SHIM_MAX_ATTEMPTS": "3", "SHIM_BACKOFF_SEC": "0"})
    assert result.returncode == EXIT_FAILED
    assert len(fake_function.requests()) == 3
    assert "giving up" in result.stderr


@pytest.mark.parametrize("status", [409, 429])
def test_lease_held_and_too_soon_are_success_without_retry(fake_function: FakeFunction, status: int) -> None:
    fake_function.plan(status)
    result = _run_shim({"FUNCTION_URL": fake_function.url, "SHIM_BACKOFF_SEC": "0"})
    assert result.returncode == EXIT_OK, result.stderr
    assert len(fake_function.requests()) == 1
    assert json.loads(result.stdout)["status"] == status
    assert "nothing to do" in result.stderr


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405])
def test_other_client_errors_fail_without_retry(fake_function: FakeFunction, status: int) -> None:
    fake_function.plan(status)
    waits: list[float] = []
    outcome = trigger(_config(fake_function.url, trigger_token=TOKEN), sleep=waits.append, log=io.StringIO())
    assert (outcome.exit_code, outcome.status, outcome.attempts) == (EXIT_FAILED, status, 1)
    assert waits == []
    assert len(fake_function.requests()) == 1


def test_connection_refused_is_retried_then_fails() -> None:
    port = _free_port()  # nothing listens there once the probe socket is closed
    waits: list[float] = []
    log = io.StringIO()
    outcome = trigger(_config(f"http://127.0.0.1:{port}/", max_attempts=3), sleep=waits.append, log=log)
    assert (outcome.exit_code, outcome.status, outcome.attempts) == (EXIT_FAILED, None, 3)
    assert waits == [1.0, 2.0]
    assert "ConnectionRefusedError" in log.getvalue()


def test_zero_backoff_never_sleeps() -> None:
    port = _free_port()
    waits: list[float] = []
    outcome = trigger(_config(f"http://127.0.0.1:{port}/", backoff_sec=0.0), sleep=waits.append, log=io.StringIO())
    assert outcome.exit_code == EXIT_FAILED
    assert waits == []


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, ["FUNCTION_URL"]),
        ({"FUNCTION_URL": "ftp://example.invalid/"}, ["FUNCTION_URL"]),
        ({"FUNCTION_URL": "not a url"}, ["FUNCTION_URL"]),
        (
            {"FUNCTION_URL": "http://x.invalid", "SHIM_MAX_ATTEMPTS": "0", "SHIM_BACKOFF_SEC": "soon"},
            ["SHIM_MAX_ATTEMPTS", "SHIM_BACKOFF_SEC"],
        ),
        ({"FUNCTION_URL": "http://x.invalid", "TRIGGER_TOKEN": f"{TOKEN}\r\nX-Evil: 1"}, ["TRIGGER_TOKEN"]),
    ],
)
def test_bad_configuration_exits_2_naming_every_variable(env: dict[str, str], named: list[str]) -> None:
    with pytest.raises(ShimConfigError) as caught:
        load_config(env)
    for name in named:
        assert name in str(caught.value)
    assert TOKEN not in str(caught.value)
    result = _run_shim(env)
    assert result.returncode == EXIT_CONFIG
    assert all(name in result.stderr for name in named)
    assert TOKEN not in result.stdout + result.stderr


def test_config_defaults_and_token_kept_out_of_repr() -> None:
    config = load_config({"FUNCTION_URL": "http://svc.ns.svc.cluster.local", "TRIGGER_TOKEN": TOKEN})
    assert (config.max_attempts, config.backoff_sec, config.timeout_sec) == (4, 1.0, 150.0)
    assert config.trigger_token == TOKEN
    assert TOKEN not in repr(config)


def test_credentials_in_url_are_not_logged() -> None:
    port = _free_port()
    log = io.StringIO()
    trigger(_config(f"http://user:{TOKEN}@127.0.0.1:{port}/", max_attempts=1), sleep=lambda _: None, log=log)
    assert TOKEN not in log.getvalue()
    assert f"127.0.0.1:{port}" in log.getvalue()


def test_main_rejects_arguments_and_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"], env={}) == 0
    assert "FUNCTION_URL" in capsys.readouterr().out
    assert main(["extra"], env={}) == EXIT_CONFIG


def test_main_in_process_prints_compact_summary(
    fake_function: FakeFunction, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_function.plan(200)
    assert main([], env={"FUNCTION_URL": fake_function.url}) == EXIT_OK
    assert capsys.readouterr().out == '{"request":1,"status":200}\n'


def test_console_script_is_installed_and_runs() -> None:
    script = VENV_BIN / "claude-matrix-bot-trigger"
    if not script.exists():
        pytest.fail(f"{script} missing: reinstall the project (pip install -e .) to get the console script")
    result = subprocess.run(
        [str(script)], env={"PATH": os.environ.get("PATH", "")}, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == EXIT_CONFIG
    assert "FUNCTION_URL" in result.stderr
