"""Properties of the decision core (hypothesis), over whole journeys of readings.

(a) each threshold alerts at most once per window, and exactly when crossed;
(b) resets_at jitter below the tolerance never makes a reset shift, across rollovers;
(c) the least-squares fit and the projection: see test_forecast.py;
(d) a natural rollover resets dedup: a threshold crossed again alerts again;
(e) every state decide produces reads back equal: parse_state(dump_state(s)) == s;
(f) the state file stays small over 30 days of 5-minute cycles, a week of hourly chart
    samples per weekly bucket included.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from claude_matrix_bot.core.decide import DecideConfig, drop_delivered
from claude_matrix_bot.state import MAX_HOURLY_SAMPLES, dump_state, parse_state
from tests.scenarios import DAY, FIVE_RESET, HOUR, MIN, T0, WEEK_RESET, Bucket, Watch, jitter, kinds

WEEKLY = ("seven_day", "seven_day_opus")

thresholds_strategy = st.lists(st.integers(min_value=1, max_value=100), min_size=1, max_size=4, unique=True).map(
    lambda ts: tuple(sorted(ts))
)
utilization = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


@dataclass(frozen=True)
class Step:
    advance: timedelta
    failed: bool  # a failed cycle (record_failure) instead of a reading
    buckets: dict[str, Bucket | None]


@st.composite
def one_window_journeys(draw: st.DrawFn) -> list[Step]:
    """Up to 60 cycles, all before the weekly reset: readings with random utilization,
    sub-second jitter, nulls, failed cycles and reset shifts that stay in the future."""
    steps: list[Step] = []
    anchors = dict.fromkeys(WEEKLY, WEEK_RESET)
    for _ in range(draw(st.integers(min_value=1, max_value=60))):
        advance = timedelta(minutes=draw(st.integers(min_value=1, max_value=120)))
        failed = draw(st.booleans()) if steps else False
        buckets: dict[str, Bucket | None] = {"five_hour": (draw(utilization), FIVE_RESET + 5 * DAY)}
        for name in WEEKLY:
            # 60 cycles of at most 2 h end before WEEK_RESET - 12 h: every anchor stays ahead.
            if draw(st.integers(min_value=0, max_value=9)) == 0:
                anchors[name] = WEEK_RESET + timedelta(hours=draw(st.integers(min_value=-12, max_value=48)))
            shape = draw(st.sampled_from(["value", "value", "value", "null", "no-reset"]))
            if shape == "null":
                buckets[name] = None
            else:
                resets = None if shape == "no-reset" else jitter(anchors[name], draw(st.integers(-400_000, 399_000)))
                buckets[name] = (draw(utilization), resets)
        steps.append(Step(advance, failed, buckets))
    return steps


def replay(watch: Watch, steps: list[Step], *, check_round_trip: bool = False) -> list[list[str]]:
    """Run every step; return the kinds per step."""
    out: list[list[str]] = []
    for step in steps:
        at = watch.now + step.advance
        alerts = watch.fail(error="usage API answered 500", at=at) if step.failed else watch.see(step.buckets, at=at)
        out.append(kinds(alerts))
        if check_round_trip:
            assert watch.state is not None
            # (e) docs/design.md §4: what is written is what is read back.
            assert parse_state(dump_state(watch.state)) == watch.state
    return out


@settings(max_examples=100, deadline=None)
@given(one_window_journeys(), thresholds_strategy)
def test_each_threshold_alerts_at_most_once_per_window_and_exactly_when_crossed(
    steps: list[Step], thresholds: tuple[int, ...]
) -> None:
    # docs/design.md §1 weekly threshold: once per threshold per weekly window; those exceeded
    # at arming are only shown.
    watch = Watch(config=DecideConfig(weekly_thresholds=thresholds))
    replay(watch, steps)
    alerted = [(a.bucket, a.details["threshold"]) for a in watch.log if a.kind == "threshold"]
    assert all(count == 1 for count in Counter(alerted).values()), alerted

    readings = [s.buckets for s in steps if not s.failed]
    arming, later = readings[0], readings[1:]
    expected = set()
    for name in WEEKLY:
        at_arming = arming[name]
        shown = {t for t in thresholds if at_arming is not None and at_arming[0] >= t}
        seen = [value[0] for value in (r[name] for r in later) if value is not None]
        expected |= {(name, t) for t in thresholds if any(u >= t for u in seen) and t not in shown}
    assert set(alerted) == expected
    # Never for the five-hour session.
    assert all(bucket != "five_hour" for bucket, _ in alerted)


@settings(max_examples=60, deadline=None)
@given(one_window_journeys(), thresholds_strategy)
def test_every_decided_state_reads_back_equal(steps: list[Step], thresholds: tuple[int, ...]) -> None:
    replay(Watch(config=DecideConfig(weekly_thresholds=thresholds, health_failures=2)), steps, check_round_trip=True)


@st.composite
def jittery_journeys(draw: st.DrawFn) -> tuple[int, list[tuple[timedelta, dict[str, Bucket | None]]]]:
    """Three weeks of cycles at random intervals. The API reports the true anchor of the
    current window plus jitter, from a clock that may be ahead or behind ours; jitter
    plus skew stay within the tolerance."""
    tolerance = draw(st.integers(min_value=2, max_value=600))
    half = tolerance * 1_000_000 // 2
    skew = timedelta(microseconds=draw(st.integers(-half, half)))
    out: list[tuple[timedelta, dict[str, Bucket | None]]] = []
    now = T0
    for _ in range(draw(st.integers(min_value=1, max_value=80))):
        advance = timedelta(seconds=draw(st.integers(min_value=1, max_value=400 * 60)))
        now += advance
        api_now = now + skew
        buckets: dict[str, Bucket | None] = {}
        for name, first, period in (("five_hour", FIVE_RESET, 5 * HOUR), ("seven_day", WEEK_RESET, 7 * DAY)):
            anchor = first
            while anchor <= api_now:
                anchor += period
            shape = draw(st.sampled_from(["value", "value", "value", "value", "null", "no-reset"]))
            if shape == "null":
                buckets[name] = None
            else:
                # |jitter| + |skew| <= tolerance, so two reports of one anchor differ by at most that.
                wobble = timedelta(microseconds=draw(st.integers(-half, half)))
                buckets[name] = (draw(utilization), None if shape == "no-reset" else anchor + wobble)
        out.append((advance, buckets))
    return tolerance, out


@settings(max_examples=100, deadline=None)
@given(jittery_journeys())
def test_jitter_below_the_tolerance_never_makes_a_reset_shift(
    journey: tuple[int, list[tuple[timedelta, dict[str, Bucket | None]]]],
) -> None:
    # docs/design.md §1 reset shift: moves smaller than RESET_SHIFT_TOLERANCE_SEC are jitter, natural
    # rollovers are silent, null transitions are not shifts.
    tolerance, steps = journey
    watch = Watch(config=DecideConfig(reset_shift_tolerance_sec=tolerance))
    for advance, buckets in steps:
        alerts = watch.see(buckets, at=watch.now + advance)
        assert "reset_shift" not in kinds(alerts), (watch.now, buckets)


@settings(max_examples=50, deadline=None)
@given(
    thresholds=thresholds_strategy,
    data=st.data(),
    cycles=st.integers(min_value=1, max_value=5),
    after_reset=st.integers(min_value=0, max_value=6 * 24 * 60),
)
def test_a_rollover_resets_threshold_dedup(
    thresholds: tuple[int, ...], data: st.DataObject, cycles: int, after_reset: int
) -> None:
    # docs/design.md §1: "once per threshold per weekly window": a new window alerts again.
    target = data.draw(st.sampled_from(thresholds), label="threshold")
    below = data.draw(st.floats(min_value=0.0, max_value=target - 0.01), label="below")
    above = data.draw(st.floats(min_value=float(target), max_value=100.0), label="above")
    watch = Watch(config=DecideConfig(weekly_thresholds=thresholds))
    watch.see({"seven_day": (0.0 if target > 0 else below, WEEK_RESET)})
    watch.see({"seven_day": (above, WEEK_RESET)}, at=T0 + HOUR)
    first = [a for a in watch.log if a.kind == "threshold" and a.details["threshold"] == target]
    assert len(first) == 1
    # Any number of cycles into the next window, at any point of it.
    new_window = WEEK_RESET + 7 * DAY
    start = WEEK_RESET + timedelta(minutes=after_reset + 1)
    rolled = watch.see({"seven_day": (below, jitter(new_window, 11))}, at=start)
    assert [a for a in rolled if a.details.get("threshold") == target] == []  # below it: silent
    for n in range(cycles):
        watch.see({"seven_day": (below, new_window)}, at=start + (n + 1) * 5 * MIN)
    again = watch.see({"seven_day": (above, jitter(new_window, -7))}, at=start + (cycles + 1) * 5 * MIN)
    repeated = [a for a in again if a.kind == "threshold" and a.details["threshold"] == target]
    assert len(repeated) == 1
    assert repeated[0].id != first[0].id
    # ...and once only in that window too.
    assert watch.see({"seven_day": (above, new_window)}, at=start + (cycles + 2) * 5 * MIN) == []


# --- (f) the state file stays small (docs/design.md §4: "its size does not grow with uptime") -------


@dataclass(frozen=True)
class Month:
    sizes: list[tuple[datetime, int]]  # (when, bytes of state.json)
    hourly: dict[str, int]  # the most hourly samples each weekly bucket held at once


def simulate_month(seed: int) -> Month:
    """30 days of 5-minute cycles with realistic use: weekday working hours burn the weekly
    buckets, weekly rollovers, five-hour windows, a weekly anchor shift, a short outage each
    week, a bucket that comes and goes. Alerts are delivered each cycle, as the cycle does."""
    rng = random.Random(seed)
    watch = Watch()
    sizes: list[tuple[datetime, int]] = []
    hourly: Counter[str] = Counter()
    weekly = {"seven_day": 0.0, "seven_day_sonnet": 0.0, "seven_day_opus": 0.0, "seven_day_cowork": 0.0}
    anchor = WEEK_RESET
    five = 0.0
    five_anchor: datetime | None = None
    now = T0
    for cycle in range(30 * 24 * 12):
        now = T0 + cycle * 5 * MIN
        if now >= anchor:  # weekly rollover
            anchor += 7 * DAY
            weekly = dict.fromkeys(weekly, 0.0)
        if five_anchor is not None and now >= five_anchor:
            five_anchor, five = None, 0.0
        working = now.weekday() < 5 and 8 <= now.hour < 18
        if working and rng.random() < 0.6:
            if five_anchor is None:
                five_anchor = now + 5 * HOUR - timedelta(seconds=0.4)
            five = min(100.0, five + rng.uniform(0.5, 3.0))
            for name in weekly:
                weekly[name] = min(100.0, weekly[name] + rng.uniform(0.0, 0.25))
        if cycle % (7 * 24 * 12) == 3 * 24 * 12:  # once a week Anthropic moves the anchor
            anchor += timedelta(hours=rng.choice([-3, 2, 5]))
        if cycle % (7 * 24 * 12) == 5 * 24 * 12 + 100 and watch.state is not None:
            for k in range(4):  # a 20-minute outage
                watch.fail(at=now + k * MIN)
        buckets: dict[str, Bucket | None] = {
            "five_hour": (round(five, 1), jitter(five_anchor, rng.randint(-300_000, 300_000)))
            if five_anchor is not None
            else (0.0, None),
            "seven_day_oauth_apps": None,
        }
        for name, value in weekly.items():
            if name == "seven_day_cowork" and now.day % 4 == 0:
                buckets[name] = None  # a bucket the API sometimes leaves out
            else:
                buckets[name] = (round(value, 1), jitter(anchor, rng.randint(-300_000, 300_000)))
        watch.see(buckets, at=now)
        assert watch.state is not None
        watch.state = drop_delivered(watch.state, tuple(a.id for a in watch.state.outbox))
        if cycle % 3 == 0:  # every 15 minutes is enough to see the peaks
            sizes.append((now, len(dump_state(watch.state))))
        for name in weekly:
            held = len(watch.state.buckets[name].hourly) if name in watch.state.buckets else 0
            hourly[name] = max(hourly[name], held)
    # The month was eventful: rollovers, thresholds, forecasts, shifts, an outage.
    seen = set(kinds(watch.log))
    assert {"armed", "threshold", "reset_shift", "degraded", "recovered"} <= seen
    return Month(sizes, dict(hourly))


def test_state_size_is_bounded_over_a_month_of_cycles() -> None:
    month = simulate_month(seed=1)
    sizes = month.sizes
    # docs/design.md §7: "the 16 KB state bound still holds with four weekly buckets".
    assert max(size for _, size in sizes) <= 16 * 1024
    # ...while each of the four held a whole week of hourly samples (a day a week the cowork
    # bucket comes back null: no sample that day), and never more than the cap.
    assert len(month.hourly) == 4
    for name, held in month.hourly.items():
        least = 5 * 24 if name == "seven_day_cowork" else 7 * 24
        assert least <= held <= MAX_HOURLY_SAMPLES, (name, held)

    def largest(first_day: int, last_day: int) -> int:
        return max(size for at, size in sizes if T0 + first_day * DAY <= at < T0 + last_day * DAY)

    # Same shape of week, two weeks later: no growth beyond noise in the digits. (The first
    # week holds only the six days of a window the bot armed in: hourly samples make it
    # smaller, so the comparison is between the first and the last week with a whole window.)
    second_week, last_week = largest(7, 14), largest(23, 30)
    assert last_week <= second_week * 1.05, (second_week, last_week)
    assert largest(6, 7) * 0.8 <= largest(29, 30) <= largest(6, 7) * 1.2
