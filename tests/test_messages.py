"""Rendering (core/messages.py): what a person reads on a phone.

Messages name the bucket in words, give the numbers, show UTC times rounded to the
minute with a relative hint ("in 2d 4h"), and their HTML is the plain text, escaped,
with only <b>, <i> and <br> added.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_matrix_bot.core import messages
from claude_matrix_bot.core.decide import DecideConfig
from claude_matrix_bot.core.forecast import Projection
from claude_matrix_bot.core.messages import (
    BaselineRow,
    Rendered,
    bucket_label,
    fmt_duration,
    fmt_pct,
    fmt_relative,
    fmt_time,
    fmt_when,
    render_armed,
    render_degraded,
    render_forecast,
    render_recovered,
    render_shift,
    render_threshold,
)
from tests.scenarios import FIVE_RESET, HOUR, MIN, T0, WEEK_RESET, Watch, armed_watch

ALLOWED_TAGS = {"b", "i", "br"}


class _Text(HTMLParser):
    """The visible text of Matrix HTML, <br> as a newline, and every tag seen."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag == "br":
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def visible(html: str) -> tuple[str, set[str]]:
    parser = _Text()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts), parser.tags


def assert_html_mirrors_plain(rendered: Rendered) -> None:
    text, tags = visible(rendered.html)
    assert tags <= ALLOWED_TAGS, tags
    assert text == rendered.plain


# --- building blocks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bucket", "label"),
    [
        ("five_hour", "5-hour session"),
        ("seven_day", "Weekly (all models)"),
        ("seven_day_opus", "Weekly Opus"),
        ("seven_day_sonnet", "Weekly Sonnet"),
        ("seven_day_oauth_apps", "Weekly OAuth apps"),
        ("seven_day_cowork", "Weekly Cowork"),  # new buckets get a readable name unaided
        ("seven_day_claude_design", "Weekly Claude Design"),
        ("monthly_extra", "Monthly extra"),
    ],
)
def test_bucket_in_words(bucket: str, label: str) -> None:
    assert bucket_label(bucket) == label


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (WEEK_RESET, "Thu 8 Jan 07:00 UTC"),  # the API's …:59:59.6 means "on the hour"
        (FIVE_RESET, "Fri 2 Jan 15:00 UTC"),
        (datetime(2026, 1, 2, 12, 0, 29, 999999, tzinfo=UTC), "Fri 2 Jan 12:00 UTC"),
        (datetime(2026, 1, 2, 12, 0, 30, tzinfo=UTC), "Fri 2 Jan 12:01 UTC"),
        (datetime(2026, 12, 31, 23, 59, 45, tzinfo=UTC), "Fri 1 Jan 00:00 UTC"),
        # An instant carrying another offset is still shown in UTC.
        (datetime(2026, 1, 8, 8, 59, 59, 600000, tzinfo=timezone(timedelta(hours=2))), "Thu 8 Jan 07:00 UTC"),
    ],
)
def test_times_are_utc_rounded_to_the_minute(moment: datetime, text: str) -> None:
    assert fmt_time(moment, UTC) == text


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(0), "<1m"),
        (timedelta(seconds=29), "<1m"),
        (timedelta(seconds=31), "1m"),
        (timedelta(minutes=45), "45m"),
        (timedelta(hours=3), "3h"),
        (timedelta(hours=3, minutes=12), "3h 12m"),
        (timedelta(days=2), "2d"),
        (timedelta(days=2, hours=4), "2d 4h"),
        (timedelta(days=2, hours=4, minutes=20), "2d 4h"),  # two units are enough
        (timedelta(days=2, hours=3, minutes=59, seconds=59.6), "2d 4h"),
        (-timedelta(hours=1, minutes=5), "1h 5m"),
    ],
)
def test_durations_use_the_two_largest_units(delta: timedelta, text: str) -> None:
    assert fmt_duration(delta) == text


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (T0 + timedelta(days=2, hours=4) - timedelta(seconds=0.4), "in 2d 4h"),
        (T0 + timedelta(minutes=45), "in 45m"),
        (T0 - timedelta(hours=2), "2h ago"),
        (T0 + timedelta(seconds=10), "now"),
    ],
)
def test_relative_hints(moment: datetime, text: str) -> None:
    assert fmt_relative(moment, T0) == text


def test_when_combines_time_and_hint_and_says_when_unknown() -> None:
    assert fmt_when(WEEK_RESET, T0, UTC) == "Thu 8 Jan 07:00 UTC (in 5d 19h)"
    assert fmt_when(None, T0, UTC) == "no reset time reported"


@pytest.mark.parametrize(
    ("value", "text"), [(36.0, "36%"), (51.46, "51.5%"), (0.04, "0%"), (99.96, "100%"), (12.5, "12.5%")]
)
def test_percentages(value: float, text: str) -> None:
    assert fmt_pct(value) == text


# --- each message ---------------------------------------------------------------------------


def test_threshold_message() -> None:
    rendered = render_threshold("seven_day_opus", 80, 81.5, WEEK_RESET, T0, zone=UTC)
    assert rendered.plain == ("🔴 Weekly Opus usage passed 80%\nNow at 81.5%.\nResets Thu 8 Jan 07:00 UTC (in 5d 19h).")
    assert rendered.html.startswith("<b>🔴 Weekly Opus usage passed 80%</b><br>")
    assert_html_mirrors_plain(rendered)
    assert render_threshold("seven_day", 50, 50.0, None, T0, zone=UTC).plain.endswith("\nNo reset time reported.")


@pytest.mark.parametrize(
    ("new", "title"),
    [
        (WEEK_RESET + 2 * HOUR, "⏱ Weekly (all models) reset moved 2h later"),
        (WEEK_RESET - timedelta(days=1, hours=3), "⏱ Weekly (all models) reset moved 1d 3h earlier"),
    ],
)
def test_shift_message(new: datetime, title: str) -> None:
    rendered = render_shift("seven_day", WEEK_RESET, new, 36.0, T0, zone=UTC)
    lines = rendered.plain.splitlines()
    assert lines[0] == title
    assert lines[1] == f"Was Thu 8 Jan 07:00 UTC, now {fmt_when(new, T0, UTC)}."
    assert lines[2] == "Usage 36%."
    assert_html_mirrors_plain(rendered)


def test_forecast_message_has_eta_lead_rate_and_samples() -> None:
    projection = Projection(slope_per_hour=12.0, samples=13, span_sec=3600, exhausted_at=T0 + 5 * HOUR)
    rendered = render_forecast("seven_day", projection, 40.0, WEEK_RESET, T0, zone=UTC)
    plain = rendered.plain
    assert plain.startswith("🔥 Weekly (all models) on track to run out before it resets")
    assert "reaches 100% Fri 2 Jan 17:00 UTC (in 5h)" in plain  # when
    assert "5d 14h before the reset Thu 8 Jan 07:00 UTC (in 5d 19h)" in plain  # how long before the reset
    assert "Now 40%, burning 12.0%/h" in plain  # the burn rate
    assert "fit over 13 samples in the last 1h" in plain  # what it rests on
    assert_html_mirrors_plain(rendered)


def test_forecast_message_from_decide() -> None:
    watch = armed_watch(weekly=10.0, config=DecideConfig(weekly_thresholds=(99,)))
    for step in range(1, 13):
        watch.see({"seven_day": (10.0 + step, WEEK_RESET)}, at=T0 + step * 5 * MIN)
    (alert,) = [a for a in watch.log if a.kind == "forecast"]
    # At 22 % burning 12 %/h at 13:00: 100 % at 19:30, 5d 11h before Thursday's reset.
    assert "reaches 100% Fri 2 Jan 19:30 UTC (in 6h 30m)" in alert.plain
    assert "5d 11h before the reset" in alert.plain
    assert "burning 12.0%/h (fit over 13 samples in the last 1h)" in alert.plain


def test_degraded_and_recovered_messages() -> None:
    degraded = render_degraded("usage API answered 401", 3, T0 - 10 * MIN, "re-bootstrap the tokens", T0, zone=UTC)
    assert degraded.plain.splitlines() == [
        "🚨 Claude usage watch is failing",
        "3 runs in a row failed since Fri 2 Jan 11:50 UTC (10m ago).",
        "Last error: usage API answered 401",
        "What to do: re-bootstrap the tokens",
        "Usage alerts cannot fire until it works again; a message follows when it recovers.",
    ]
    assert_html_mirrors_plain(degraded)
    assert "What to do" not in render_degraded("boom", 3, None, "", T0, zone=UTC).plain
    recovered = render_recovered(T0 - 30 * MIN, 5, T0)
    assert recovered.plain == "✅ Claude usage watch recovered\nWorking again after 30m (5 failed runs)."
    assert_html_mirrors_plain(recovered)


def test_armed_message() -> None:
    rows = [
        BaselineRow("five_hour", 24.0, FIVE_RESET),
        BaselineRow("seven_day", 83.0, WEEK_RESET, (50, 80)),
        BaselineRow("seven_day_opus", None, None),
        BaselineRow("seven_day_sonnet", 1.0, None),  # a bucket may lack resets_at (docs/design.md §2)
    ]
    rendered = render_armed(rows, (50, 80), T0, None, zone=UTC)
    assert rendered.plain.splitlines() == [
        "📊 Claude usage watch armed",
        "• 5-hour session: 24%, resets Fri 2 Jan 15:00 UTC (in 3h)",
        "• Weekly (all models): 83%, resets Thu 8 Jan 07:00 UTC (in 5d 19h) — already past 50%, 80%",
        "• Weekly Opus: not in use",
        "• Weekly Sonnet: 1%, no reset time reported",
        "Alerts at 50%, 80% of weekly limits, on reset shifts and burn-rate forecasts.",
    ]
    assert_html_mirrors_plain(rendered)
    without_forecast = render_armed(rows, (50, 80), T0, None, zone=UTC, forecast=False)
    assert without_forecast.plain.splitlines()[-1] == "Alerts at 50%, 80% of weekly limits, on reset shifts."
    rearmed = render_armed(rows, (50, 80), T0, "state.json was moved aside", zone=UTC)
    assert rearmed.plain.splitlines()[:2] == ["📊 Claude usage watch re-armed", "state.json was moved aside"]
    assert "<i>state.json was moved aside</i>" in rearmed.html
    assert_html_mirrors_plain(rearmed)


def test_armed_footer_names_the_session_signals() -> None:
    def footer(**session: Any) -> str:
        rendered = render_armed([BaselineRow("five_hour", 24.0, FIVE_RESET)], (50, 80), T0, None, zone=UTC, **session)
        assert_html_mirrors_plain(rendered)
        return rendered.plain.splitlines()[-1]

    weekly = "Alerts at 50%, 80% of weekly limits, on reset shifts and burn-rate forecasts."
    assert footer() == weekly, "nothing said of the session when none of its signals is on"
    assert footer(session_alerts=True) == f"{weekly} 5-hour session: when its limit is reached and when it is back."
    assert footer(session_alerts=True, session_thresholds=(80, 90)) == (
        f"{weekly} 5-hour session: at 80%, 90%, when its limit is reached and when it is back."
    )
    assert footer(session_thresholds=(80,)) == f"{weekly} 5-hour session: at 80%."


# --- HTML injection --------------------------------------------------------------------------

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>&amp;"


def test_a_hostile_bucket_name_cannot_inject_html() -> None:
    bucket = "seven_day_" + HOSTILE
    projection = Projection(slope_per_hour=12.0, samples=13, span_sec=3600, exhausted_at=T0 + 5 * HOUR)
    rendered = [
        render_threshold(bucket, 50, 51.0, WEEK_RESET, T0, zone=UTC),
        render_shift(bucket, WEEK_RESET, WEEK_RESET + HOUR, 51.0, T0, zone=UTC),
        render_forecast(bucket, projection, 40.0, WEEK_RESET, T0, zone=UTC),
        render_armed(
            [BaselineRow(bucket, 51.0, WEEK_RESET, (50,)), BaselineRow("x<b>", None, None)],
            (50,),
            T0,
            HOSTILE,
            zone=UTC,
        ),
        render_degraded(HOSTILE, 3, T0, HOSTILE, T0, zone=UTC),
    ]
    for message in rendered:
        assert "<script" not in message.html.lower()
        assert "<img" not in message.html.lower()
        assert_html_mirrors_plain(message)


def test_a_hostile_bucket_through_decide() -> None:
    watch = Watch()
    (armed,) = watch.see({"seven_day_<script>": (60.0, WEEK_RESET)})
    (alert,) = watch.see({"seven_day_<script>": (81.0, WEEK_RESET)}, at=T0 + HOUR)
    for message in (armed, alert):
        assert "<script" not in message.html.lower()
        assert_html_mirrors_plain(Rendered(message.plain, message.html))


@settings(max_examples=200, deadline=None)
@given(
    bucket=st.text(max_size=30),
    error=st.text(max_size=60),
    hint=st.text(max_size=30),
    utilization=st.floats(min_value=0, max_value=100),
)
def test_any_text_renders_as_escaped_html_mirroring_the_plain_text(
    bucket: str, error: str, hint: str, utilization: float
) -> None:
    # Matrix clients render `formatted_body`: whatever text goes in, only our own
    # three tags come out, and the HTML says exactly what the plain body says.
    for message in (
        render_threshold("seven_day" + bucket, 50, utilization, WEEK_RESET, T0, zone=UTC),
        render_shift(bucket, WEEK_RESET, WEEK_RESET + HOUR, utilization, T0, zone=UTC),
        render_armed([BaselineRow(bucket, utilization, None, (50,))], (50,), T0, hint or None, zone=UTC),
        render_degraded(error, 3, T0, hint, T0, zone=UTC),
    ):
        # HTMLParser folds \r and \r\n like a browser would; compare on what is visible.
        if "\r" in message.plain:
            continue
        assert_html_mirrors_plain(message)


def test_round_minute_is_exposed_for_ids() -> None:
    # decide keys alert ids on this rounding; sub-second jitter lands on the same minute.
    base = messages.round_minute(WEEK_RESET)
    assert base == datetime(2026, 1, 8, 7, 0, tzinfo=UTC)
    assert messages.round_minute(WEEK_RESET + timedelta(microseconds=390_000)) == base
    assert messages.round_minute(WEEK_RESET - timedelta(microseconds=600_974)) == base


# --- the reader's zone (docs/design.md §9) ---------------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("zone", "moment", "text"),
    [
        (BERLIN, WEEK_RESET, "Thu 8 Jan 08:00 CET"),
        # Summer time has its own abbreviation; the API's …:59:59.6 still means "on the hour".
        (BERLIN, datetime(2026, 7, 9, 6, 59, 59, 600000, tzinfo=UTC), "Thu 9 Jul 09:00 CEST"),
        # Past midnight in the zone: the reader's day, not UTC's.
        (BERLIN, datetime(2026, 1, 7, 23, 30, tzinfo=UTC), "Thu 8 Jan 00:30 CET"),
        (ZoneInfo("America/New_York"), WEEK_RESET, "Thu 8 Jan 02:00 EST"),
        (ZoneInfo("Asia/Kolkata"), WEEK_RESET, "Thu 8 Jan 12:30 IST"),
        # A zone whose data has no letters for it: its offset, read as one.
        (ZoneInfo("Asia/Dubai"), WEEK_RESET, "Thu 8 Jan 11:00 UTC+04"),
        (ZoneInfo("UTC"), WEEK_RESET, "Thu 8 Jan 07:00 UTC"),
    ],
)
def test_times_are_on_the_readers_clock_with_the_zones_abbreviation(zone: tzinfo, moment: datetime, text: str) -> None:
    assert fmt_time(moment, zone) == text


def test_every_time_of_a_message_is_in_the_zone_and_ids_stay_utc() -> None:
    config = DecideConfig(weekly_thresholds=(50, 99), timezone=BERLIN)
    watch = armed_watch(weekly=10.0, config=config)
    (armed,) = watch.log
    assert "resets Thu 8 Jan 08:00 CET (in 5d 19h)" in armed.plain
    for step in range(1, 13):
        watch.see({"seven_day": (10.0 + step * 4, WEEK_RESET)}, at=T0 + step * 5 * MIN)
    utc_watch = armed_watch(weekly=10.0, config=DecideConfig(weekly_thresholds=(50, 99)))
    for step in range(1, 13):
        utc_watch.see({"seven_day": (10.0 + step * 4, WEEK_RESET)}, at=T0 + step * 5 * MIN)
    by_kind = {a.kind: a for a in watch.log}
    assert "Resets Thu 8 Jan 08:00 CET" in by_kind["threshold"].plain
    assert " CET (in " in by_kind["forecast"].plain
    for alert in watch.log:
        assert "UTC" not in alert.plain, alert.plain
    # Only what a person reads changed: the same alerts, the same ids and machine fields.
    assert [a.id for a in watch.log] == [a.id for a in utc_watch.log]
    forecast, utc_forecast = by_kind["forecast"], {a.kind: a for a in utc_watch.log}["forecast"]
    assert forecast.details["projected_at"] == utc_forecast.details["projected_at"]
    assert forecast.details["projected_at"].endswith("+00:00")
    assert forecast.details["chart"]["timezone"] == "Europe/Berlin"
    assert "timezone" not in utc_forecast.details["chart"]  # UTC: the outbox as older releases wrote it
