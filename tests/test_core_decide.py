"""The decision core, driven directly like h11's test_state.py: readings in, alerts and
state out, `now` passed explicitly. No mocks, no clock, no I/O.

Each test cites the docs/design.md §1 rule it checks. The helpers (`Watch`, `reading`) live in
scenarios.py, shared with the property, digest, state and message tests.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from claude_matrix_bot.core.decide import (
    DecideConfig,
    alert_id,
    decide,
    drop_delivered,
    needs_arming,
)
from claude_matrix_bot.model import Alert
from claude_matrix_bot.state import BucketState, State, dump_state
from tests.scenarios import (
    CFG,
    DAY,
    FIVE_RESET,
    HOUR,
    MIN,
    NEXT_WEEK_RESET,
    T0,
    WEEK_RESET,
    Bucket,
    Watch,
    armed_watch,
    jitter,
    kinds,
    reading,
)

# --- armed (docs/design.md §1: "first run ever: a baseline snapshot of every bucket", once) -----


def test_the_baseline_promises_a_forecast_only_when_it_is_on() -> None:
    for enabled in (True, False):
        decision = decide(
            None, reading(T0, {"seven_day": (10.0, WEEK_RESET)}), T0, DecideConfig(forecast_enabled=enabled)
        )
        [armed] = decision.alerts
        assert ("burn-rate forecasts" in armed.plain) is enabled


def test_first_run_posts_one_baseline_listing_every_bucket_including_null_ones() -> None:
    watch = Watch()
    alerts = watch.see(
        {
            "five_hour": (24.0, FIVE_RESET),
            "seven_day": (36.0, WEEK_RESET),
            "seven_day_sonnet": (1.0, WEEK_RESET),
            "seven_day_opus": None,
            "seven_day_oauth_apps": None,
        }
    )
    assert kinds(alerts) == ["armed"]
    plain = alerts[0].plain
    assert "5-hour session: 24%" in plain
    assert "Weekly (all models): 36%" in plain
    assert "Weekly Sonnet: 1%" in plain
    assert "Weekly Opus: not in use" in plain
    assert "Weekly OAuth apps: not in use" in plain
    # Baseline order: the session first, then the all-models weekly, then the other weekly buckets.
    assert plain.index("5-hour") < plain.index("Weekly (all models)") < plain.index("Weekly OAuth apps")
    assert watch.state is not None
    assert set(watch.state.buckets) == {
        "five_hour",
        "seven_day",
        "seven_day_sonnet",
        "seven_day_opus",
        "seven_day_oauth_apps",
    }
    assert watch.state.armed_at == T0
    assert alerts[0].id.startswith("cmb-armed-")
    # Armed once: the second run says nothing.
    assert watch.see({"five_hour": (24.0, FIVE_RESET), "seven_day": (36.0, WEEK_RESET)}, at=T0 + 5 * MIN) == []


@pytest.mark.parametrize(
    ("at_arming", "shown_as_exceeded", "alerted_later_at_90"),
    [
        (10.0, None, [50, 80]),
        (50.0, "already past 50%", [80]),  # reaching a threshold counts as crossing it
        (55.0, "already past 50%", [80]),
        (85.0, "already past 50%, 80%", []),
    ],
)
def test_thresholds_exceeded_at_arming_are_shown_and_not_alerted_later_in_the_window(
    at_arming: float, shown_as_exceeded: str | None, alerted_later_at_90: list[int]
) -> None:
    # docs/design.md §1 weekly threshold: "thresholds already exceeded when the bot is armed are
    # shown in the baseline, not alerted again".
    watch = Watch()
    (armed,) = watch.see({"seven_day": (at_arming, WEEK_RESET)})
    assert armed.kind == "armed"
    if shown_as_exceeded is None:
        assert "already past" not in armed.plain
    else:
        assert shown_as_exceeded in armed.plain
    later = watch.see({"seven_day": (90.0, jitter(WEEK_RESET, 17))}, at=T0 + HOUR)
    assert [a.details["threshold"] for a in later if a.kind == "threshold"] == alerted_later_at_90


def test_first_run_never_posts_per_bucket_alerts_beside_the_baseline() -> None:
    # The baseline replaces this run's threshold alerts (docs/design.md §1 armed).
    alerts = Watch().see(
        {"five_hour": (99.0, FIVE_RESET), "seven_day": (95.0, WEEK_RESET), "seven_day_opus": (85.0, WEEK_RESET)}
    )
    assert kinds(alerts) == ["armed"]


def test_runs_that_only_ever_failed_still_arm_on_the_first_reading() -> None:
    # A state holding only health records has never shown a baseline.
    watch = Watch()
    watch.fail()
    assert watch.state is not None and needs_arming(watch.state)
    assert kinds(watch.see({"seven_day": (10.0, WEEK_RESET)}, at=T0 + 5 * MIN)) == ["armed"]


def test_armed_with_no_buckets_at_all_says_so() -> None:
    (armed,) = Watch().see({})
    assert armed.kind == "armed"
    assert "no usage buckets reported yet" in armed.plain


def test_corrupt_state_note_makes_the_armed_message_say_it_rearmed() -> None:
    # docs/design.md §4: an unreadable state is moved aside and "the bot re-arms and says so".
    note = "state.json could not be read (not valid JSON) and was moved aside to state.json.corrupt-x; starting over."
    watch = Watch(state=State(note=note))
    (armed,) = watch.see({"seven_day": (40.0, WEEK_RESET)})
    assert armed.kind == "armed"
    assert "re-armed" in armed.plain.splitlines()[0]
    assert note in armed.plain
    assert "moved aside" in armed.html
    assert armed.details["note"] == note
    assert watch.state is not None and watch.state.note is None  # said once
    # A plain first run does not claim to re-arm.
    (fresh,) = Watch().see({"seven_day": (40.0, WEEK_RESET)})
    assert "re-armed" not in fresh.plain


# --- reset shift (docs/design.md §1: an active window's resets_at moved by more than the tolerance) --


@pytest.mark.parametrize(
    ("bucket", "new_resets", "now", "shift"),
    [
        pytest.param("seven_day", WEEK_RESET + 2 * HOUR, T0 + HOUR, True, id="weekly-moved-later"),
        pytest.param("seven_day", WEEK_RESET - DAY, T0 + HOUR, True, id="weekly-moved-earlier"),
        pytest.param("seven_day", WEEK_RESET + timedelta(seconds=61), T0 + HOUR, True, id="just-over-tolerance"),
        pytest.param("seven_day", WEEK_RESET + timedelta(seconds=60), T0 + HOUR, False, id="at-tolerance-is-jitter"),
        pytest.param("seven_day", jitter(WEEK_RESET, 399_000), T0 + HOUR, False, id="sub-second-jitter"),
        pytest.param("seven_day", jitter(WEEK_RESET, -600_974), T0 + HOUR, False, id="jitter-to-whole-second"),
        pytest.param("five_hour", FIVE_RESET + 3 * HOUR, T0 + HOUR, True, id="five-hour-moved"),
        # Natural rollover: the previous resets_at is already past, so the move is silent.
        pytest.param("seven_day", NEXT_WEEK_RESET, WEEK_RESET + MIN, False, id="weekly-rollover"),
        pytest.param("five_hour", FIVE_RESET + 5 * HOUR, FIVE_RESET + 10 * MIN, False, id="five-hour-rollover"),
        # The API rolls over at …:59:59.6; a bot clock a second behind still sees a rollover.
        pytest.param(
            "seven_day", NEXT_WEEK_RESET, WEEK_RESET - timedelta(seconds=1), False, id="rollover-clock-behind"
        ),
        pytest.param("seven_day", WEEK_RESET + DAY, WEEK_RESET - 2 * MIN, True, id="shift-minutes-before-the-end"),
    ],
)
def test_reset_shift_table(bucket: str, new_resets: datetime, now: datetime, shift: bool) -> None:
    watch = armed_watch(weekly=10.0)
    old = WEEK_RESET if bucket == "seven_day" else FIVE_RESET
    other = "five_hour" if bucket == "seven_day" else "seven_day"
    other_value = (5.0, FIVE_RESET) if other == "five_hour" else (10.0, WEEK_RESET)
    if now > FIVE_RESET and other == "five_hour":
        other_value = (5.0, FIVE_RESET + 5 * HOUR * ((now - FIVE_RESET) // (5 * HOUR) + 1))
    alerts = watch.see({bucket: (12.0, new_resets), other: other_value}, at=now)
    shifts = [a for a in alerts if a.kind == "reset_shift"]
    if not shift:
        assert shifts == []
        return
    (alert,) = shifts
    assert alert.bucket == bucket
    assert alert.details["old_resets_at"] == old.isoformat()
    assert alert.details["new_resets_at"] == new_resets.isoformat()
    assert "reset moved" in alert.plain


def test_reset_shift_fires_once_per_distinct_new_value() -> None:
    # docs/design.md §1 reset shift dedup: "once per distinct new value".
    watch = armed_watch()
    b = WEEK_RESET + 3 * HOUR
    c = WEEK_RESET + 6 * HOUR
    assert kinds(watch.see({"seven_day": (11.0, b)}, at=T0 + HOUR)) == ["reset_shift"]
    assert watch.see({"seven_day": (11.0, jitter(b, 250_000))}, at=T0 + 2 * HOUR) == []
    assert watch.see({"seven_day": (11.0, b)}, at=T0 + 3 * HOUR) == []
    (to_c,) = watch.see({"seven_day": (11.0, c)}, at=T0 + 4 * HOUR)
    assert to_c.details["old_resets_at"] == b.isoformat()
    assert to_c.details["new_resets_at"] == c.isoformat()
    # Back to a value already announced: not news.
    assert watch.see({"seven_day": (11.0, jitter(b, -100_000))}, at=T0 + 5 * HOUR) == []


def test_a_shift_keeps_the_window_and_its_threshold_dedup() -> None:
    # A shift moves the anchor of the *same* window: thresholds said stay said.
    watch = armed_watch()
    assert kinds(watch.see({"seven_day": (55.0, WEEK_RESET)}, at=T0 + HOUR)) == ["threshold"]
    assert kinds(watch.see({"seven_day": (56.0, WEEK_RESET + DAY)}, at=T0 + 2 * HOUR)) == ["reset_shift"]
    assert watch.see({"seven_day": (57.0, WEEK_RESET + DAY)}, at=T0 + 3 * HOUR) == []
    assert watch.bucket("seven_day").window == WEEK_RESET


@pytest.mark.parametrize(
    "sequence",
    [
        pytest.param([None, (10.0, WEEK_RESET + DAY)], id="bucket-null-then-back-moved"),
        pytest.param([(10.0, None), (10.0, WEEK_RESET + DAY)], id="resets-null-then-back-moved"),
        pytest.param([(10.0, None), (10.0, None), (10.0, WEEK_RESET)], id="resets-null-then-back-same"),
        pytest.param([None, None, (10.0, WEEK_RESET - 2 * DAY)], id="bucket-null-then-back-earlier"),
        pytest.param([(10.0, None), None, (10.0, WEEK_RESET + 2 * HOUR)], id="resets-null-then-bucket-null"),
    ],
)
def test_null_transitions_are_never_shifts(sequence: list[Bucket | None]) -> None:
    # docs/design.md §1: "A bucket going to or from null is not a shift"; resets_at may be null.
    watch = armed_watch()
    for step, value in enumerate(sequence, start=1):
        alerts = watch.see({"seven_day": value, "five_hour": (5.0, FIVE_RESET)}, at=T0 + step * 10 * MIN)
        assert "reset_shift" not in kinds(alerts), f"step {step}: {value}"


def test_a_bucket_that_goes_null_keeps_its_window_dedup() -> None:
    watch = armed_watch()
    assert kinds(watch.see({"seven_day": (60.0, WEEK_RESET)}, at=T0 + HOUR)) == ["threshold"]
    assert watch.see({"seven_day": None}, at=T0 + 2 * HOUR) == []
    assert watch.bucket("seven_day").utilization is None
    assert watch.see({"seven_day": (61.0, jitter(WEEK_RESET, 5))}, at=T0 + 3 * HOUR) == []


# --- natural rollover (docs/design.md §1: silent; a new window, new dedup, new history) ------------


def test_rollover_is_silent_and_starts_a_new_window() -> None:
    watch = armed_watch()
    assert kinds(watch.see({"seven_day": (55.0, WEEK_RESET)}, at=T0 + HOUR)) == ["threshold"]
    assert kinds(watch.see({"seven_day": (85.0, WEEK_RESET)}, at=T0 + 2 * HOUR)) == ["threshold"]
    first_window_ids = {a.id for a in watch.log if a.kind == "threshold"}
    after = WEEK_RESET + 5 * MIN
    # No shift and no threshold: only the closed window's digest (docs/design.md §7).
    assert kinds(watch.see({"seven_day": (0.0, NEXT_WEEK_RESET)}, at=after)) == ["digest"]
    state = watch.bucket("seven_day")
    assert state.window == NEXT_WEEK_RESET
    assert state.alerted_thresholds == ()
    assert state.history == ((int(after.timestamp()), 0.0),)  # history restarts
    assert state.forecast_fired is False
    # The same thresholds fire again in the new window, under new ids.
    again = watch.see({"seven_day": (51.0, jitter(NEXT_WEEK_RESET, 3))}, at=after + DAY)
    assert [a.details["threshold"] for a in again] == [50]
    assert again[0].id not in first_window_ids


def test_rollover_after_a_stale_expired_reading_and_a_null_resets() -> None:
    # The API may keep reporting the expired resets_at for a while, or null: still one rollover.
    watch = armed_watch()
    watch.see({"seven_day": (60.0, WEEK_RESET)}, at=T0 + HOUR)
    assert watch.see({"seven_day": (60.0, WEEK_RESET)}, at=WEEK_RESET + MIN) == []
    assert watch.see({"seven_day": (0.0, None)}, at=WEEK_RESET + 6 * MIN) == []
    # One rollover: no shift, the closed window's digest once (docs/design.md §7).
    assert kinds(watch.see({"seven_day": (1.0, NEXT_WEEK_RESET)}, at=WEEK_RESET + 11 * MIN)) == ["digest"]
    assert watch.see({"seven_day": (1.0, NEXT_WEEK_RESET)}, at=WEEK_RESET + 16 * MIN) == []
    assert watch.bucket("seven_day").window == NEXT_WEEK_RESET
    assert watch.bucket("seven_day").alerted_thresholds == ()


# --- weekly thresholds (docs/design.md §1: once per threshold per weekly window) --------------------


@pytest.mark.parametrize(
    ("utilizations", "expected"),
    [
        pytest.param([49.9, 50.0], [50], id="reaching-counts"),
        pytest.param([30.0, 40.0, 45.0], [], id="below"),
        pytest.param([55.0, 60.0, 79.0], [50], id="one-crossing"),
        pytest.param([40.0, 85.0], [50, 80], id="two-at-once-each-alerted"),
        pytest.param([40.0, 100.0], [50, 80], id="jump-to-full"),
        pytest.param([55.0, 45.0, 55.0, 40.0, 60.0], [50], id="dips-and-recrossings"),
        pytest.param([55.0, 81.0, 20.0, 90.0], [50, 80], id="dip-after-both"),
    ],
)
def test_weekly_threshold_table(utilizations: list[float], expected: list[int]) -> None:
    watch = armed_watch(weekly=10.0)
    for step, value in enumerate(utilizations, start=1):
        watch.see(
            {"seven_day": (value, jitter(WEEK_RESET, step * 7)), "five_hour": (5.0, FIVE_RESET)}, at=T0 + step * 5 * MIN
        )
    thresholds = [a for a in watch.log if a.kind == "threshold"]
    assert [a.details["threshold"] for a in thresholds] == expected
    assert len({a.id for a in thresholds}) == len(thresholds)
    for alert in thresholds:
        assert alert.bucket == "seven_day"
        assert f"passed {alert.details['threshold']}%" in alert.plain


def test_custom_thresholds() -> None:
    watch = armed_watch(weekly=10.0, config=DecideConfig(weekly_thresholds=(25, 75, 90)))
    alerts = watch.see({"seven_day": (80.0, WEEK_RESET)}, at=T0 + HOUR)
    assert [a.details["threshold"] for a in alerts] == [25, 75]


def test_five_hour_never_alerts_thresholds_or_forecasts() -> None:
    # docs/design.md §1: five_hour takes part in shifts and the baseline only.
    watch = armed_watch()
    for step in range(1, 30):
        alerts = watch.see(
            {"five_hour": (min(100.0, 3.0 * step), FIVE_RESET), "seven_day": (10.0, WEEK_RESET)}, at=T0 + step * 5 * MIN
        )
        assert alerts == []
    assert watch.bucket("five_hour").history == ()


def test_new_weekly_buckets_work_without_a_code_change() -> None:
    # docs/design.md §1: "new ones such as seven_day_cowork must work without a code change".
    watch = Watch()
    (armed,) = watch.see({"seven_day": (10.0, WEEK_RESET), "seven_day_cowork": (20.0, WEEK_RESET)})
    assert "Weekly Cowork: 20%" in armed.plain
    (alert,) = watch.see({"seven_day": (10.0, WEEK_RESET), "seven_day_cowork": (51.0, WEEK_RESET)}, at=T0 + HOUR)
    assert (alert.kind, alert.bucket, alert.details["threshold"]) == ("threshold", "seven_day_cowork", 50)
    assert "Weekly Cowork usage passed 50%" in alert.plain
    # A weekly bucket first seen after arming is watched from then on.
    (late,) = watch.see(
        {
            "seven_day": (10.0, WEEK_RESET),
            "seven_day_cowork": (51.0, WEEK_RESET),
            "seven_day_design": (52.0, WEEK_RESET),
        },
        at=T0 + 2 * HOUR,
    )
    assert (late.bucket, late.details["threshold"]) == ("seven_day_design", 50)


# --- burn-rate forecast (docs/design.md §1 "The forecast (decided design)") ------------------------


def burn(
    watch: Watch,
    *,
    start: float,
    per_hour: float,
    steps: int,
    every: timedelta = 5 * MIN,
    resets: datetime = WEEK_RESET,
    bucket: str = "seven_day",
) -> list[tuple[int, Alert]]:
    """Feed `steps` readings rising linearly; return (step, alert) for every forecast."""
    begin = watch.now
    out: list[tuple[int, Alert]] = []
    for step in range(1, steps + 1):
        now = begin + step * every
        value = start + per_hour * (step * every) / HOUR
        for alert in watch.see({bucket: (min(value, 100.0), jitter(resets, step))}, at=now):
            if alert.kind == "forecast":
                out.append((step, alert))
    return out


def test_forecast_fires_once_when_the_projection_lands_before_the_reset() -> None:
    # 12 %/h from 10 %: 100 % is ~7.5 h away, the reset days away.
    watch = armed_watch(weekly=10.0, config=DecideConfig(weekly_thresholds=(99,)))
    fired = burn(watch, start=10.0, per_hour=12.0, steps=40)
    # First eligible at step 12: samples at 0..60 min span the 1 h FORECAST_MIN_SPAN_SEC.
    assert [step for step, _ in fired] == [12]
    (_, alert) = fired[0]
    assert alert.bucket == "seven_day"
    now = T0 + 12 * 5 * MIN
    current = 10.0 + 12.0
    expected = now + timedelta(hours=(100.0 - current) / 12.0)
    projected = datetime.fromisoformat(alert.details["projected_at"])
    assert abs((projected - expected).total_seconds()) < 1
    assert alert.details["samples"] == 13  # the armed reading plus 12
    assert alert.details["burn_rate_per_hour"] == pytest.approx(12.0)
    assert watch.bucket("seven_day").forecast_fired is True


def test_forecast_is_silent_when_the_reset_comes_first() -> None:
    # 1 %/h from 10 %: 90 h to go, the reset is ~43 h away.
    watch = armed_watch(weekly=10.0, at=WEEK_RESET - 43 * HOUR)
    assert burn(watch, start=10.0, per_hour=1.0, steps=100) == []
    # A faster burn in the same window does fire.
    assert len(burn(watch, start=19.0, per_hour=10.0, steps=30)) == 1


@pytest.mark.parametrize(
    ("config", "every", "first_step"),
    [
        pytest.param(DecideConfig(), 5 * MIN, 12, id="defaults-span-binds"),
        pytest.param(DecideConfig(forecast_min_samples=20), 5 * MIN, 19, id="min-samples-binds"),
        pytest.param(DecideConfig(), MIN, 60, id="min-span-binds-with-dense-samples"),
        pytest.param(DecideConfig(forecast_min_span_sec=7200), 5 * MIN, 24, id="longer-min-span"),
        pytest.param(DecideConfig(forecast_min_samples=3, forecast_min_span_sec=600), 5 * MIN, 2, id="relaxed"),
    ],
)
def test_forecast_waits_for_min_samples_and_min_span(config: DecideConfig, every: timedelta, first_step: int) -> None:
    # docs/design.md §1: no projection with fewer than FORECAST_MIN_SAMPLES or a span under FORECAST_MIN_SPAN_SEC.
    watch = armed_watch(weekly=10.0, config=replace(config, weekly_thresholds=(99,)))
    fired = burn(watch, start=10.0, per_hour=10.0, steps=first_step + 10, every=every)
    assert [step for step, _ in fired] == [first_step]


@pytest.mark.parametrize("per_hour", [0.0, -3.0], ids=["flat", "falling"])
def test_forecast_needs_a_positive_slope(per_hour: float) -> None:
    watch = armed_watch(weekly=60.0)
    assert burn(watch, start=60.0, per_hour=per_hour, steps=60) == []


def test_forecast_can_be_turned_off() -> None:
    watch = armed_watch(weekly=10.0, config=DecideConfig(forecast_enabled=False, weekly_thresholds=(99,)))
    assert burn(watch, start=10.0, per_hour=30.0, steps=40) == []


def test_forecast_needs_a_known_future_reset() -> None:
    watch = armed_watch(weekly=10.0, config=DecideConfig(weekly_thresholds=(99,)))
    alerts: list[Alert] = []
    for step in range(1, 30):
        alerts += watch.see({"seven_day": (10.0 + step, None)}, at=T0 + step * 5 * MIN)
    assert alerts == []


def test_forecast_history_is_trimmed_to_the_forecast_window() -> None:
    # An old jump followed by a flat stretch: with the history trimmed to the last 2 h
    # the fit sees only the flat stretch (slope 0); an untrimmed fit would see a burn.
    def run(window_sec: int) -> tuple[list[Alert], BucketState]:
        config = DecideConfig(forecast_window_sec=window_sec, weekly_thresholds=(99,))
        watch = armed_watch(weekly=10.0, config=config)
        watch.see({"seven_day": (60.0, WEEK_RESET)}, at=T0 + 3 * HOUR)
        for step in range(1, 25):
            watch.see({"seven_day": (60.0, WEEK_RESET)}, at=T0 + 3 * HOUR + step * 5 * MIN)
        return [a for a in watch.log if a.kind == "forecast"], watch.bucket("seven_day")

    trimmed, state = run(7200)
    assert trimmed == []
    now_ts = int((T0 + 5 * HOUR).timestamp())
    assert all(now_ts - 7200 <= t <= now_ts for t, _ in state.history)
    assert len(state.history) == 25  # 2 h of 5-minute samples, both ends included
    untrimmed, _ = run(86400)
    assert len(untrimmed) == 1


def test_forecast_fires_again_in_the_next_window() -> None:
    watch = armed_watch(weekly=10.0, config=DecideConfig(weekly_thresholds=(99,)), at=WEEK_RESET - 10 * HOUR)
    assert len(burn(watch, start=10.0, per_hour=12.0, steps=30)) == 1
    watch.now = WEEK_RESET + 5 * MIN
    watch.see({"seven_day": (0.0, NEXT_WEEK_RESET)})
    assert watch.bucket("seven_day").forecast_fired is False
    again = burn(watch, start=0.0, per_hour=12.0, steps=30, resets=NEXT_WEEK_RESET)
    assert [step for step, _ in again] == [12]  # a fresh history: needs a fresh hour


def test_forecast_for_each_weekly_bucket_separately() -> None:
    watch = Watch(config=DecideConfig(weekly_thresholds=(99,)))
    watch.see({"seven_day": (10.0, WEEK_RESET), "seven_day_opus": (10.0, WEEK_RESET)})
    for step in range(1, 20):
        watch.see(
            {"seven_day": (10.0 + step, WEEK_RESET), "seven_day_opus": (10.0, WEEK_RESET)}, at=T0 + step * 5 * MIN
        )
    assert [(a.kind, a.bucket) for a in watch.log[1:]] == [("forecast", "seven_day")]


# --- degraded / recovered (docs/design.md §1: after HEALTH_FAILURES in a row; once per episode) ----


def test_degraded_after_health_failures_in_a_row_then_recovered_once() -> None:
    watch = armed_watch()
    assert watch.fail(at=T0 + 5 * MIN) == []
    assert watch.fail(at=T0 + 10 * MIN) == []
    (degraded,) = watch.fail(error="usage API answered 403", hint="the token lacks user:profile", at=T0 + 15 * MIN)
    assert degraded.kind == "degraded"
    assert degraded.details["failures"] == 3
    assert "usage API answered 403" in degraded.plain
    assert "the token lacks user:profile" in degraded.plain
    assert watch.fail(at=T0 + 20 * MIN) == []  # once per episode
    assert watch.fail(at=T0 + 25 * MIN) == []
    assert watch.state is not None and watch.state.health.consecutive_failures == 5
    (recovered,) = watch.see({"seven_day": (10.0, WEEK_RESET)}, at=T0 + 30 * MIN)
    assert recovered.kind == "recovered"
    assert "5 failed runs" in recovered.plain
    assert watch.see({"seven_day": (10.0, WEEK_RESET)}, at=T0 + 35 * MIN) == []
    assert watch.state.health.consecutive_failures == 0
    # A later episode is a new one, with its own id.
    for step in (40, 45):
        assert watch.fail(at=T0 + step * MIN) == []
    (again,) = watch.fail(at=T0 + 50 * MIN)
    assert again.kind == "degraded" and again.id != degraded.id


def test_failures_below_the_limit_end_quietly() -> None:
    watch = armed_watch()
    watch.fail(at=T0 + 5 * MIN)
    watch.fail(at=T0 + 10 * MIN)
    assert watch.see({"seven_day": (10.0, WEEK_RESET)}, at=T0 + 15 * MIN) == []
    assert watch.fail(at=T0 + 20 * MIN) == []
    assert watch.fail(at=T0 + 25 * MIN) == []  # the count restarted after the success


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_health_failures_setting(limit: int) -> None:
    watch = armed_watch(config=DecideConfig(health_failures=limit))
    results = [kinds(watch.fail(at=T0 + n * MIN)) for n in range(1, limit + 3)]
    assert results == [[]] * (limit - 1) + [["degraded"]] + [[], []]


def test_recovered_and_usage_alerts_come_in_the_same_run() -> None:
    watch = armed_watch()
    for n in range(1, 4):
        watch.fail(at=T0 + n * MIN)
    assert kinds(watch.see({"seven_day": (55.0, WEEK_RESET)}, at=T0 + HOUR)) == ["recovered", "threshold"]


def test_failing_before_the_first_reading_then_arming() -> None:
    watch = Watch()
    for n in range(3):
        watch.fail(at=T0 + n * MIN)
    assert kinds(watch.log) == ["degraded"]
    assert kinds(watch.see({"seven_day": (10.0, WEEK_RESET)}, at=T0 + HOUR)) == ["recovered", "armed"]


# --- alert ids (docs/design.md §3: "the same alert always has the same id") -------------------------


def test_the_same_inputs_give_the_same_alerts_and_ids() -> None:
    watch = armed_watch()
    previous = watch.state
    now = T0 + HOUR
    values: dict[str, Bucket | None] = {"seven_day": (85.0, WEEK_RESET + 2 * HOUR), "five_hour": (5.0, FIVE_RESET)}
    first = decide(previous, reading(now, values), now, CFG)
    second = decide(previous, reading(now, values), now, CFG)
    assert first == second
    assert kinds(first.alerts) == ["reset_shift", "threshold", "threshold"]


def test_jitter_does_not_change_threshold_or_shift_ids() -> None:
    # A cycle that decided but failed to save decides again on the next run with a
    # re-jittered resets_at: the retry must reuse the Matrix transaction ids.
    watch = armed_watch()
    previous = watch.state
    moved = WEEK_RESET + 2 * HOUR
    ids = []
    for micro, later in ((0, 0), (-400_000, 5), (350_000, 10)):
        now = T0 + HOUR + later * MIN
        decision = decide(previous, reading(now, {"seven_day": (85.0, jitter(moved, micro))}), now, CFG)
        ids.append([a.id for a in decision.alerts])
    assert ids[0] == ids[1] == ids[2]
    assert len(set(ids[0])) == 3


def test_alert_ids_differ_across_buckets_thresholds_and_windows() -> None:
    ids = {
        alert_id("threshold", "seven_day", "2026-01-08T07:00Z", "50"),
        alert_id("threshold", "seven_day", "2026-01-08T07:00Z", "80"),
        alert_id("threshold", "seven_day_opus", "2026-01-08T07:00Z", "50"),
        alert_id("threshold", "seven_day", "2026-01-15T07:00Z", "50"),
        alert_id("forecast", "seven_day", "2026-01-08T07:00Z"),
    }
    assert len(ids) == 5
    assert alert_id("forecast", "seven_day", "x") == alert_id("forecast", "seven_day", "x")
    assert all(i.startswith("cmb-") for i in ids)


# --- outbox (docs/design.md §5: recorded before delivery, removed only once delivered) ---------------


def test_outbox_accumulates_until_delivered_and_drop_delivered_removes_exactly_those() -> None:
    watch = armed_watch()
    assert watch.state is not None
    (armed,) = watch.state.outbox
    watch.see({"seven_day": (55.0, WEEK_RESET)}, at=T0 + HOUR)
    watch.see({"seven_day": (85.0, WEEK_RESET + DAY)}, at=T0 + 2 * HOUR)
    outbox = watch.state.outbox
    assert kinds(outbox) == ["armed", "threshold", "reset_shift", "threshold"]
    assert tuple(outbox) == tuple(watch.log)
    delivered = (outbox[1].id, outbox[3].id, "cmb-threshold-not-in-the-outbox")
    remaining = drop_delivered(watch.state, delivered)
    assert remaining.outbox == (outbox[0], outbox[2])
    assert remaining.buckets == watch.state.buckets  # nothing else changes
    assert drop_delivered(remaining, ()).outbox == remaining.outbox
    assert drop_delivered(remaining, (armed.id, outbox[2].id)).outbox == ()


def test_failures_queue_their_alert_too() -> None:
    watch = armed_watch()
    assert watch.state is not None
    watch.state = drop_delivered(watch.state, tuple(a.id for a in watch.state.outbox))
    for n in range(1, 4):
        watch.fail(at=T0 + n * MIN)
    assert kinds(watch.state.outbox) == ["degraded"]


def test_an_alert_decided_twice_is_queued_once() -> None:
    watch = armed_watch()
    previous = watch.state
    now = T0 + HOUR
    first = decide(previous, reading(now, {"seven_day": (55.0, WEEK_RESET)}), now, CFG)
    # The save failed and the next run decides the same alert from the same state
    # whose outbox already holds it.
    assert previous is not None
    replay = decide(
        replace(previous, outbox=first.state.outbox), reading(now, {"seven_day": (55.0, WEEK_RESET)}), now, CFG
    )
    assert kinds(replay.state.outbox) == ["armed", "threshold"]


def test_decide_does_not_touch_the_previous_state() -> None:
    watch = armed_watch()
    assert watch.state is not None
    before = dump_state(watch.state)
    previous = watch.state
    watch.see({"seven_day": (85.0, NEXT_WEEK_RESET), "seven_day_new": (1.0, WEEK_RESET)}, at=WEEK_RESET + HOUR)
    assert dump_state(previous) == before


def test_alert_ids_do_not_depend_on_the_offset_an_instant_carries() -> None:
    # The same instant written with another UTC offset is the same alert.
    watch = armed_watch()
    previous = watch.state
    now = T0 + HOUR
    moved = WEEK_RESET + 2 * HOUR
    in_utc = decide(previous, reading(now, {"seven_day": (85.0, moved)}), now, CFG)
    plus_two = timezone(timedelta(hours=2))
    elsewhere = decide(
        previous, reading(now, {"seven_day": (85.0, moved.astimezone(plus_two))}), now.astimezone(plus_two), CFG
    )
    assert [a.id for a in in_utc.alerts] == [a.id for a in elsewhere.alerts]
    assert [a.plain for a in in_utc.alerts] == [a.plain for a in elsewhere.alerts]
