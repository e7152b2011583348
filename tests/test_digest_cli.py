"""The weekly digest through the real CLI (docs/design.md §7), stdout sink, simulated time.

A week and a bit of `python -m claude_matrix_bot run` against the loopback fake: the bot
arms as a window opens, reads every three hours while the week's use rises, and the
window rolls over naturally. The digest is printed once, at the rollover, naming the
picture it would post by digest; with DIGEST_ENABLED=false the same rollover, from the
same state, prints nothing. The state on disk holds the window's hourly samples and
stays within docs/design.md §7's 16 KB.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devstack.fakes.anthropic import FakeAnthropic
from tests.helpers import bot_env, payload, run_cli

HOUR = timedelta(hours=1)


def test_the_digest_is_sent_once_at_the_natural_weekly_rollover(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path
) -> None:
    # A day after the real clock, on a whole hour: the window opened an hour ago.
    start = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    reset = start + 7 * 24 * HOUR - HOUR
    next_reset = reset + 7 * 24 * HOUR
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, MPLCONFIGDIR=str(tmp_path / "mpl"))
    seen: list[dict[str, Any]] = []

    def run(now: datetime, week: float, week_reset: datetime, **extra: str) -> list[dict[str, Any]]:
        anthropic.set_usage(payload(weekly={"seven_day": (week, week_reset), "seven_day_opus": None}), jitter=True)
        result = run_cli({**env, **extra}, "run", now=now, timeout=120)
        assert result.code == 0, result.stderr
        return result.alerts

    # Every three hours for the week: 0.5 % at first, 1.5 points more per reading on
    # weekdays (about 60 % by the end), and no forecast (three-hourly samples are too few).
    week = 0.5
    now = start
    while now < reset:
        seen += run(now, week, reset)
        if now.weekday() < 5:
            week += 1.5
        now += 3 * HOUR
    assert [a["kind"] for a in seen if a["kind"] == "digest"] == [], "no digest while the window is open"
    assert seen[0]["kind"] == "armed"

    state_file = tmp_path / "state" / "state.json"
    doc = json.loads(state_file.read_text())
    first_hour, values = doc["buckets"]["seven_day"]["hourly"]
    assert first_hour == int(start.timestamp())
    assert len(values) == 7 * 24 - 2, "a value for every hour of the window read so far"
    assert sum(v is not None for v in values) == 56, "one sample per reading, every three hours"
    assert "hourly" not in doc["buckets"].get("seven_day_opus", {}), "an unused bucket keeps none"
    assert len(state_file.read_bytes()) <= 16 * 1024
    peak = max(v for v in values if v is not None)

    # The same rollover from the same state with DIGEST_ENABLED=false: nothing to say.
    off = tmp_path / "state-off"
    shutil.copytree(tmp_path / "state", off)
    after = reset + timedelta(minutes=5)
    assert run(after, 0.2, next_reset, STATE_URL=off.as_uri(), DIGEST_ENABLED="false") == []

    # The window rolls over naturally: its digest, once, with its picture named by digest.
    [digest] = run(after, 0.2, next_reset)
    assert digest["kind"] == "digest" and digest["bucket"] == "seven_day"
    assert digest["peak"] == peak
    assert digest["limit_hit"] is False and digest["limit_hit_at"] is None
    assert set(digest["passed"]) == {"50"} and digest["passed"]["50"]
    assert digest["busiest_day"]
    assert str(digest["plain"]).startswith("📅 Weekly (all models): the week to ")
    assert "80%: not reached." in str(digest["plain"]) and "Limit: not hit." in str(digest["plain"])
    assert "chart" not in digest, "the chart's inputs are for drawing, not printed"
    assert isinstance(digest["image_bytes"], int) and digest["image_bytes"] > 10_000
    assert re.fullmatch(r"[0-9a-f]{64}", str(digest["image_sha256"]))

    # The new window: a new series, and no second digest.
    assert run(after + 3 * HOUR, 1.0, next_reset) == []
    doc = json.loads(state_file.read_text())
    assert len([v for v in doc["buckets"]["seven_day"]["hourly"][1] if v is not None]) == 2
