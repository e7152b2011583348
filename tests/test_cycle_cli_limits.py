"""The whole cycle through the real CLI over a simulated week on a limits-only account
(issue 11): every legacy key null, every number in `limits[]`, the Fable weekly limit
binding, then paid overage. Each step is one `python -m claude_matrix_bot run` (stdout
sink, NOW_OVERRIDE) against the loopback fake; the test reads the JSON lines it prints.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from devstack.fakes.anthropic import FakeAnthropic, limits_only_answer, spend_answer
from tests.helpers import assert_no_secrets, bot_env, issued_secrets, run_cli

HOUR = timedelta(hours=1)


def test_simulated_week_on_a_limits_only_account(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, start: datetime
) -> None:
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, HEALTH_FAILURES="3", FORECAST_WINDOW_SEC="7200")
    weekly_reset = start + timedelta(days=4)
    fable_reset = weekly_reset - timedelta(hours=1)
    five_reset = start + 3 * HOUR
    outputs: list[str] = []

    def run(
        now: datetime,
        five: float,
        week: float,
        fable: float,
        *,
        five_at: datetime | None = None,
        overage: dict[str, Any] | None = None,
        answer: dict[str, Any] | None = None,
        code: int = 0,
    ) -> list[dict[str, Any]]:
        usage = answer or limits_only_answer(
            session=(five, (five_at or five_reset).isoformat()),
            weekly_all=(week, weekly_reset.isoformat()),
            scoped={"Fable": (fable, fable_reset.isoformat())},
            active="Fable",
            severities={"Fable": "warning"} if fable >= 80 else None,
            overage=overage,
        )
        anthropic.set_usage(usage, jitter=True)
        result = run_cli(env, "run", now=now)
        outputs.extend([result.stdout, result.stderr])
        assert result.code == code, result.stderr
        return result.alerts

    def said(alerts: list[dict[str, Any]]) -> list[tuple[str, Any, Any]]:
        return [(a["kind"], a.get("bucket"), a.get("threshold", a.get("started"))) for a in alerts]

    # Armed: the baseline names every limit from limits[], the binding one included.
    [armed] = run(start, 24, 30, 35)
    assert armed["kind"] == "armed"
    assert "• 5-hour session: 24%" in armed["plain"]
    assert "• Weekly (all models): 30%" in armed["plain"]
    assert "• Weekly Fable: 35%" in armed["plain"] and "(binding now)" in armed["plain"]
    assert "• Weekly Opus: not in use" in armed["plain"]
    assert "• Extra usage: off" in armed["plain"]

    # Quiet: the same numbers with jittered resets.
    assert run(start + timedelta(minutes=5), 24, 30, 35) == []

    # The Fable threshold: a bucket that exists only in limits[].
    alerts = run(start + timedelta(minutes=10), 25, 30, 51)
    assert said(alerts) == [("threshold", "seven_day_fable", 50)]
    assert alerts[0]["plain"].startswith("🟠 Weekly Fable usage passed 50%")
    assert "binding now" in alerts[0]["plain"]

    # A reset shift of the session window (limits[] `session` -> five_hour).
    alerts = run(start + timedelta(minutes=15), 25, 30, 51, five_at=five_reset + HOUR)
    assert said(alerts) == [("reset_shift", "five_hour", None)]

    # A steady Fable burn: one forecast, and its 80% on the way.
    now = start + timedelta(minutes=15)
    fable = 51.0
    seen: list[dict[str, Any]] = []
    for _ in range(8):
        now += timedelta(minutes=12)
        fable += 4.0
        seen += run(now, 26, 30, fable, five_at=five_reset + HOUR)
    forecasts = [a for a in seen if a["kind"] == "forecast"]
    assert len(forecasts) == 1 and forecasts[0]["bucket"] == "seven_day_fable"
    assert forecasts[0]["projected_at"] and "%/h" in forecasts[0]["plain"]
    assert "Weekly Fable on track to run out before it resets" in forecasts[0]["plain"]
    assert ("threshold", "seven_day_fable", 80) in said(seen)

    # The account-wide weekly limit (limits[] `weekly_all` -> seven_day) has its own thresholds.
    now += timedelta(minutes=5)
    alerts = run(now, 26, 52, fable, five_at=five_reset + HOUR)
    # (The jump may also forecast seven_day: a burn of its own, decided like any other.)
    assert ("threshold", "seven_day", 50) in said(alerts)
    assert all(a["bucket"] == "seven_day" for a in alerts)

    # Fable at 100%: the plan is used up and paid overage takes over.
    now += HOUR
    assert run(now, 40, 52, 100, five_at=five_reset + HOUR, overage=spend_answer(0, 11000)) == []
    alerts = run(now + timedelta(minutes=5), 40, 52, 100, five_at=five_reset + HOUR, overage=spend_answer(42, 11000))
    assert said(alerts) == [("extra_usage", None, True)]
    assert "bucket" not in alerts[0]
    assert (alerts[0]["used"], alerts[0]["limit"], alerts[0]["currency"]) == (42, 11000, "USD")
    alerts = run(now + timedelta(minutes=10), 40, 52, 100, five_at=five_reset + HOUR, overage=spend_answer(9221, 11000))
    assert said(alerts) == [("extra_usage", None, 50), ("extra_usage", None, 80)]
    assert "$92.21 of $110.00" in alerts[1]["plain"]

    # The endpoint goes all-null: never silent, counted every cycle, degraded after three.
    now += 2 * HOUR
    empty = {"five_hour": None, "seven_day": None, "limits": []}
    assert run(now, 0, 0, 0, answer=empty, code=1) == []
    assert run(now + timedelta(minutes=5), 0, 0, 0, answer=empty, code=1) == []
    [degraded] = run(now + timedelta(minutes=10), 0, 0, 0, answer=empty, code=1)
    assert degraded["kind"] == "degraded" and "no usage limit in the answer" in degraded["plain"]
    [recovered] = run(now + timedelta(minutes=15), 40, 52, 100, five_at=five_reset + HOUR)
    assert recovered["kind"] == "recovered"

    # status: the Fable bucket by name, the binding judgement, the overage, unknown numbers.
    anthropic.set_usage(
        {
            **limits_only_answer(
                session=(40, (five_reset + HOUR).isoformat()),
                weekly_all=(52, weekly_reset.isoformat()),
                scoped={"Fable": (100, fable_reset.isoformat())},
                active="Fable",
                severities={"Fable": "warning"},
                overage=spend_answer(9500, 11000),
            ),
            "amber_gauge": {"percent": 12},
        }
    )
    assert run_cli(env, "run", now=now + timedelta(minutes=20)).code == 0
    status = run_cli(env, "status", now=now + timedelta(minutes=25))
    assert status.code == 0, status.stderr
    assert "Weekly Fable (seven_day_fable): 100%" in status.stdout
    assert "(binding now, warning)" in status.stdout
    assert "Extra usage: on, $95.00 of $110.00 (86.4%) spent" in status.stdout
    assert "alerted: started, 50%, 80%" in status.stdout
    assert "does not read" in status.stdout and "amber_gauge" in status.stdout
    doc = json.loads(run_cli(env, "status", "--json", now=now + timedelta(minutes=25)).stdout)
    assert doc["buckets"]["seven_day_fable"]["is_active"] is True
    assert doc["extra_usage"]["used"] == 9500 and doc["extra_usage"]["currency"] == "USD"
    assert doc["unknown_numbers"] == ["amber_gauge"]
    assert anthropic.invalid_grants == 0
    assert_no_secrets(issued_secrets(anthropic), *outputs, status.stdout, status.stderr)
