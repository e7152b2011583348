"""The core over answers as they are today (issue 11): `limits[]`-derived buckets are
treated exactly like legacy ones, and the extra-usage signal (docs/design.md §1).

Answers go through the real parser (`parse_usage`) and then `decide`: JSON in,
alerts and state out, `now` passed explicitly. No mocks, no clock, no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_matrix_bot.core.decide import DecideConfig, decide
from claude_matrix_bot.core.messages import bucket_label, fmt_money
from claude_matrix_bot.errors import ConfigError
from claude_matrix_bot.model import Alert
from claude_matrix_bot.settings import load_settings
from claude_matrix_bot.sinks.stdout import StdoutSink
from claude_matrix_bot.state import State, dump_state, parse_state
from claude_matrix_bot.usage import parse_usage
from devstack.fakes.anthropic import limit_entry, limits_only_answer, spend_answer

T0 = datetime(2026, 7, 28, 9, 0, tzinfo=UTC)
WEEK_RESET = datetime(2026, 8, 3, 6, 59, 59, 600974, tzinfo=UTC)
FIVE_RESET = datetime(2026, 7, 28, 11, 59, 59, 600956, tzinfo=UTC)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
CFG = DecideConfig()


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass
class Bot:
    """Successive successful cycles of one bot, fed with raw answers."""

    config: DecideConfig = CFG
    state: State | None = None
    log: list[Alert] = field(default_factory=list)

    def see(self, answer: dict[str, Any], at: datetime) -> list[Alert]:
        decision = decide(self.state, parse_usage(json.loads(json.dumps(answer)), at), at, self.config)
        # Every decided state survives the trip through state.json unchanged.
        assert parse_state(dump_state(decision.state)) == decision.state
        self.state = decision.state
        self.log.extend(decision.alerts)
        return list(decision.alerts)


def kinds(alerts: list[Alert]) -> list[tuple[str, object]]:
    return [(a.kind, a.details.get("threshold", a.details.get("started", a.bucket))) for a in alerts]


# --- limits[] buckets are buckets like any other -----------------------------------------


def test_a_fable_limit_that_exists_only_in_limits_is_a_weekly_bucket_with_every_signal() -> None:
    bot = Bot()

    def answer(fable: float, reset: datetime = WEEK_RESET) -> dict[str, Any]:
        return limits_only_answer(
            session=(5, iso(FIVE_RESET)),
            weekly_all=(20, iso(WEEK_RESET)),
            scoped={"Fable": (fable, iso(reset))},
            active="Fable",
            severities={"Fable": "warning"} if fable >= 80 else None,
        )

    (armed,) = bot.see(answer(35), T0)
    assert armed.kind == "armed"
    assert "• Weekly Fable: 35%, resets Mon 3 Aug 07:00 UTC (in 5d 22h) (binding now)" in armed.plain
    assert "• Weekly (all models): 20%" in armed.plain

    (threshold,) = bot.see(answer(52), T0 + HOUR)
    assert (threshold.kind, threshold.bucket, threshold.details["threshold"]) == ("threshold", "seven_day_fable", 50)
    assert threshold.plain.splitlines()[:2] == ["🟠 Weekly Fable usage passed 50%", "Now at 52% (binding now)."]

    # A burn of 4%/h over six hours runs out long before the reset: one forecast.
    seen: list[Alert] = []
    for step in range(1, 8):
        seen += bot.see(answer(52 + 4 * step), T0 + HOUR + step * HOUR)
    assert [a.kind for a in seen].count("forecast") == 1
    forecast = next(a for a in seen if a.kind == "forecast")
    assert forecast.bucket == "seven_day_fable"
    assert "🔥 Weekly Fable on track to run out before it resets" in forecast.plain
    assert "Anthropic marks this limit: binding now" in forecast.plain
    assert ("threshold", 80) in kinds(seen)
    eighty = next(a for a in seen if a.details.get("threshold") == 80)
    assert "Now at 80% (binding now, warning)." in eighty.plain

    # A shift of the Fable window's anchor while it is active.
    (shift,) = bot.see(answer(81, WEEK_RESET + 6 * HOUR), T0 + 9 * HOUR)
    assert (shift.kind, shift.bucket) == ("reset_shift", "seven_day_fable")
    assert bot.state is not None and bot.state.buckets["seven_day_fable"].is_active is True


def test_labels_name_limits_buckets_in_words() -> None:
    assert bucket_label("seven_day_fable") == "Weekly Fable"
    assert bucket_label("seven_day") == "Weekly (all models)"
    assert bucket_label("seven_day_claude_code") == "Weekly Claude Code"
    assert bucket_label("five_hour") == "5-hour session"


def _legacy(values: dict[str, tuple[float, datetime]]) -> dict[str, Any]:
    return {name: {"utilization": u, "resets_at": iso(r)} for name, (u, r) in values.items()}


def _as_limits(values: dict[str, tuple[float, datetime]]) -> dict[str, Any]:
    """The same numbers carried only in limits[]: legacy keys null, entries as a current answer has them."""
    entries = []
    answer: dict[str, Any] = {}
    for name, (u, r) in values.items():
        answer[name] = None
        if name == "five_hour":
            entries.append(limit_entry("session", u, iso(r)))
        elif name == "seven_day":
            entries.append(limit_entry("weekly_all", u, iso(r)))
        else:
            display = name.removeprefix("seven_day_").capitalize()
            answer.pop(name)  # a model-scoped limit has no legacy key at all
            entries.append(limit_entry("weekly_scoped", u, iso(r), model=display))
    answer["limits"] = entries
    return answer


percents = st.integers(min_value=0, max_value=100).map(float)
steps = st.lists(
    st.tuples(
        st.integers(min_value=5, max_value=240),  # minutes since the previous cycle
        percents,
        percents,
        percents,
        st.sampled_from([0, 0, 0, 6, 30]),  # hours the weekly anchor moves (a shift or none)
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=120, deadline=None)
@given(steps=steps, thresholds=st.sampled_from([(50, 80), (25, 50, 75, 90), (10,)]))
def test_numbers_only_in_limits_yield_the_same_alerts_as_in_legacy_keys(
    steps: list[tuple[int, float, float, float, int]], thresholds: tuple[int, ...]
) -> None:
    # The metamorphic property (issue 11): moving every number from the legacy keys into
    # limits[] changes nothing the room sees: same kinds, buckets, ids, texts, details.
    config = DecideConfig(weekly_thresholds=thresholds, forecast_min_samples=3, forecast_min_span_sec=1800)
    legacy, limits = Bot(config), Bot(config)
    now = T0
    anchor = WEEK_RESET
    for minutes, five, week, fable, move in steps:
        now += timedelta(minutes=minutes)
        anchor += timedelta(hours=move)
        values = {
            "five_hour": (five, now + 3 * HOUR),
            "seven_day": (week, anchor),
            "seven_day_fable": (fable, anchor),
        }
        a = legacy.see(_legacy(values), now)
        b = limits.see(_as_limits(values), now)
        assert [x.to_json() for x in a] == [y.to_json() for y in b]
    assert legacy.log, "the journey produced at least the armed baseline"


# --- the extra-usage signal (docs/design.md §1) ----------------------------------------------------


def overage(used: int | None, limit: int | None = 11000, **kwargs: Any) -> dict[str, Any]:
    return limits_only_answer(
        session=(100, iso(FIVE_RESET)),
        weekly_all=(70, iso(WEEK_RESET)),
        scoped={"Fable": (100, iso(WEEK_RESET))},
        active="Fable",
        overage=spend_answer(used, limit, **kwargs),
    )


def test_money_is_shown_in_its_currency_with_its_exponent() -> None:
    assert fmt_money(9221, "USD", 2) == "$92.21"
    assert fmt_money(11000, "USD", 2) == "$110.00"
    assert fmt_money(1234500, "EUR", 2) == "€12,345.00"
    assert fmt_money(1500, "JPY", 0) == "¥1,500"
    assert fmt_money(12345, "USD", 3) == "$12.345"
    assert fmt_money(9221, "CHF", 2) == "92.21 CHF"


def test_an_overage_timeline_across_a_month_boundary() -> None:
    bot = Bot()
    july = datetime(2026, 7, 30, 8, 0, tzinfo=UTC)
    # Armed while overage is on but nothing is spent yet.
    (armed,) = bot.see(overage(0), july)
    assert "• Extra usage: on, $0.00 of $110.00 (0%) spent" in armed.plain
    assert "Extra usage: when it starts and at 50%, 80%, 100% of its cap." in armed.plain

    # Money starts being spent: one "started"; more spending in the same period: silence.
    (started,) = bot.see(overage(42), july + HOUR)
    assert started.kind == "extra_usage" and started.details["started"] is True and started.bucket is None
    assert started.plain.splitlines()[0] == "💸 Extra usage started: you are now paying for overage"
    assert "Spent so far: $0.42 of $110.00 (0.4%)." in started.plain
    assert bot.see(overage(300), july + 2 * HOUR) == []

    # "Started" and thresholds due in one cycle would be separate alerts; here 50 and 80 together.
    crossed = bot.see(overage(9221), july + 3 * HOUR)
    assert kinds(crossed) == [("extra_usage", 50), ("extra_usage", 80)]
    assert "Spent: $92.21 of $110.00 (83.8%)." in crossed[1].plain
    assert crossed[1].plain.startswith("🔴 Extra usage passed 80% of its monthly cap")

    # The cap: 100%, and overage stops with its reason shown.
    (cap,) = bot.see(overage(11000, enabled=False, disabled_reason="out_of_credits"), july + 4 * HOUR)
    assert cap.details["threshold"] == 100
    assert "Overage stopped: out of credits." in cap.plain
    assert bot.see(overage(11000, enabled=False, disabled_reason="out_of_credits"), july + 5 * HOUR) == []
    july_period = bot.state.extra_usage.period_start if bot.state and bot.state.extra_usage else None
    assert july_period == july

    # August: the used amount drops, a new period begins, and every alert is due once more.
    august = datetime(2026, 8, 1, 0, 5, tzinfo=UTC)
    assert bot.see(overage(0), august) == []
    assert bot.state is not None and bot.state.extra_usage is not None
    assert bot.state.extra_usage.period_start == august
    again = bot.see(overage(6000), august + HOUR)
    assert kinds(again) == [("extra_usage", True), ("extra_usage", 50)], "two alerts, not one"
    ids_july = {a.id for a in bot.log if a.kind == "extra_usage" and a.created_at and a.created_at < august}
    ids_august = {a.id for a in again}
    assert not ids_july & ids_august, "the period start keys the ids"


def test_a_drop_that_is_not_to_zero_still_starts_a_new_period_and_says_started() -> None:
    bot = Bot()
    bot.see(overage(500), T0)
    assert bot.see(overage(700), T0 + HOUR) == []  # already spending at arming: baseline said it
    fresh = bot.see(overage(100), T0 + 2 * HOUR)
    assert kinds(fresh) == [("extra_usage", True)]


def test_extra_usage_stdout_lines_carry_amounts_not_a_bucket() -> None:
    import io

    bot = Bot()
    bot.see(overage(0), T0)
    alerts = bot.see(overage(6000), T0 + HOUR)
    stream = io.StringIO()
    StdoutSink(stream).deliver(alerts)
    started, fifty = (json.loads(line) for line in stream.getvalue().splitlines())
    for line in (started, fifty):
        assert line["kind"] == "extra_usage"
        assert "bucket" not in line
        assert (line["used"], line["limit"], line["currency"]) == (6000, 11000, "USD")
    assert started["started"] is True and "threshold" not in started
    assert fifty["threshold"] == 50 and "started" not in fifty


def test_overage_that_is_off_never_alerts_and_an_unknown_flag_counts_as_on() -> None:
    off = Bot()
    off.see(overage(0, enabled=False), T0)
    assert off.see(overage(9000, enabled=False), T0 + HOUR) == []
    unknown = Bot()
    answer = overage(0)
    del answer["spend"]["enabled"], answer["extra_usage"]["is_enabled"]
    unknown.see(answer, T0)
    answer = overage(6000)
    del answer["spend"]["enabled"], answer["extra_usage"]["is_enabled"]
    assert kinds(unknown.see(answer, T0 + HOUR)) == [("extra_usage", True), ("extra_usage", 50)]


def test_empty_extra_usage_thresholds_keep_only_started() -> None:
    bot = Bot(DecideConfig(extra_usage_thresholds=()))
    bot.see(overage(0), T0)
    assert kinds(bot.see(overage(11000), T0 + HOUR)) == [("extra_usage", True)]


def test_no_cap_reported_means_no_threshold_only_started() -> None:
    bot = Bot()
    bot.see(overage(0, None), T0)
    (started,) = bot.see(overage(305, None), T0 + HOUR)
    assert "Spent so far: $3.05 (no monthly cap reported)." in started.plain


def test_armed_baseline_marks_overage_already_past_as_said() -> None:
    bot = Bot()
    (armed,) = bot.see(overage(9221), T0)
    assert "• Extra usage: on, $92.21 of $110.00 (83.8%) spent — already past 50%, 80% of the cap" in armed.plain
    assert bot.see(overage(9300), T0 + HOUR) == [], "no second 'started', no repeated 50/80"
    assert kinds(bot.see(overage(11000), T0 + 2 * HOUR)) == [("extra_usage", 100)]


def test_an_answer_without_overage_keeps_the_period() -> None:
    bot = Bot()
    bot.see(overage(5000), T0)
    plain = limits_only_answer(session=(5, iso(FIVE_RESET)), weekly_all=(20, iso(WEEK_RESET)))
    del plain["spend"], plain["extra_usage"]
    bot.see(plain, T0 + HOUR)
    assert bot.state is not None and bot.state.extra_usage is not None
    assert bot.state.extra_usage.period_start == T0
    assert bot.see(overage(5100), T0 + 2 * HOUR) == []


def test_unknown_numbers_reach_the_state() -> None:
    bot = Bot()
    bot.see({**overage(0), "amber_gauge": {"percent": 91}}, T0)
    assert bot.state is not None and bot.state.unknown_numbers == ("amber_gauge",)
    bot.see(overage(0), T0 + HOUR)
    assert bot.state.unknown_numbers == (), "the list says what the last answer carried"


# --- EXTRA_USAGE_THRESHOLDS (docs/design.md §3) ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, (50, 80, 100)), ("90,50", (50, 90)), ("", ()), ("  ", ()), ("100%", (100,))],
)
def test_extra_usage_thresholds_setting(value: str | None, expected: tuple[int, ...]) -> None:
    env = {"LOCAL_MODE": "1", "ALERT_SINK": "stdout"}
    if value is not None:
        env["EXTRA_USAGE_THRESHOLDS"] = value
    settings_ = load_settings(env)
    assert settings_.extra_usage_thresholds == expected
    assert settings_.decide_config().extra_usage_thresholds == expected


@pytest.mark.parametrize("value", ["lots", "0", "50,150"])
def test_a_bad_extra_usage_threshold_is_named(value: str) -> None:
    with pytest.raises(ConfigError, match="EXTRA_USAGE_THRESHOLDS"):
        load_settings({"LOCAL_MODE": "1", "ALERT_SINK": "stdout", "EXTRA_USAGE_THRESHOLDS": value})
