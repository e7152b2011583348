"""The whole cycle through the real CLI, in a subprocess, against the loopback fake
Anthropic API, over a simulated week driven by NOW_OVERRIDE (issue 2).

Each step is one `python -m claude_matrix_bot run` with the stdout sink; the test
reads the JSON lines it prints and the files it leaves behind.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from devstack.fakes.anthropic import FakeAnthropic
from tests.helpers import assert_no_secrets, bot_env, issued_secrets, payload, run_cli

HOUR = timedelta(hours=1)


def _no_secrets(fake: FakeAnthropic, *texts: str) -> None:
    assert_no_secrets(issued_secrets(fake), *texts)


def test_simulated_week(tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, start: datetime) -> None:
    # A two-hour forecast window keeps the early jump to 51% out of the later burn's fit.
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, HEALTH_FAILURES="3", FORECAST_WINDOW_SEC="7200")
    weekly_reset = start + timedelta(days=3, hours=-3)
    five_reset = start + 3 * HOUR
    outputs: list[str] = []

    def run(
        now: datetime,
        five: tuple[float, datetime | None] | None,
        week: float,
        week_reset: datetime | None = None,
        code: int = 0,
    ) -> list[dict[str, object]]:
        anthropic.set_usage(
            payload(five_hour=five, weekly={"seven_day": (week, week_reset or weekly_reset), "seven_day_opus": None}),
            jitter=True,
        )
        result = run_cli(env, "run", now=now)
        outputs.extend([result.stdout, result.stderr])
        assert result.code == code, result.stderr
        return result.alerts

    # Armed: one baseline listing every bucket, null ones included.
    alerts = run(start, (24.0, five_reset), 36.0)
    assert [a["kind"] for a in alerts] == ["armed"]
    assert "Weekly (all models): 36%" in str(alerts[0]["plain"])
    assert "Weekly Opus: not in use" in str(alerts[0]["plain"])
    assert anthropic.refresh_calls == 1, "expired tokens are refreshed before use"

    # Quiet cycle: same values with sub-second jitter -> nothing on stdout.
    assert run(start + timedelta(minutes=5), (24.5, five_reset), 36.2) == []

    # 50% crossed -> one threshold alert; staying above it -> silence.
    alerts = run(start + timedelta(minutes=10), (30.0, five_reset), 51.0)
    assert [(a["kind"], a.get("threshold")) for a in alerts] == [("threshold", 50)]
    assert alerts[0]["bucket"] == "seven_day"
    assert run(start + timedelta(minutes=15), (30.0, five_reset), 52.0) == []

    # Reset shift on an active five-hour window.
    shifted = five_reset + HOUR
    alerts = run(start + timedelta(minutes=20), (31.0, shifted), 52.0)
    assert [a["kind"] for a in alerts] == ["reset_shift"]
    assert alerts[0]["bucket"] == "five_hour"
    assert alerts[0]["old_resets_at"] and alerts[0]["new_resets_at"]
    assert run(start + timedelta(minutes=25), (31.0, shifted), 52.0) == [], "once per distinct value"

    # Natural rollover of the five-hour window (old reset in the past): silent.
    after = shifted + timedelta(minutes=10)
    assert run(after, (2.0, after + 5 * HOUR), 53.0) == []

    # A steady burn: 6+ samples over more than an hour that reach 100% before the reset.
    now = after
    kinds: list[str] = []
    week = 53.0
    for _ in range(8):
        now += timedelta(minutes=12)
        week += 2.5
        kinds += [str(a["kind"]) for a in run(now, (5.0, after + 5 * HOUR), week)]
    assert kinds.count("forecast") == 1
    assert kinds.count("threshold") == 0 or week >= 80
    forecast_lines = [a for o in outputs for a in _lines(o) if a.get("kind") == "forecast"]
    assert forecast_lines and forecast_lines[0]["projected_at"]
    assert "%/h" in str(forecast_lines[0]["plain"])

    # 80% crossed.
    now += timedelta(minutes=5)
    alerts = run(now, (5.0, after + 5 * HOUR), 81.0)
    assert [(a["kind"], a.get("threshold")) for a in alerts] == [("threshold", 80)]

    # Weekly rollover (its reset passed): no shift, the closed window's digest (docs/design.md §7)
    # with its picture, and a new window alerts afresh.
    now = weekly_reset + timedelta(minutes=7)
    new_reset = weekly_reset + timedelta(days=7)
    alerts = run(now, (1.0, now + 5 * HOUR), 3.0, new_reset)
    assert [(a["kind"], a["bucket"]) for a in alerts] == [("digest", "seven_day")]
    assert alerts[0]["peak"] == 81.0 and alerts[0]["image_bytes"]
    alerts = run(now + HOUR, (1.0, now + 5 * HOUR), 55.0, new_reset)
    assert [(a["kind"], a.get("threshold")) for a in alerts] == [("threshold", 50)]

    # Three failed runs in a row -> one degraded alert; the next success -> recovered.
    five = (1.0, now + 5 * HOUR)
    now += 2 * HOUR
    anthropic.fail_next("usage", 500, times=4)
    assert run(now, five, 55.0, new_reset, code=1) == []
    assert run(now + timedelta(minutes=5), five, 55.0, new_reset, code=1) == []
    alerts = run(now + timedelta(minutes=10), five, 55.0, new_reset, code=1)
    assert [a["kind"] for a in alerts] == ["degraded"]
    assert "500" in str(alerts[0]["plain"])
    assert run(now + timedelta(minutes=15), five, 55.0, new_reset, code=1) == [], "once per episode"
    alerts = run(now + timedelta(minutes=20), five, 55.0, new_reset)
    assert [a["kind"] for a in alerts] == ["recovered"]

    # The refresh chain was never broken: no refresh token was spent twice.
    assert anthropic.invalid_grants == 0
    assert anthropic.refresh_calls >= 2
    stored = (tokens_dir / "refreshToken").read_text().strip()
    assert anthropic.is_unused_refresh(stored), "the newest refresh token is on disk, unspent"
    _no_secrets(anthropic, *outputs)

    status = run_cli(env, "status", now=now + timedelta(minutes=25))
    assert status.code == 0
    assert "Weekly (all models)" in status.stdout and "forecast" in status.stdout
    status_json = json.loads(run_cli(env, "status", "--json", now=now).stdout)
    assert status_json["buckets"]["seven_day"]["utilization"] == 55.0
    assert status_json["health"]["consecutive_failures"] == 0
    _no_secrets(anthropic, status.stdout, status.stderr)


def _lines(text: str) -> list[dict[str, object]]:
    out = []
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out


def test_stdout_holds_only_alert_lines(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, start: datetime
) -> None:
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)
    anthropic.set_usage(payload(five_hour=(10.0, start + HOUR), weekly={"seven_day": (60.0, start + 48 * HOUR)}))
    result = run_cli(env, "run", now=start)
    assert result.code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    alert = json.loads(lines[0])
    assert set(alert) >= {"kind", "bucket", "plain", "html", "id"}
    assert alert["kind"] == "armed"
    assert "already past 50%" in alert["plain"]
    assert "<b>" in alert["html"]
    assert result.stderr, "logs go to stderr"


def test_armed_state_is_v2_and_small(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, start: datetime
) -> None:
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)
    anthropic.set_usage(payload(five_hour=(10.0, start + HOUR), weekly={"seven_day": (60.0, start + 48 * HOUR)}))
    assert run_cli(env, "run", now=start).code == 0
    doc = json.loads((tmp_path / "state" / "state.json").read_text())
    assert doc["schema"] == 2
    assert doc["outbox"] == [], "delivered alerts leave the outbox"
    assert doc["buckets"]["seven_day"]["alerted_thresholds"] == [50]
    text = (tmp_path / "state" / "state.json").read_text()
    assert_no_secrets(issued_secrets(anthropic), text)


def test_bad_environment_names_every_variable(tmp_path: Path) -> None:
    env = {
        "STATE_URL": "ftp://nowhere",
        "WEEKLY_THRESHOLDS": "50,eighty",
        "HEALTH_FAILURES": "-1",
        "NOW_OVERRIDE": "yesterday",
        "OAUTH_TOKENS_DIR": str(tmp_path / "never-created"),
    }
    result = run_cli(env, "run")
    assert result.code == 2
    for name in (
        "STATE_URL",
        "WEEKLY_THRESHOLDS",
        "HEALTH_FAILURES",
        "NOW_OVERRIDE",
        "MATRIX_ROOM_ID",
        "K8S_OAUTH_SECRET_NAME",
    ):
        assert name in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "never-created").exists(), "no I/O before the configuration is valid"


def test_a_bad_time_zone_or_log_level_stops_the_run_before_any_io(tmp_path: Path, anthropic: FakeAnthropic) -> None:
    # docs/design.md §3, §9: TIMEZONE is checked with the other variables; LOG_LEVEL takes any case.
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, TIMEZONE="Mars/Olympus_Mons", LOG_LEVEL="debug")
    result = run_cli(env, "run")
    assert result.code == 2
    assert "TIMEZONE: expected an IANA time zone name" in result.stderr and "LOG_LEVEL" not in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "state").exists(), "no I/O before the configuration is valid"
    assert anthropic.usage_calls == 0

    result = run_cli({**env, "TIMEZONE": "Europe/Berlin", "LOG_LEVEL": "chatty", "QUIET_HOURS": "late"}, "run")
    assert result.code == 2
    assert "LOG_LEVEL: expected one of DEBUG, INFO, WARNING, ERROR" in result.stderr and "QUIET_HOURS" in result.stderr
    assert "Traceback" not in result.stderr and "usage:" not in result.stderr
    assert not (tmp_path / "state").exists()


def test_upstream_errors_exit_nonzero_without_traceback(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, start: datetime
) -> None:
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, HEALTH_FAILURES="10")
    anthropic.set_usage(payload(weekly={"seven_day": (10.0, start + 48 * HOUR)}))
    for status, body in ((403, None), (429, None), (502, "<html>bad gateway</html>"), (200, '{"five_hour": ')):
        anthropic.fail_next("usage", status, body=body, headers={"Retry-After": "120"} if status == 429 else None)
        result = run_cli(env, "run", now=start)
        assert result.code == 1, (status, result.stderr)
        assert "Traceback" not in result.stderr
        assert result.stdout == ""
        start += timedelta(minutes=5)
    _no_secrets(anthropic, result.stderr)


def test_future_schema_is_refused_and_left_untouched(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, start: datetime
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    original = b'{"schema": 9, "buckets": {}}\n'
    (state_dir / "state.json").write_bytes(original)
    anthropic.set_usage(payload(weekly={"seven_day": (10.0, start + 48 * HOUR)}))
    result = run_cli(bot_env(tmp_path, anthropic.base_url, anthropic.token_url), "run", now=start)
    assert result.code == 1
    assert "schema 9" in result.stderr
    assert (state_dir / "state.json").read_bytes() == original
    assert anthropic.usage_calls == 0, "nothing is fetched for a state we cannot keep"


def test_corrupt_state_is_moved_aside_and_rearms(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, start: datetime
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "state.json").write_bytes(b"{not json")
    anthropic.set_usage(payload(weekly={"seven_day": (10.0, start + 48 * HOUR)}))
    result = run_cli(bot_env(tmp_path, anthropic.base_url, anthropic.token_url), "run", now=start)
    assert result.code == 0, result.stderr
    assert result.kinds() == ["armed"]
    assert "re-armed" in result.alerts[0]["plain"] and "moved aside" in result.alerts[0]["plain"]
    aside = list(state_dir.glob("state.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == b"{not json"


def test_v1_state_is_upgraded_without_rearming(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, start: datetime
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    reset = start + 48 * HOUR
    v1 = {
        "seven_day": {"utilization": 55.0, "resets_at": reset.isoformat(), "alerted_thresholds": [50]},
        "five_hour": {"utilization": 5.0, "resets_at": (start + HOUR).isoformat(), "alerted_thresholds": []},
    }
    (state_dir / "state.json").write_text(json.dumps(v1))
    anthropic.set_usage(payload(five_hour=(6.0, start + HOUR), weekly={"seven_day": (56.0, reset)}))
    result = run_cli(bot_env(tmp_path, anthropic.base_url, anthropic.token_url), "run", now=start)
    assert result.code == 0, result.stderr
    assert result.alerts == [], "no re-arm and no repeated 50% alert after an upgrade"
    doc = json.loads((state_dir / "state.json").read_text())
    assert doc["schema"] == 2
    assert doc["buckets"]["seven_day"]["alerted_thresholds"] == [50]


# --- status on a state.json it cannot understand (issue 12) ---------------------------------

UNREADABLE_STATES = {
    "not-json": b"{half a state",
    "a-list": b"[1, 2, 3]",
    "mistyped-buckets": b'{"schema": 2, "buckets": ["seven_day"]}',
    "mistyped-utilization": b'{"schema": 2, "buckets": {"seven_day": {"utilization": "high"}}}',
    "mistyped-time": b'{"schema": 2, "armed_at": 12, "buckets": {}}',
    "unknown-outbox-kind": b'{"schema": 2, "outbox": [{"id": "x", "kind": "party", "plain": "", "html": ""}]}',
    "future-schema": b'{"schema": 99}',
    "not-utf8": b"\xff\xfe{}",
}


@pytest.mark.parametrize("data", UNREADABLE_STATES.values(), ids=UNREADABLE_STATES.keys())
def test_status_on_an_unreadable_state_says_so_exits_1_and_leaves_it(
    tmp_path: Path, anthropic: FakeAnthropic, data: bytes
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "state.json").write_bytes(data)
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url)
    for args in (("status",), ("status", "--json")):
        result = run_cli(env, *args)
        assert result.code == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert "state.json" in result.stderr and result.stdout == ""
    assert (state_dir / "state.json").read_bytes() == data, "status never touches the file"
    assert sorted(p.name for p in state_dir.iterdir()) == ["state.json"]


@pytest.mark.parametrize("data", UNREADABLE_STATES.values(), ids=UNREADABLE_STATES.keys())
def test_get_on_an_unreadable_state_is_a_json_500(
    tmp_path: Path, anthropic: FakeAnthropic, monkeypatch: pytest.MonkeyPatch, data: bytes
) -> None:
    from functions_framework import create_app

    from tests.helpers import REPO

    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "state.json").write_bytes(data)
    for name, value in bot_env(tmp_path, anthropic.base_url, anthropic.token_url).items():
        monkeypatch.setenv(name, value)
    app = create_app(target="watch", source=str(REPO / "function" / "main.py"))  # type: ignore[no-untyped-call]
    response = app.test_client().get("/")
    assert response.status_code == 500
    assert "state.json" in response.get_json()["error"]
    assert (state_dir / "state.json").read_bytes() == data
