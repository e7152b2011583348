"""The whole weekly window in the core (docs/design.md §7): hourly samples, the times thresholds
and the limit were passed, and the weekly digest built from them at a natural rollover.

Driven directly like test_core_decide.py (readings in, alerts and state out, `now` an
argument): no mocks, no clock, no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_matrix_bot.charts import ChartSpec
from claude_matrix_bot.core.decide import DecideConfig, decide
from claude_matrix_bot.core.digest import busiest_day, summarize
from claude_matrix_bot.core.pictures import chart_samples
from claude_matrix_bot.model import Alert
from claude_matrix_bot.state import MAX_HOURLY_SAMPLES, BucketState, State, dump_state, parse_state
from tests.scenarios import (
    CFG,
    DAY,
    HOUR,
    MIN,
    NEXT_WEEK_RESET,
    T0,
    WEEK_RESET,
    Watch,
    armed_watch,
    busy_week,
    jitter,
    kinds,
    reading,
    roll_over,
)

T0_TS = int(T0.timestamp())  # 12:00 UTC, a whole hour
H = 3600
DAY_S = 86400


def ts(moment: datetime) -> int:
    return int(moment.timestamp())


def iso(unix: int) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat()


# --- hourly samples (docs/design.md §7: "at most one per hour", the current window only) --------------


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
    watch = armed_watch(weekly=10.0, config=DecideConfig(weekly_thresholds=(25, 90)))
    watch.see({"seven_day": (30.0, WEEK_RESET)}, at=T0 + HOUR)
    assert watch.bucket("seven_day").passed == ((25, T0_TS + H),)


def test_every_window_state_reads_back_equal() -> None:
    watch = Watch()
    for hour in range(0, 9 * 24, 3):
        value = min(100.0, (hour % (7 * 24)) * 0.7)
        watch.see({"seven_day": (value, WEEK_RESET if hour < 6 * 24 else NEXT_WEEK_RESET)}, at=T0 + hour * HOUR)
        assert watch.state is not None
        assert parse_state(dump_state(watch.state)) == watch.state


# --- the weekly digest (docs/design.md §7: at each natural weekly rollover, once, used buckets only) ----


def test_the_digest_sums_up_the_closed_window() -> None:
    watch = busy_week()
    week = watch.bucket("seven_day")
    [digest] = roll_over(watch)

    assert digest.kind == "digest" and digest.bucket == "seven_day"
    d = digest.details
    assert d["peak"] == 100.0
    tuesday = datetime(2026, 1, 6, tzinfo=UTC)
    assert d["passed"] == {"50": (tuesday + 12 * HOUR).isoformat(), "80": (tuesday + 15 * HOUR).isoformat()}
    assert d["limit_hit"] is True and d["limit_hit_at"] == (tuesday + DAY + 10 * HOUR).isoformat()
    assert week.passed == ((50, ts(tuesday + 12 * HOUR)), (80, ts(tuesday + 15 * HOUR)), (100, ts(tuesday + 34 * HOUR)))
    assert d["busiest_day"] == "2026-01-06"
    assert d["resets_at"] == WEEK_RESET.isoformat()
    assert d["window_start"] == (WEEK_RESET - 7 * DAY).isoformat()

    plain = digest.plain
    assert plain.startswith("📅 Weekly (all models): the week to Thu 8 Jan in review")
    assert "Window Thu 1 Jan 07:00 UTC to Thu 8 Jan 07:00 UTC." in plain
    assert "Peak 100%, on Wed 7 Jan." in plain
    assert "50%: passed Tue 6 Jan 12:00 UTC." in plain and "80%: passed Tue 6 Jan 15:00 UTC." in plain
    assert "Limit: hit Wed 7 Jan 10:00 UTC, 21h before the reset." in plain
    assert "Busiest day: Tue 6 Jan (+80% of the limit)." in plain
    assert digest.html.startswith("<b>📅 Weekly (all models)")


def test_the_digest_carries_the_whole_window_as_its_chart() -> None:
    watch = busy_week()
    week = watch.bucket("seven_day")
    [digest] = roll_over(watch)
    spec = ChartSpec.from_json(digest.details["chart"])
    assert spec.samples == chart_samples(week)
    assert len(spec.samples) >= 5 * 24, "the whole window, not the forecast's six hours"
    assert spec.resets_at == ts(WEEK_RESET) and spec.window_start == ts(WEEK_RESET - 7 * DAY)
    assert spec.limit_hit_at == week.passed[2][1]
    assert spec.fit is None, "a closed window: nothing projected"
    assert spec.thresholds == (50, 80)
    assert "peak 100%" in spec.title


def test_no_chart_with_charts_disabled_and_no_digest_with_the_digest_disabled() -> None:
    [text_only] = roll_over(busy_week(DecideConfig(charts_enabled=False)))
    assert text_only.kind == "digest" and "chart" not in text_only.details
    assert roll_over(busy_week(DecideConfig(digest_enabled=False))) == []


def test_once_per_rollover_and_a_new_id_per_window() -> None:
    watch = busy_week()
    [first] = roll_over(watch)
    assert watch.see({"seven_day": (1.0, NEXT_WEEK_RESET)}, at=WEEK_RESET + 10 * MIN) == []
    # The next window: used, then closed naturally as well, gets its own digest.
    watch.see({"seven_day": (20.0, NEXT_WEEK_RESET)}, at=WEEK_RESET + DAY)
    [second] = watch.see({"seven_day": (0.0, NEXT_WEEK_RESET + 7 * DAY)}, at=NEXT_WEEK_RESET + MIN)
    assert second.kind == "digest" and second.id != first.id
    assert second.details["passed"] == {}
    assert "50%: not reached." in second.plain and "Limit: not hit." in second.plain


def test_the_same_rollover_decided_twice_gives_the_same_digest() -> None:
    watch = busy_week()
    before = watch.state
    now = WEEK_RESET + 5 * MIN
    one = decide(before, reading(now, {"seven_day": (0.5, NEXT_WEEK_RESET)}), now, CFG)
    two = decide(before, reading(now, {"seven_day": (0.5, jitter(NEXT_WEEK_RESET, 7))}), now, CFG)
    assert [a.id for a in one.alerts] == [a.id for a in two.alerts]
    assert one.alerts == two.alerts


def test_a_moved_reset_is_no_rollover_and_sends_no_digest() -> None:
    watch = busy_week(until=WEEK_RESET - DAY)
    alerts = watch.see({"seven_day": (70.0, WEEK_RESET + 6 * HOUR)}, at=WEEK_RESET - DAY + HOUR)
    assert kinds(alerts) == ["reset_shift"]
    # The moved window ends at its new reset; its digest comes then, once.
    assert watch.see({"seven_day": (70.0, WEEK_RESET + 6 * HOUR)}, at=WEEK_RESET + HOUR) == []
    [digest] = watch.see({"seven_day": (0.0, NEXT_WEEK_RESET + 6 * HOUR)}, at=WEEK_RESET + 6 * HOUR + MIN)
    assert digest.kind == "digest"
    assert digest.details["resets_at"] == (WEEK_RESET + 6 * HOUR).isoformat()


@pytest.mark.parametrize(
    ("values", "digest"),
    [
        ([0.0, 0.0, 0.0], False),  # present but unused all week
        ([None, None, None], False),  # the API left it out all week
        ([0.0, 0.5, 0.5], True),  # used a little
        ([None, 3.0, None], True),  # used, then left out before the rollover
    ],
)
def test_only_used_buckets_get_a_digest(values: list[float | None], digest: bool) -> None:
    watch = armed_watch(weekly=1.0)
    for hour, value in enumerate(values, start=1):
        resets = None if value is None else WEEK_RESET
        watch.see(
            {"seven_day": (1.0, WEEK_RESET), "seven_day_opus": None if value is None else (value, resets)},
            at=T0 + hour * HOUR,
        )
    alerts = roll_over(watch, "seven_day", "seven_day_opus")
    assert sorted(a.bucket or "" for a in alerts) == (["seven_day", "seven_day_opus"] if digest else ["seven_day"])


def test_every_used_weekly_bucket_gets_its_own_digest_and_five_hour_none() -> None:
    watch = armed_watch(weekly=5.0)
    watch.see(
        {"five_hour": (40.0, T0 + 3 * HOUR), "seven_day": (30.0, WEEK_RESET), "seven_day_sonnet": (60.0, WEEK_RESET)},
        at=T0 + HOUR,
    )
    watch.see({"five_hour": (0.0, T0 + 9 * HOUR), "seven_day": (31.0, WEEK_RESET)}, at=T0 + 4 * HOUR)
    alerts = roll_over(watch, "seven_day", "seven_day_sonnet")
    assert [(a.kind, a.bucket) for a in alerts] == [("digest", "seven_day"), ("digest", "seven_day_sonnet")]
    assert len({a.id for a in alerts}) == 2


def test_thresholds_past_before_the_watch_saw_the_window_are_said_so() -> None:
    watch = armed_watch(weekly=85.0)  # armed late in a heavy week
    watch.see({"seven_day": (100.0, WEEK_RESET)}, at=T0 + HOUR)
    [digest] = roll_over(watch)
    assert digest.details["passed"] == {"50": None, "80": None}
    assert digest.details["limit_hit_at"] == iso(T0_TS + H)
    assert "50%: already past when the watch first saw this window." in digest.plain
    assert "80%: already past when the watch first saw this window." in digest.plain


def test_a_window_the_bot_never_sampled_gets_no_digest() -> None:
    # Upgraded from a v1 file: one number, no sample of the window: nothing to sum up.
    previous = State(buckets={"seven_day": BucketState(utilization=62.0, resets_at=WEEK_RESET, window=WEEK_RESET)})
    now = WEEK_RESET + 5 * MIN
    assert decide(previous, reading(now, {"seven_day": (0.0, NEXT_WEEK_RESET)}), now, CFG).alerts == ()


def test_back_after_a_long_outage_the_old_window_gets_its_digest() -> None:
    watch = busy_week(until=T0 + 2 * DAY)
    # Nothing read for ten days: the first reading is two windows on.
    [digest] = watch.see({"seven_day": (12.0, NEXT_WEEK_RESET + 7 * DAY)}, at=T0 + 12 * DAY)
    assert digest.details["resets_at"] == WEEK_RESET.isoformat()


# --- the pure parts, table by table -------------------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([], (None, 0.0)),
        ([(T0_TS, 5.0)], (None, 0.0)),
        ([(T0_TS, 5.0), (T0_TS + H, 5.0)], (None, 0.0)),
        ([(T0_TS, 5.0), (T0_TS + H, 9.0)], (T0.date(), 4.0)),
        # Falls count for nothing; a rise after midnight counts for the next day.
        ([(T0_TS, 5.0), (T0_TS + 11 * H, 15.0), (T0_TS + 13 * H, 2.0), (T0_TS + 14 * H, 7.0)], (T0.date(), 10.0)),
        ([(T0_TS, 5.0), (T0_TS + 11 * H, 8.0), (T0_TS + 13 * H, 12.0)], ((T0 + DAY).date(), 4.0)),
        # A tie goes to the earlier day.
        ([(T0_TS, 0.0), (T0_TS + H, 3.0), (T0_TS + DAY_S, 3.0), (T0_TS + DAY_S + H, 6.0)], (T0.date(), 3.0)),
    ],
)
def test_busiest_day_table(samples: list[tuple[int, float]], expected: tuple[object, float]) -> None:
    assert busiest_day(samples) == expected


@pytest.mark.parametrize(
    ("state", "summary"),
    [
        (BucketState(), None),
        (BucketState(utilization=40.0, resets_at=WEEK_RESET), None),  # no samples
        (BucketState(resets_at=WEEK_RESET, hourly=((T0_TS, 0.0), (T0_TS + H, 0.0))), None),  # unused
        (BucketState(hourly=((T0_TS, 5.0),)), None),  # no reset time to place the window
        (
            BucketState(resets_at=None, window=WEEK_RESET, hourly=((T0_TS, 5.0), (T0_TS + H, 55.0))),
            {"peak": 55.0, "passed": [(50, None)], "limit": None},
        ),
        (
            BucketState(
                resets_at=WEEK_RESET,
                hourly=((T0_TS, 45.0), (T0_TS + H, 100.0)),
                history=((T0_TS + H + 600, 100.0),),
                passed=((50, T0_TS + H), (100, T0_TS + H)),
            ),
            {"peak": 100.0, "passed": [(50, T0_TS + H), (80, None)], "limit": (100, T0_TS + H)},
        ),
    ],
)
def test_summarize_table(state: BucketState, summary: dict[str, object] | None) -> None:
    got = summarize("seven_day", state, (50, 80))
    if summary is None:
        assert got is None
        return
    assert got is not None
    assert got.peak == summary["peak"]
    assert [(p.percent, ts(p.at) if p.at else None) for p in got.passed] == summary["passed"]
    limit = summary["limit"]
    assert (None if got.limit is None else (got.limit.percent, ts(got.limit.at) if got.limit.at else None)) == limit


# --- property: one digest per closed, used, watched window; never two -------------------------


@st.composite
def journeys(draw: st.DrawFn) -> list[tuple[timedelta, float | None, int]]:
    """Up to 40 readings over several weeks: (advance, utilization or None for a null bucket,
    shift of the active window's reset in hours, 0 for none). Readings fall at :30, far
    from the …:59:59.6 resets, and at least an hour apart (each is its hour's sample)."""
    steps = []
    for _ in range(draw(st.integers(min_value=1, max_value=40))):
        advance = timedelta(hours=draw(st.integers(min_value=1, max_value=60)))
        value = draw(st.one_of(st.none(), st.floats(min_value=0, max_value=100), st.just(0.0)))
        shift = draw(st.sampled_from([0, 0, 0, 0, 3, 24, -2]))
        steps.append((advance, value, shift))
    return steps


@settings(max_examples=200, deadline=None)
@given(journeys(), st.booleans())
def test_each_used_window_gets_one_digest_when_the_next_is_seen(
    steps: list[tuple[timedelta, float | None, int]], enabled: bool
) -> None:
    config = DecideConfig(digest_enabled=enabled)
    watch = Watch(config=config, now=T0 + 30 * MIN)
    anchor, window = WEEK_RESET, 0
    opened = anchor - 7 * DAY  # when the current window began
    used: dict[int, bool] = {}  # window index -> a reading above 0 % was seen in it
    seen: list[int] = []  # the window of every non-null reading, in order
    digests: list[Alert] = []
    watch.see({"seven_day": (0.0, anchor)})
    seen.append(0)
    used[0] = False
    for advance, value, shift in steps:
        now = watch.now + advance
        while now >= anchor:  # natural rollovers the bot may or may not see
            opened, anchor = anchor, anchor + 7 * DAY
            window += 1
        # Windows stay within the week and a day the state keeps hourly samples of.
        fits = anchor + shift * HOUR - opened <= 8 * DAY - 2 * HOUR
        if shift and value is not None and fits and anchor + shift * HOUR > now + HOUR:
            # The active window's reset moves, in a reading the bot sees: the same window.
            # (Moved while the bucket was null and past its old reset when it comes back,
            # a move cannot be told from a rollover; decide counts that as a rollover.)
            anchor += shift * HOUR
        if value is not None:
            seen.append(window)
            # Used: above 0 at the hourly samples' one decimal (0.03 % is a 0 % week).
            used[window] = used.get(window, False) or round(value, 1) > 0
        alerts = watch.see({"seven_day": None if value is None else (value, anchor)}, at=now)
        digests += [a for a in alerts if a.kind == "digest"]
        for alert in alerts:
            if alert.kind == "digest":
                # It sums up a window that has ended, never the open one.
                assert datetime.fromisoformat(alert.details["resets_at"]) <= now

    assert len({a.id for a in digests}) == len(digests), "never twice"
    closed_and_used = {w for w in set(seen) if used.get(w) and any(later > w for later in seen)}
    assert len(digests) == (len(closed_and_used) if enabled else 0)


@pytest.mark.parametrize("gap", [None, "no-reset"])
def test_a_moved_window_still_ends_at_its_moved_reset_after_a_null_reading(gap: str | None) -> None:
    # Found by the property above: after a reset shift, a reading without a reset (the
    # bucket null, or its resets_at null) made the next reading compare with the window's
    # *first* reset. Past that one but before the moved one, it looked like a rollover: a
    # digest of a window still open, and its thresholds said a second time.
    moved = WEEK_RESET + DAY
    watch = armed_watch(weekly=10.0)
    assert kinds(watch.see({"seven_day": (55.0, moved)}, at=T0 + HOUR)) == ["reset_shift", "threshold"]
    watch.see({"seven_day": None if gap is None else (56.0, None)}, at=WEEK_RESET - HOUR)
    assert watch.see({"seven_day": (60.0, moved)}, at=WEEK_RESET + HOUR) == []
    assert watch.bucket("seven_day").alerted_thresholds == (50,)
    # It ends at the moved reset: then the digest, once.
    assert kinds(watch.see({"seven_day": (0.0, moved + 7 * DAY)}, at=moved + 5 * MIN)) == ["digest"]


# --- the reader's days (docs/design.md §9) ------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        # 12:00 UTC +12h30: 00:30 UTC the next day, still the evening before in New York.
        ("UTC", ((T0 + DAY).date(), 6.0)),
        ("America/New_York", (T0.date(), 6.0)),
        ("Asia/Tokyo", ((T0 + DAY).date(), 6.0)),
    ],
)
def test_busiest_day_is_the_readers_day(zone: str, expected: tuple[object, float]) -> None:
    samples = [(T0_TS, 1.0), (T0_TS + 12 * H + 1800, 7.0)]
    assert busiest_day(samples, ZoneInfo(zone)) == expected


def test_the_digest_speaks_the_readers_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    watch = busy_week(DecideConfig(timezone=berlin))
    [digest] = roll_over(watch, "seven_day")
    assert "the week to Thu 8 Jan in review" in digest.plain
    assert "Window Thu 1 Jan 08:00 CET to Thu 8 Jan 08:00 CET." in digest.plain
    assert "UTC" not in digest.plain
    assert digest.details["resets_at"] == WEEK_RESET.isoformat()  # machine fields stay UTC
    assert digest.details["chart"]["timezone"] == "Europe/Berlin"
