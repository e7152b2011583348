"""The edges of "never silent" and "nothing lost" (issue 21, items 1 and 8): every entry
point turns an exception outside the bot's families into its own failure (exit 1, a JSON
500 with a masked message), a cycle counts it in the health counters, and the inputs that
raised one (an instant at the end of the calendar, a token file from a Windows editor, a
nested identity file, a state file that is a symlink, a FIFO or `/dev/zero`) are refused
by name or read as meant."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from functions_framework import create_app

from claude_matrix_bot import cli
from claude_matrix_bot.compose import build, cycle_config
from claude_matrix_bot.cycle import run_cycle
from claude_matrix_bot.errors import ConfigError, StorageError
from claude_matrix_bot.logs import Redactor
from claude_matrix_bot.model import Alert, Reading
from claude_matrix_bot.settings import load_settings
from claude_matrix_bot.sinks.base import DeliveryReport
from claude_matrix_bot.tokens.base import TokenStore
from claude_matrix_bot.tokens.k8s import SecretTokenStore
from devstack.fakes.anthropic import FakeAnthropic
from devstack.fakes.kube_apiserver import FakeKubeApiServer, core_v1_api
from shim.__main__ import main as shim_main
from tests.helpers import REPO, assert_no_secrets, bot_env, issued_secrets, payload, run_cli

SECRET_IN_THE_MESSAGE = "sk-ant-oat01-IN-THE-EXCEPTION-4d2f9a"


def _now() -> datetime:
    # Real time: the fake's fresh tokens (valid one hour) are not due for a refresh.
    return datetime.now(UTC).replace(microsecond=0)


def _usage(now: datetime) -> dict[str, Any]:
    return payload(five_hour=(20.0, now + timedelta(hours=3)), weekly={"seven_day": (40.0, now + timedelta(days=3))})


def _health(tmp_path: Path) -> dict[str, Any]:
    health: dict[str, Any] = json.loads((tmp_path / "state" / "state.json").read_text())["health"]
    return health


class _RecordingSink:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def deliver(self, alerts: Sequence[Alert]) -> DeliveryReport:
        self.alerts.extend(alerts)
        return DeliveryReport(tuple(a.id for a in alerts))


class _ExplodingUsage:
    """A usage source that fails the way no family foresees (a defect, a library's surprise)."""

    def read(self, tokens: TokenStore, now: datetime) -> Reading:
        raise RuntimeError(f"surprise while reading with {SECRET_IN_THE_MESSAGE}")


# --- the cycle: an exception outside every family is a counted failure ---------------------


def test_an_exception_outside_the_families_is_counted_and_degrades(tmp_path: Path, anthropic: FakeAnthropic) -> None:
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, HEALTH_FAILURES="2")
    settings = load_settings(env)
    sink = _RecordingSink()
    redactor = Redactor.of(SECRET_IN_THE_MESSAGE)
    ports = replace(build(settings, redactor, sink=sink), usage=_ExplodingUsage())
    now = _now()

    results = [
        run_cycle(ports, cycle_config(settings, enforce_min_interval=False), now + timedelta(minutes=m)) for m in (0, 5)
    ]

    for result in results:
        assert (result.status, result.failure, result.exit_code, result.http_status) == ("failed", "internal", 1, 500)
        assert result.error is not None and "unexpected RuntimeError: surprise" in result.error
        assert SECRET_IN_THE_MESSAGE not in result.error
    health = _health(tmp_path)
    assert health["consecutive_failures"] == 2
    assert health["degraded"] is True
    assert "unexpected RuntimeError" in health["last_error"]
    assert [a.kind for a in sink.alerts] == ["degraded"], "the degraded alert reaches the room after HEALTH_FAILURES"
    assert SECRET_IN_THE_MESSAGE not in sink.alerts[0].plain


def test_an_unexpected_failure_delivers_as_any_failed_cycle_quiet_hours_kept(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path
) -> None:
    now = _now()
    quiet = f"{now - timedelta(hours=1):%H:%M}-{now + timedelta(hours=2):%H:%M}"
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, HEALTH_FAILURES="2", QUIET_HOURS=quiet)
    anthropic.set_usage(_usage(now))
    settings = load_settings(env)
    sink = _RecordingSink()
    ports = build(settings, Redactor(), sink=sink)
    config = cycle_config(settings, enforce_min_interval=False)

    assert run_cycle(ports, config, now).status == "ok"
    assert sink.alerts == [], "the armed message (not urgent) waits for the end of quiet hours"
    exploding = replace(ports, usage=_ExplodingUsage())
    for minutes in (5, 10):
        assert run_cycle(exploding, config, now + timedelta(minutes=minutes)).failure == "internal"

    assert [a.kind for a in sink.alerts] == ["degraded"], "the urgent alert goes at once, the armed one still waits"
    outbox = json.loads((tmp_path / "state" / "state.json").read_text())["outbox"]
    assert [a["kind"] for a in outbox] == ["armed"]


def test_an_unexpected_failure_of_one_account_is_counted_in_every_account(
    tmp_path: Path, anthropic: FakeAnthropic
) -> None:
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, ACCOUNTS="work,home")
    for name in ("work", "home"):
        anthropic.write_tokens_dir(tmp_path / "tokens" / name)
    settings = load_settings(env)
    ports = replace(build(settings, Redactor(), sink=_RecordingSink()), usage=_ExplodingUsage())

    result = run_cycle(ports, cycle_config(settings, enforce_min_interval=False), _now())

    assert result.failure == "internal"
    for name in ("work", "home"):
        health = json.loads((tmp_path / "state" / name / "state.json").read_text())["health"]
        assert health["consecutive_failures"] == 1


def test_resets_at_in_the_last_seconds_of_year_9999_is_a_counted_failure(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path
) -> None:
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)
    now = _now()
    anthropic.set_usage(_usage(now))
    anthropic.fail_next(
        "usage", status=200, body={"five_hour": {"utilization": 3.0, "resets_at": "9999-12-31T23:59:45Z"}}
    )

    result = run_cli(env, "run", now=now)

    assert result.code == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "resets_at is out of range" in result.stderr
    assert _health(tmp_path)["consecutive_failures"] == 1
    anthropic.set_usage(_usage(now))
    assert run_cli(env, "run", now=now + timedelta(minutes=5)).code == 0, "the next healthy run works"


# --- the CLI and HTTP entry points -------------------------------------------------------

BREAK_POINTS = [
    (["status"], "claude_matrix_bot.status.collect"),
    (["chart", "--out", "chart.png"], "claude_matrix_bot.store.open_store"),
    (
        ["matrix-login", "--homeserver", "https://m.example.org", "--user", "bot"],
        "claude_matrix_bot.sinks.matrix_login.matrix_login",
    ),
    (["run"], "claude_matrix_bot.compose.build"),
]


@pytest.mark.parametrize(("argv", "target"), BREAK_POINTS, ids=[argv[0] for argv, _ in BREAK_POINTS])
def test_every_cli_command_turns_an_unexpected_exception_into_exit_1(
    argv: list[str],
    target: str,
    tmp_path: Path,
    anthropic: FakeAnthropic,
    tokens_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in bot_env(tmp_path, anthropic.base_url, anthropic.token_url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)

    def explode(*_args: Any, **_kwargs: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(target, explode)

    code = cli.main(argv)

    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    assert "unexpected RecursionError: maximum recursion depth exceeded" in err


@pytest.fixture
def http_client(tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in bot_env(tmp_path, anthropic.base_url, anthropic.token_url, MIN_INTERVAL_SEC="0").items():
        monkeypatch.setenv(name, value)
    anthropic.set_usage(_usage(_now()))
    return create_app(target="watch", source=str(REPO / "function" / "main.py")).test_client()


@pytest.mark.parametrize(
    ("method", "target"),
    [("GET", "claude_matrix_bot.status.status_report"), ("POST", "claude_matrix_bot.compose.build")],
)
def test_the_http_function_answers_json_500_to_an_unexpected_exception(
    method: str, target: str, http_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_args: Any, **_kwargs: Any) -> Any:
        raise UnicodeEncodeError("ascii", f"bearer {SECRET_IN_THE_MESSAGE}", 0, 1, "ordinal not in range(128)")

    monkeypatch.setattr(target, explode)

    response = http_client.open("/", method=method)

    assert response.status_code == 500
    assert response.mimetype == "application/json"
    body = json.loads(response.get_data(as_text=True))
    assert body["failure"] == "internal"
    assert body["error"].startswith("unexpected UnicodeEncodeError")


def test_a_deeply_nested_identity_file_does_not_break_status(
    tmp_path: Path, anthropic: FakeAnthropic, http_client: Any
) -> None:
    nio = tmp_path / "state" / "nio"
    nio.mkdir(parents=True)
    (nio / "identity.json").write_text("[" * 100_000 + "]" * 100_000)
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)

    result = run_cli(env, "status", "--json")
    response = http_client.get("/")

    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(result.stdout)["matrix_identity"] is None
    assert response.status_code == 200


# --- token values as editors and kubectl leave them ---------------------------------------


def test_a_token_file_with_a_bom_and_whitespace_is_read_as_meant(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path
) -> None:
    access = tokens_dir / "accessToken"
    access.write_bytes(b"\xef\xbb\xbf" + access.read_bytes().strip() + b"\r\n")
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)
    now = _now()
    anthropic.set_usage(_usage(now))

    result = run_cli(env, "run", now=now)

    assert result.code == 0, result.stderr
    assert result.kinds() == ["armed"]


def test_a_token_file_with_a_non_ascii_character_is_refused_by_name_and_counted(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path
) -> None:
    access = tokens_dir / "accessToken"
    access.write_text(access.read_text().strip() + "é")
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)
    anthropic.set_usage(_usage(_now()))

    result = run_cli(env, "run", now=_now())

    assert result.code == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "file accessToken holds a character a token cannot have" in result.stderr
    assert _health(tmp_path)["consecutive_failures"] == 1
    assert_no_secrets(issued_secrets(anthropic), result.stderr, json.dumps(_health(tmp_path)))


@pytest.mark.parametrize(
    ("value", "refused"),
    [("\ufeffsk-ant-oat01-BOMMED-11aa22bb \n", None), ("sk-ant-oat01-ÜMLAUT-33cc", "holds a character")],
    ids=["bom-stripped", "non-ascii-refused"],
)
def test_secret_keys_get_the_same_rules(value: str, refused: str | None) -> None:
    with FakeKubeApiServer(namespace="claude-bot", secret_name="claude-oauth-tokens") as fake:
        fake.put_secret({"accessToken": value, "refreshToken": "sk-ant-ort01-R-44dd55ee", "expiresAt": "1767225600000"})
        store = SecretTokenStore(fake.secret_name, fake.namespace, core_v1_api(fake))
        if refused is None:
            assert store.load().tokens.access_token == "sk-ant-oat01-BOMMED-11aa22bb"
            return
        with pytest.raises(StorageError, match=rf"key accessToken {refused}") as caught:
            store.load()
        assert "ÜMLAUT" not in str(caught.value), "the value is never quoted"


# --- the state directory: only regular files, private, bounded ------------------------------


def _special(kind: str, path: Path, tmp_path: Path) -> None:
    if kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    else:  # a planted symlink to a file the bot must not copy into its state
        target = tmp_path / "elsewhere.json"
        target.write_text(json.dumps({"schema": 2, "note": "not the bot's"}))
        path.symlink_to(target)


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "symlink"])
def test_a_state_file_that_is_not_a_regular_file_is_refused(
    kind: str, tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    _special(kind, state / "state.json", tmp_path)
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)
    anthropic.set_usage(_usage(_now()))

    status = run_cli(env, "status", timeout=30)
    run = run_cli(env, "run", now=_now(), timeout=30)

    for result in (status, run):
        assert result.code == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert "state.json" in result.stderr and "refused" in result.stderr, result.stderr
    assert (state / "state.json").is_symlink() or stat.S_ISFIFO((state / "state.json").lstat().st_mode)
    assert anthropic.usage_calls == 0, "nothing is fetched for a state that cannot be read"


def test_the_state_directory_is_private_under_umask_000(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path
) -> None:
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)
    now = _now()
    anthropic.set_usage(_usage(now))
    old = os.umask(0)
    try:
        result = run_cli(env, "run", now=now)
    finally:
        os.umask(old)

    assert result.code == 0, result.stderr
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700


def test_chart_out_replaces_a_planted_symlink_instead_of_following_it(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path
) -> None:
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, FORECAST_MIN_SAMPLES="2")
    now = _now()
    for minutes in (0, 60, 120):
        anthropic.set_usage(_usage(now))
        assert run_cli(env, "run", now=now + timedelta(minutes=minutes)).code == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "chart.png"
    out.symlink_to(victim)
    # The name the old code wrote through, planted too: it must not be used either.
    (tmp_path / ".chart.png.tmp").symlink_to(victim)

    result = run_cli(env, "chart", "--out", str(out), now=now + timedelta(minutes=121))

    assert result.code == 0, result.stderr
    assert victim.read_text() == "keep me"
    assert not out.is_symlink() and out.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("kind", ["fifo", "symlink-to-a-device"])
def test_chart_out_never_replaces_a_special_file(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, kind: str
) -> None:
    """`--out /dev/stdout` (a symlink to a pipe or a tty) or `--out /dev/full`: renaming a
    temporary file over it would replace the node itself (as root, /dev/stdout for every
    later process). Such a path is refused and left as it was."""
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, FORECAST_MIN_SAMPLES="2")
    now = _now()
    anthropic.set_usage(_usage(now))
    assert run_cli(env, "run", now=now).code == 0
    out = tmp_path / "out.png"
    if kind == "fifo":
        os.mkfifo(out)
    else:
        out.symlink_to("/dev/null")

    result = run_cli(env, "chart", "--out", str(out), now=now + timedelta(minutes=1))

    assert result.code == 1 and "not a regular file" in result.stderr, result.stderr
    assert stat.S_ISFIFO(out.lstat().st_mode) if kind == "fifo" else os.readlink(out) == "/dev/null"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == [], "no temporary file left"


def test_a_ten_megabyte_note_is_capped_when_the_state_is_read(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_text(
        json.dumps({"schema": 2, "note": "n" * 10_000_000, "health": {"last_error": "e" * 4_000_000}})
    )
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)

    result = run_cli(env, "status", "--json")

    assert result.code == 0, result.stderr
    assert len(result.stdout) < 20_000, "no 10 MB field reaches the output"


# --- the shim ---------------------------------------------------------------------------


class _Echo(BaseHTTPRequestHandler):
    """A function (or a proxy) that echoes the request's headers in its answer."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"status": "failed", "seen": dict(self.headers.items())}).encode()
        self.send_response(502)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def echo_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_the_shim_masks_its_token_when_the_function_echoes_it(
    echo_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    token = "tt-echoed-trigger-token-5ecret"
    env = {"FUNCTION_URL": echo_url, "TRIGGER_TOKEN": token, "SHIM_MAX_ATTEMPTS": "2", "SHIM_BACKOFF_SEC": "0"}

    code = shim_main([], env)

    out = capsys.readouterr()
    assert code == 1
    assert "[redacted]" in out.out + out.err, "the echo is still shown, masked"
    assert token not in out.out + out.err


def test_the_shim_turns_an_unexpected_exception_into_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def explode(*_args: Any, **_kwargs: Any) -> Any:
        raise ValueError("surprise")

    monkeypatch.setattr("shim.__main__.trigger", explode)

    code = shim_main([], {"FUNCTION_URL": "http://127.0.0.1:9/"})

    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err and "unexpected ValueError: surprise" in err


# --- URLs: no tokens over plain http to another host, no userinfo in messages ----------------

BASE = {"LOCAL_MODE": "1", "ALERT_SINK": "stdout"}


@pytest.mark.parametrize(
    ("name", "url"),
    [("ANTHROPIC_BASE_URL", "http://api.example.com"), ("ANTHROPIC_TOKEN_URL", "http://10.1.2.3/v1/oauth/token")],
)
def test_plain_http_to_another_host_needs_the_opt_in(name: str, url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, name: url})
    assert f"{name}: plain http://" in str(caught.value)
    assert "ALLOW_PLAIN_HTTP=1" in str(caught.value)

    assert load_settings({**BASE, name: url, "ALLOW_PLAIN_HTTP": "1"}).allow_plain_http


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost", "[::1]:9000", "127.5.6.7"])
def test_plain_http_to_loopback_needs_no_opt_in(host: str) -> None:
    assert load_settings({**BASE, "ANTHROPIC_BASE_URL": f"http://{host}"}).anthropic_base_url == f"http://{host}"


def test_a_plain_http_homeserver_needs_the_opt_in(tmp_path: Path, anthropic: FakeAnthropic) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    for name, value in {
        "homeserver_url": "http://matrix.example.org",
        "user_id": "@bot:example.org",
        "access_token": "syt_not_a_real_token_123",
        "device_id": "BOTDEVICE",
    }.items():
        (creds / name).write_text(value + "\n")
    env = {
        **bot_env(tmp_path, anthropic.base_url, anthropic.token_url),
        "ALERT_SINK": "matrix",
        "MATRIX_ROOM_ID": "!room:example.org",
        "MATRIX_CREDS_DIR": str(creds),
    }

    run = run_cli(env, "run")
    login = run_cli(
        {**env, "MATRIX_PASSWORD_FILE": str(creds / "user_id")},
        "matrix-login",
        "--homeserver",
        "http://matrix.example.org",
        "--user",
        "bot",
    )

    for result in (run, login):
        assert result.code == 2, result.stderr
        assert "plain http:// to matrix.example.org" in result.stderr and "ALLOW_PLAIN_HTTP" in result.stderr
    assert anthropic.usage_calls == 0, "refused before any I/O"


def test_url_userinfo_never_reaches_a_message(tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, "ANTHROPIC_BASE_URL": "ftp://operator:pw-hunter2-secret@api.example.com"})
    assert "pw-hunter2" not in str(caught.value) and "api.example.com" in str(caught.value)

    with anthropic.refusing_connections():
        base = anthropic.base_url.replace("http://", "http://operator:pw-hunter2-secret@")
        result = run_cli(bot_env(tmp_path, base, anthropic.token_url), "run", now=_now())

    assert result.code == 1, result.stderr
    assert "unreachable" in result.stderr
    assert "pw-hunter2" not in result.stderr + json.dumps(_health(tmp_path))
    assert "operator" not in result.stderr


# --- terminal escapes from the usage answer ----------------------------------------------

ESCAPES = ("\x1b", "\x9b", "\u202e", "\x07")


def test_control_characters_from_the_usage_answer_reach_no_log_status_or_alert(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path
) -> None:
    now = _now()
    answer = _usage(now)
    answer["mystery\x1b[2J\x1b]0;pwned\x07"] = {"utilization": 5, "resets_at": None}
    answer["seven_day"]["severity\x9b31m"] = "warning\u202etxt"
    anthropic.set_usage(answer)
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)

    run = run_cli(env, "run", now=now)
    anthropic.fail_next("usage", status=500, body=b"oops \x1b[31mred\x1b[0m \x9b2J")
    failed = run_cli(env, "run", now=now + timedelta(minutes=5))
    status = run_cli(env, "status")
    status_json = run_cli(env, "status", "--json")

    assert run.code == 0 and failed.code == 1 and status.code == 0, run.stderr + failed.stderr + status.stderr
    assert "mystery" in run.stderr, "the unknown key is still reported, cleaned"
    assert "oops [31mred" in failed.stderr, "the body excerpt stays readable, its escapes gone"
    state_text = (tmp_path / "state" / "state.json").read_text()
    for text in (
        run.stdout,
        run.stderr,
        failed.stderr,
        status.stdout,
        status_json.stdout,
        json.dumps(json.loads(state_text)),
    ):
        assert not any(ch in text for ch in ESCAPES), text


@pytest.mark.parametrize("accounts", ["work-", "-work", "work,priv-", "a-"])
def test_account_names_start_and_end_alphanumeric(accounts: str) -> None:
    with pytest.raises(ConfigError, match="ACCOUNTS"):
        load_settings({**BASE, "ACCOUNTS": accounts})


def test_account_names_may_hold_a_dash_inside() -> None:
    assert load_settings({**BASE, "ACCOUNTS": "w,work-2,a1"}).accounts == ("w", "work-2", "a1")


def test_status_into_a_closed_pipe_ends_quietly(tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path) -> None:
    """`claude-matrix-bot status | head -1`: the reader leaves early. Not a failure of the
    bot, and no "unexpected BrokenPipeError" (issue 21: never a traceback or a scare)."""
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)
    now = _now()
    anthropic.set_usage(_usage(now))
    assert run_cli(env, "run", now=now).code == 0
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte: every write is EPIPE
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "claude_matrix_bot", "status"],
            env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO / "function"), **env},
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
