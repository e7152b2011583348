"""The session family through the real CLI (issue 24): each step is one
`python -m claude_matrix_bot run` (stdout sink, NOW_OVERRIDE) against the loopback fake of the
usage endpoint; the test reads the JSON lines the bot prints. A working day of 5-hour windows:
a threshold, the limit (urgent, with when it is back), back when the bucket comes back null
after its reset, the next window's limit and its back at the rollover; SESSION_ALERTS=off."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from devstack.fakes.anthropic import FakeAnthropic, window
from tests.helpers import bot_env, run_cli

HOUR = timedelta(hours=1)
MIN = timedelta(minutes=1)
Run = Callable[[datetime, "float | None", datetime], list[dict[str, Any]]]


def runner(tmp_path: Path, anthropic: FakeAnthropic, week_reset: datetime, **extra: str) -> Run:
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, FORECAST_ENABLED="false", **extra)

    def run(now: datetime, five: float | None, five_reset: datetime) -> list[dict[str, Any]]:
        anthropic.set_usage(
            {
                "five_hour": window(five, five_reset.isoformat() if five is not None else None),
                "seven_day": window(20.0, week_reset.isoformat()),
            },
            jitter=True,
        )
        result = run_cli(env, "run", now=now)
        assert result.code == 0, result.stderr
        return result.alerts

    return run


def events(alerts: list[dict[str, Any]]) -> list[tuple[str, Any, Any, bool]]:
    return [(a["kind"], a.get("event"), a.get("threshold"), a["urgent"]) for a in alerts]


def test_a_day_of_five_hour_windows(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, start: datetime
) -> None:
    first_reset = start + 3 * HOUR
    second_reset = first_reset + 5 * HOUR
    run = runner(tmp_path, anthropic, start + timedelta(days=5), SESSION_THRESHOLDS="80", TIMEZONE="Europe/Berlin")

    [armed] = run(start, 10.0, first_reset)
    assert armed["kind"] == "armed"
    assert events(run(start + HOUR, 85.0, first_reset)) == [("session", "threshold", 80, False)]
    [limit] = run(start + 2 * HOUR, 100.0, first_reset)
    assert events([limit]) == [("session", "limit", None, True)]
    assert limit["bucket"] == "five_hour"
    assert limit["resets_at"].startswith(first_reset.strftime("%Y-%m-%dT%H:%M")), "machine fields in UTC"
    assert limit["plain"].startswith("⛔ 5-hour session: limit reached\nBack at ")
    assert re.search(r" CES?T \(in 1h\)\.$", limit["plain"]), "said in the reader's zone"
    assert run(start + 2 * HOUR + 5 * MIN, 100.0, first_reset) == [], "once per window"

    # The reset passes and the answer shows the bucket null: the window ended, it is back.
    assert run(first_reset - 5 * MIN, None, first_reset) == []
    [back] = run(first_reset + 5 * MIN, None, first_reset)
    assert events([back]) == [("session", "back", None, False)]
    assert back["plain"].startswith("✅ 5-hour session: the limit is back")
    assert run(first_reset + 10 * MIN, None, first_reset) == []

    # The next window fills up; its back comes at the rollover to the one after.
    assert events(run(first_reset + HOUR, 90.0, second_reset)) == [("session", "threshold", 80, False)]
    assert events(run(first_reset + 2 * HOUR, 100.0, second_reset)) == [("session", "limit", None, True)]
    third_reset = second_reset + 5 * HOUR
    assert events(run(second_reset + MIN, 0.0, third_reset)) == [("session", "back", None, False)]
    assert run(second_reset + 6 * MIN, 2.0, third_reset) == []


def test_session_alerts_off(tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, start: datetime) -> None:
    reset = start + 3 * HOUR
    run = runner(tmp_path, anthropic, start + timedelta(days=5), SESSION_ALERTS="off")
    assert [a["kind"] for a in run(start, 10.0, reset)] == ["armed"]
    assert run(start + HOUR, 100.0, reset) == []
    assert run(reset + MIN, 0.0, reset + 5 * HOUR) == []


def test_status_says_whether_the_limit_is_reached_and_when_it_is_back(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, start: datetime
) -> None:
    reset = start + 3 * HOUR
    run = runner(tmp_path, anthropic, start + timedelta(days=5), TIMEZONE="Europe/Berlin")
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, FORECAST_ENABLED="false", TIMEZONE="Europe/Berlin")

    def status(now: datetime) -> tuple[str, dict[str, Any]]:
        text = run_cli(env, "status", now=now)
        assert text.code == 0, text.stderr
        return text.stdout, json.loads(run_cli(env, "status", "--json", now=now).stdout)["buckets"]["five_hour"]

    run(start, 10.0, reset)
    text, entry = status(start + MIN)
    assert "\n  limit: not reached\n" in text
    assert entry["limit"] == {"reached": False, "back_at": None}

    run(start + 2 * HOUR, 100.0, reset)
    text, entry = status(start + 2 * HOUR + MIN)
    assert re.search(r"^  limit: reached, back at .+ CES?T \(in 59m\)$", text, re.MULTILINE), text
    assert entry["limit"]["reached"] is True
    assert entry["limit"]["back_at"].startswith(reset.strftime("%Y-%m-%dT%H:%M")), "machine fields in UTC"
