"""The whole weekly window in the core (DESIGN §7): hourly samples, the times thresholds
and the limit were passed, and the weekly digest built from them at a natural rollover.

Driven directly like test_core_decide.py (readings in, alerts and state out, `now` an
argument): no mocks, no clock, no I/O.
"""

from __future__ import annotations

from datetime import datetime

from claude_matrix_bot.core.pictures import chart_samples
from claude_matrix_bot.state import MAX_HOURLY_SAMPLES, dump_state, parse_state
from tests.test_core_decide import DAY, HOUR, MIN, NEXT_WEEK_RESET, T0, WEEK_RESET, Watch, armed_watch, jitter

T0_TS = int(T0.timestamp())  # 12:00 UTC, a whole hour
H = 3600


def ts(moment: datetime) -> int:
    return int(moment.timestamp())


# --- hourly samples (DESIGN §7: "at most one per hour", the current window only) --------------


def test_one_sample_per_hour_the_first_reading_of_the_hour_at_the_whole_hour() -> None:
    watch = armed_watch(weekly=10.0)
    for step in range(1, 36):  # every 5 minutes for ~3 hours
        watch.see({"seven_day": (10.0 + step, WEEK_RESET)}, at=T0 + step * 5 * MIN)
    week = watch.bucket("seven_day")
    # 12:00 is the arming reading; 13:00 the reading at 13:00 (step 12), 14:00 step 24, 14:55 the last.
    assert week.hourly == ((T0_TS, 10.0), (T0_TS + H, 22.0), (T0_TS + 2 * H, 34.0))
    assert [t % H for t, _ in week.hourly] == [0, 0, 0]


def test_five_hour_keeps_no_hourly_samples() -> None:
    watch = armed_watch()
    watch.see({"five_hour": (30.0, T0 + 4 * HOUR), "seven_day": (11.0, WEEK_RESET)}, at=T0 + HOUR)
    assert watch.bucket("five_hour").hourly == ()
    assert watch.bucket("five_hour").passed == ()


def test_values_are_kept_to_one_decimal() -> None:
    watch = armed_watch(weekly=10.04)
    watch.see({"seven_day": (12.3456, WEEK_RESET)}, at=T0 + HOUR)
    assert watch.bucket("seven_day").hourly == ((T0_TS, 10.0), (T0_TS + H, 12.3))


def test_hours_without_a_reading_are_gaps_and_cost_a_null_in_the_file() -> None:
    watch = armed_watch(weekly=10.0)
    watch.fail(at=T0 + HOUR)  # a failed cycle adds no sample
    watch.see({"seven_day": (20.0, WEEK_RESET)}, at=T0 + 3 * HOUR + 10 * MIN)
    week = watch.bucket("seven_day")
    assert week.hourly == ((T0_TS, 10.0), (T0_TS + 3 * H, 20.0))
    assert watch.state is not None
    raw = dump_state(watch.state)
    assert f'"hourly":[{T0_TS},[10.0,null,null,20.0]]'.encode() in raw
    assert parse_state(raw) == watch.state


def test_a_natural_rollover_starts_a_new_series_and_a_moved_reset_keeps_it() -> None:
    watch = armed_watch(weekly=10.0)
    watch.see({"seven_day": (20.0, WEEK_RESET)}, at=T0 + HOUR)
    # Anthropic moves the anchor of the active window: the same window, the same series.
    moved = WEEK_RESET + 5 * HOUR
    watch.see({"seven_day": (30.0, moved)}, at=T0 + 2 * HOUR)
    assert len(watch.bucket("seven_day").hourly) == 3
    # The window runs out: a new series, starting with the new window's first reading.
    after = moved + 5 * MIN
    watch.see({"seven_day": (1.0, NEXT_WEEK_RESET)}, at=after)
    week = watch.bucket("seven_day")
    assert week.hourly == ((ts(after) - ts(after) % H, 1.0),)
    assert week.passed == ()


def test_the_series_is_capped_at_a_week_and_a_day_keeping_the_latest() -> None:
    far = T0 + 12 * DAY  # a window whose reset keeps moving later: longer than a week
    watch = armed_watch(weekly=1.0)
    for hour in range(1, 10 * 24):
        watch.see({"seven_day": (1.0 + hour * 0.3, jitter(far, hour))}, at=T0 + hour * HOUR)
    hourly = watch.bucket("seven_day").hourly
    assert len(hourly) == MAX_HOURLY_SAMPLES == 8 * 24
    assert hourly[-1][0] == T0_TS + (10 * 24 - 1) * H
    assert hourly[0][0] == hourly[-1][0] - (MAX_HOURLY_SAMPLES - 1) * H


def test_the_chart_draws_the_whole_window_from_hourly_and_recent_samples() -> None:
    watch = armed_watch(weekly=5.0)
    for step in range(1, 12 * 12):  # 12 hours at 5 minutes
        watch.see({"seven_day": (5.0 + step * 0.25, WEEK_RESET)}, at=T0 + step * 5 * MIN)
    week = watch.bucket("seven_day")
    samples = chart_samples(week)
    # The forecast's 6 h history at full resolution, and the hours before it from hourly.
    assert samples[0] == (T0_TS, 5.0)
    assert samples[-1] == week.history[-1]
    assert set(week.history) <= set(samples)
    assert {t for t, _ in week.hourly} <= {t for t, _ in samples}
    assert [t for t, _ in samples] == sorted({t for t, _ in samples})


# --- passed times (for "when each threshold fell", "whether and when the limit was hit") ------


def test_thresholds_and_the_limit_are_timed_when_a_reading_crosses_them() -> None:
    watch = armed_watch(weekly=40.0)
    watch.see({"seven_day": (49.0, WEEK_RESET)}, at=T0 + HOUR)
    watch.see({"seven_day": (81.0, WEEK_RESET)}, at=T0 + 2 * HOUR)  # 50 and 80 at once
    watch.see({"seven_day": (70.0, WEEK_RESET)}, at=T0 + 3 * HOUR)
    watch.see({"seven_day": (85.0, WEEK_RESET)}, at=T0 + 4 * HOUR)  # 80 again: the first time stays
    watch.see({"seven_day": (100.0, WEEK_RESET)}, at=T0 + 5 * HOUR)
    assert watch.bucket("seven_day").passed == ((50, T0_TS + 2 * H), (80, T0_TS + 2 * H), (100, T0_TS + 5 * H))


def test_a_mark_already_past_when_the_window_is_first_seen_has_no_time() -> None:
    watch = armed_watch(weekly=60.0)  # armed mid-window, past 50 already
    watch.see({"seven_day": (90.0, WEEK_RESET)}, at=T0 + HOUR)
    assert watch.bucket("seven_day").passed == ((80, T0_TS + H),)
    # Back from a null (the API left the bucket out): the crossing in between is not timed.
    watch.see({"seven_day": None}, at=T0 + 2 * HOUR)
    watch.see({"seven_day": (100.0, WEEK_RESET)}, at=T0 + 3 * HOUR)
    assert watch.bucket("seven_day").passed == ((80, T0_TS + H),)


def test_custom_thresholds_are_timed_too() -> None:
    from claude_matrix_bot.core.decide import DecideConfig

    watch = armed_watch(weekly=10.0, config=DecideConfig(thresholds=(25, 90)))
    watch.see({"seven_day": (30.0, WEEK_RESET)}, at=T0 + HOUR)
    assert watch.bucket("seven_day").passed == ((25, T0_TS + H),)


def test_every_window_state_reads_back_equal() -> None:
    watch = Watch()
    for hour in range(0, 9 * 24, 3):
        value = min(100.0, (hour % (7 * 24)) * 0.7)
        watch.see({"seven_day": (value, WEEK_RESET if hour < 6 * 24 else NEXT_WEEK_RESET)}, at=T0 + hour * HOUR)
        assert watch.state is not None
        assert parse_state(dump_state(watch.state)) == watch.state
