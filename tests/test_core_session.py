"""The session family (docs/design.md §1, §8; issue 24), driven directly: the 5-hour limit
reached (urgent, "back at <time>"), back at the first cycle at or after the window's reset
(a rollover, or the bucket null or absent after it), SESSION_THRESHOLDS, SESSION_ALERTS."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from claude_matrix_bot.core.config import DecideConfig
from claude_matrix_bot.model import Alert
from tests.scenarios import FIVE_RESET, MIN, T0, WEEK_RESET, Watch, armed_watch, jitter

NEXT_FIVE = FIVE_RESET.replace(hour=19)
# The weekly forecast off: these journeys are about the 5-hour bucket.
CFG = DecideConfig(charts_enabled=False, forecast_enabled=False)


def said(alerts: list[Alert]) -> list[tuple[str, object, bool]]:
    return [(a.kind, a.details.get("event", a.details.get("threshold")), a.urgent) for a in alerts]


def at_limit(config: DecideConfig = CFG) -> Watch:
    """Armed at 5 %, then the 5-hour bucket reaches its limit at 13:00."""
    watch = armed_watch(config=config)
    alerts = watch.see({"five_hour": (100.0, FIVE_RESET), "seven_day": (30.0, WEEK_RESET)}, at=T0 + 60 * MIN)
    assert said(alerts) == [("session", "limit", True)]
    return watch


def test_the_limit_is_said_once_per_window_urgent_with_when_it_is_back() -> None:
    watch = armed_watch(config=CFG)
    alerts = watch.see({"five_hour": (100.0, jitter(FIVE_RESET, 300)), "seven_day": (30.0, WEEK_RESET)}, at=T0 + MIN)
    [limit] = alerts
    assert limit.bucket == "five_hour"
    assert limit.plain == "⛔ 5-hour session: limit reached\nBack at Fri 2 Jan 15:00 UTC (in 2h 59m)."
    assert limit.details == {"event": "limit", "utilization": 100.0, "resets_at": limit.details["resets_at"]}
    assert limit.to_json()["urgent"] is True
    # Still at the limit, and again after a dip: said once per window.
    assert watch.see({"five_hour": (100.0, FIVE_RESET), "seven_day": (30.0, WEEK_RESET)}, at=T0 + 5 * MIN) == []
    assert watch.see({"five_hour": (99.0, FIVE_RESET), "seven_day": (30.0, WEEK_RESET)}, at=T0 + 10 * MIN) == []
    assert watch.see({"five_hour": (100.0, FIVE_RESET), "seven_day": (30.0, WEEK_RESET)}, at=T0 + 15 * MIN) == []


def test_the_limit_is_said_in_the_readers_zone() -> None:
    config = DecideConfig(charts_enabled=False, forecast_enabled=False, timezone=ZoneInfo("Europe/Berlin"))
    watch = armed_watch(config=config)
    [limit] = watch.see({"five_hour": (100.0, FIVE_RESET), "seven_day": (30.0, WEEK_RESET)}, at=T0 + MIN)
    assert "Back at Fri 2 Jan 16:00 CET" in limit.plain
    assert limit.details["resets_at"] == FIVE_RESET.isoformat(), "machine fields stay UTC"


def test_back_at_the_first_cycle_after_the_reset_when_the_next_window_is_seen() -> None:
    watch = at_limit()
    # Before the reset: nothing, even a minute before.
    assert watch.see({"five_hour": (100.0, FIVE_RESET), "seven_day": (30.0, WEEK_RESET)}, at=FIVE_RESET - MIN) == []
    alerts = watch.see({"five_hour": (0.0, NEXT_FIVE), "seven_day": (30.0, WEEK_RESET)}, at=FIVE_RESET + MIN)
    assert said(alerts) == [("session", "back", False)]
    assert alerts[0].plain.startswith("✅ 5-hour session: the limit is back\nYou can use Claude again.")
    assert watch.see({"five_hour": (3.0, NEXT_FIVE), "seven_day": (30.0, WEEK_RESET)}, at=FIVE_RESET + 6 * MIN) == []


@pytest.mark.parametrize("gone", ["null", "absent"])
def test_back_when_the_bucket_is_null_or_absent_after_its_reset(gone: str) -> None:
    watch = at_limit()
    five = {"five_hour": None} if gone == "null" else {}
    # Null or absent before the reset: the window goes on.
    assert watch.see({**five, "seven_day": (30.0, WEEK_RESET)}, at=FIVE_RESET - 10 * MIN) == []
    alerts = watch.see({**five, "seven_day": (30.0, WEEK_RESET)}, at=FIVE_RESET + MIN)
    assert said(alerts) == [("session", "back", False)]
    # Once: not again while it stays away, nor when it comes back with its next window.
    assert watch.see({**five, "seven_day": (30.0, WEEK_RESET)}, at=FIVE_RESET + 6 * MIN) == []
    assert watch.see({"five_hour": (1.0, NEXT_FIVE), "seven_day": (30.0, WEEK_RESET)}, at=FIVE_RESET + 11 * MIN) == []


def test_no_back_for_a_window_that_never_reached_its_limit() -> None:
    watch = armed_watch(config=CFG)
    watch.see({"five_hour": (99.0, FIVE_RESET), "seven_day": (30.0, WEEK_RESET)}, at=T0 + MIN)
    assert watch.see({"five_hour": (0.0, NEXT_FIVE), "seven_day": (30.0, WEEK_RESET)}, at=FIVE_RESET + MIN) == []
    assert watch.see({"seven_day": (30.0, WEEK_RESET)}, at=NEXT_FIVE + MIN) == []


def test_a_moved_reset_keeps_the_window_and_back_comes_at_the_moved_reset() -> None:
    watch = at_limit()
    later = FIVE_RESET.replace(hour=16)
    alerts = watch.see({"five_hour": (100.0, later), "seven_day": (30.0, WEEK_RESET)}, at=T0 + 2 * 60 * MIN)
    assert [a.kind for a in alerts] == ["reset_shift"], "a shift is said; the limit is not said again"
    assert watch.see({"five_hour": None, "seven_day": (30.0, WEEK_RESET)}, at=FIVE_RESET + MIN) == []
    assert said(watch.see({"five_hour": None, "seven_day": (30.0, WEEK_RESET)}, at=later + MIN)) == [
        ("session", "back", False)
    ]


def test_session_thresholds_once_per_window_not_urgent() -> None:
    watch = armed_watch(config=DecideConfig(charts_enabled=False, forecast_enabled=False, session_thresholds=(80, 90)))
    alerts = watch.see({"five_hour": (85.0, FIVE_RESET), "seven_day": (30.0, WEEK_RESET)}, at=T0 + MIN)
    assert said(alerts) == [("session", "threshold", False)]
    assert alerts[0].details["threshold"] == 80
    assert alerts[0].plain.startswith("🔴 5-hour session usage passed 80%")
    alerts = watch.see({"five_hour": (100.0, FIVE_RESET), "seven_day": (30.0, WEEK_RESET)}, at=T0 + 5 * MIN)
    assert [(a.details["event"], a.details.get("threshold")) for a in alerts] == [("threshold", 90), ("limit", None)]
    assert watch.see({"five_hour": (0.0, NEXT_FIVE), "seven_day": (30.0, WEEK_RESET)}, at=FIVE_RESET + MIN) != []
    # A new window: its thresholds are said again.
    alerts = watch.see({"five_hour": (81.0, NEXT_FIVE), "seven_day": (30.0, WEEK_RESET)}, at=FIVE_RESET + 9 * MIN)
    assert [a.details.get("threshold") for a in alerts] == [80]


def test_session_alerts_off_says_neither_limit_nor_back_but_keeps_the_thresholds() -> None:
    config = DecideConfig(
        charts_enabled=False, forecast_enabled=False, session_alerts=False, session_thresholds=(50, 100)
    )
    watch = armed_watch(config=config)
    alerts = watch.see({"five_hour": (100.0, FIVE_RESET), "seven_day": (30.0, WEEK_RESET)}, at=T0 + MIN)
    assert [(a.details["event"], a.details["threshold"]) for a in alerts] == [("threshold", 50), ("threshold", 100)]
    assert watch.see({"five_hour": (0.0, NEXT_FIVE), "seven_day": (30.0, WEEK_RESET)}, at=FIVE_RESET + MIN) == []


def test_armed_at_the_limit_says_only_the_baseline_then_back() -> None:
    watch = Watch(config=CFG, now=T0)
    [armed] = watch.see({"five_hour": (100.0, FIVE_RESET), "seven_day": (30.0, WEEK_RESET)})
    assert armed.kind == "armed"
    assert "5-hour session: 100%" in armed.plain
    assert watch.see({"five_hour": (100.0, FIVE_RESET), "seven_day": (30.0, WEEK_RESET)}, at=T0 + 5 * MIN) == []
    alerts = watch.see({"five_hour": (0.0, NEXT_FIVE), "seven_day": (30.0, WEEK_RESET)}, at=FIVE_RESET + MIN)
    assert said(alerts) == [("session", "back", False)]


def test_ids_are_stable_per_window_and_event() -> None:
    first, second = at_limit(), at_limit()
    assert first.log[-1].id == second.log[-1].id
    assert first.log[-1].id.startswith("cmb-session-")
    back = first.see({"five_hour": (0.0, NEXT_FIVE), "seven_day": (30.0, WEEK_RESET)}, at=FIVE_RESET + MIN)
    assert back[0].id != first.log[-2].id
