"""The credit, banked-reset and Team-seat families through the real CLI (issue 23): each step
is one `python -m claude_matrix_bot run` (stdout sink, NOW_OVERRIDE, the default User-Agent)
against the loopback fake, which serves `cedar_ember` only to `?cedar_ember=1` from Claude
Code's agent, as the real endpoint does; the test reads the JSON lines the bot prints and
`status`."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from claude_matrix_bot.settings import DEFAULT_USER_AGENT
from devstack.fakes.anthropic import (
    SAMPLE_TEAM_SEAT,
    FakeAnthropic,
    banked_block,
    credit_entry,
    grant_entry,
    spend_answer,
    window,
)
from tests.helpers import bot_env, run_cli

HOUR = timedelta(hours=1)
Run = Callable[..., list[dict[str, Any]]]


def runner(tmp_path: Path, anthropic: FakeAnthropic, **extra: str) -> tuple[Run, dict[str, str]]:
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, **extra)

    def run(now: datetime, usage: dict[str, Any]) -> list[dict[str, Any]]:
        anthropic.set_usage(usage)
        result = run_cli(env, "run", now=now)
        assert result.code == 0, result.stderr
        return result.alerts

    return run, env


def events(alerts: list[dict[str, Any]]) -> list[tuple[str, Any, bool]]:
    return [(a["kind"], a.get("event", a.get("threshold")), a["urgent"]) for a in alerts]


def windows(now: datetime, five: float = 10.0, week: float = 20.0) -> dict[str, Any]:
    return {
        "five_hour": window(five, (now + 3 * HOUR).isoformat()),
        "seven_day": window(week, (now + timedelta(days=5)).isoformat()),
    }


def test_a_credit_from_appearance_to_expiry(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, start: datetime
) -> None:
    run, env = runner(tmp_path, anthropic)
    expires = start + timedelta(days=10)

    def at(now: datetime, used: float | None) -> list[dict[str, Any]]:
        usage = windows(start)
        if used is not None:
            usage["iguana_necktie"] = credit_entry(250, used, expires.isoformat())
        return run(now, usage)

    assert [a["kind"] for a in at(start, None)] == ["armed"]
    (new,) = at(start + HOUR, 2.47)
    assert (new["kind"], new["event"], new["credit"], new["remaining"]) == ("credit", "new", "iguana_necktie", 247.53)
    assert "bucket" not in new and new["plain"].startswith("💳 A $250.00 credit is on the account")
    assert at(start + 2 * HOUR, 2.47) == []
    assert events(at(start + timedelta(days=2), 210)) == [("credit", "80", False)]
    assert events(at(expires - 70 * HOUR, 220)) == [("credit", "72h", False)]
    assert at(expires - 60 * HOUR, 220) == []
    status = run_cli(env, "status", now=expires - 30 * HOUR)
    assert (
        "Credit (iguana_necktie): $30.00 left of $250.00" in status.stdout and "alerted: 72h, 80%, new" in status.stdout
    )
    reminder = at(expires - 20 * HOUR, 225)
    assert events(reminder) == [("credit", "24h", True)]
    assert "with $25.00 unused" in reminder[0]["plain"]
    assert at(expires - 10 * HOUR, 225) == []
    assert at(expires + HOUR, None) == []  # gone at expiry: nothing more to say
    report = json.loads(run_cli(env, "status", "--json", now=expires + 2 * HOUR).stdout)
    assert report["families"]["credits"] == []


def test_a_banked_reset_from_appearance_through_a_limit_episode_to_its_end(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, start: datetime
) -> None:
    run, env = runner(tmp_path, anthropic)
    ends = start + timedelta(days=6)
    grant_id = "opus55-launch-promax-20260921"

    def at(
        now: datetime, *, five: float = 10.0, left: int = 1, usable: bool = False, grant: bool = True
    ) -> list[dict[str, Any]]:
        grants = [grant_entry(grant_id, ends.isoformat(), starts_at=None, resets_left=left, usable_now=usable)]
        return run(now, {**windows(start, five=five), "cedar_ember": banked_block(grants if grant else [])})

    assert [a["kind"] for a in at(start, grant=False)] == ["armed"]
    (available,) = at(start + HOUR)
    assert (available["kind"], available["event"], available["grant_id"], available["resets_left"]) == (
        "banked_reset",
        "available",
        grant_id,
        1,
    )
    assert "A reset clears: 5-hour session, Weekly (all models)." in available["plain"]
    assert at(start + 2 * HOUR) == []
    assert events(at(ends - 71 * HOUR)) == [("banked_reset", "72h", False)]
    status = run_cli(env, "status", now=ends - 70 * HOUR).stdout
    assert (
        "Banked reset “Claude Opus 5.5 launch" in status and "1 left" in status and "alerted: 72h, available" in status
    )
    # A limit episode: "usable now" once, however long the account stays at the limit.
    limit, usable = at(ends - 50 * HOUR, five=100, usable=True)
    assert (limit["kind"], limit["event"]) == ("session", "limit"), "the session's own signal (issue 24)"
    assert usable["event"] == "usable_now" and "At a limit (5-hour session)" in usable["plain"]
    assert at(ends - 49 * HOUR, five=100, usable=True) == []
    assert at(ends - 45 * HOUR, five=20) == []
    assert events(at(ends - 23 * HOUR)) == [("banked_reset", "24h", True)]
    assert at(ends - 12 * HOUR) == []
    assert at(ends + HOUR, grant=False) == []
    methods = {(r.method, r.path) for r in anthropic.requests}
    assert methods <= {("GET", "/api/oauth/usage"), ("POST", "/v1/oauth/token")}, "it never claims a reset"
    assert all(r.query == "cedar_ember=1" for r in anthropic.requests if r.method == "GET")
    # Claude Code's own agent on every request, the token refresh included (docs/design.md §2).
    assert anthropic.refresh_calls > 0
    assert {r.header("User-Agent") for r in anthropic.requests} == {DEFAULT_USER_AGENT}


def test_a_team_seat_over_a_month(tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, start: datetime) -> None:
    run, env = runner(tmp_path, anthropic)

    def at(day: int, used_minor: int) -> list[dict[str, Any]]:
        return run(start + timedelta(days=day), {**SAMPLE_TEAM_SEAT, **spend_answer(used_minor, 500000)})

    (armed,) = at(0, 0)
    assert armed["kind"] == "armed" and "• Extra usage: on, $0.00 of $5,000.00 (0%) spent" in armed["plain"]

    def spend(alerts: list[dict[str, Any]]) -> list[tuple[str, Any]]:
        return [(a["kind"], a.get("threshold", a.get("started"))) for a in alerts]

    assert spend(at(2, 15000)) == [("extra_usage", True)]  # money starts being spent
    assert at(5, 90000) == []
    assert spend(at(12, 260000)) == [("extra_usage", 50)]
    assert spend(at(20, 401000)) == [("extra_usage", 80)]
    assert at(24, 450000) == []
    assert spend(at(28, 500000)) == [("extra_usage", 100)]
    status = run_cli(env, "status", now=start + timedelta(days=29))
    assert status.code == 0 and "Extra usage: on, $5,000.00 of $5,000.00 (100%) spent" in status.stdout
    assert "FAILING" not in status.stdout
