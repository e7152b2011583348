"""Fuzzing the newer families (issue 23): arbitrary credit budgets, `cedar_ember` blocks,
`seven_day_breakdown` rows and `locked_reason` values in the usage answer. The only failure
allowed is the typed one (`BadResponse`, with its `NoUsageLimit`); what is accepted is
bounded and clean (a few of each, short texts without control characters), and deciding on
it and writing the state never raises (the state written reads back the same)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_matrix_bot.core.decide import DecideConfig, decide
from claude_matrix_bot.errors import BadResponse
from claude_matrix_bot.state import CorruptState, dump_state, parse_state
from claude_matrix_bot.usage import parse_usage
from claude_matrix_bot.usage_families import MAX_BREAKDOWN_ROWS, MAX_CREDITS, MAX_GRANTS

TAKEN_AT = datetime(2026, 9, 24, 3, 4, 5, tzinfo=UTC)
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(
        ["2026-10-22T16:00:00+00:00", "2026-11-05T07:59:00Z", "9999-12-31T23:59:59.999+00:00", "\x1b[31m"]
    )
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
dollars = scalars | st.floats(min_value=0, max_value=2000) | st.integers(min_value=0, max_value=2000)
credits = st.fixed_dictionaries(
    {"limit_dollars": dollars},
    optional={
        "utilization": scalars | st.floats(min_value=0, max_value=100),
        "resets_at": scalars,
        "used_dollars": dollars,
        "remaining_dollars": dollars,
        "locked_reason": scalars,
    },
)
grants = json_values | st.fixed_dictionaries(
    {},
    optional={
        "id": scalars | st.sampled_from(["g1", "opus55-launch-promax-20260921", "BAD ID", "x" * 200]),
        "label": scalars | st.text(max_size=300),
        "resets_total": scalars | st.integers(min_value=0, max_value=3),
        "resets_left": scalars | st.integers(min_value=0, max_value=3),
        "starts_at": scalars,
        "ends_at": scalars,
        "clears": json_values | st.lists(st.sampled_from(["five_hour", "seven_day", "\x07bell"]), max_size=12),
        "paused": scalars,
        "usable_now": scalars,
    },
)
cedar = json_values | st.fixed_dictionaries(
    {},
    optional={
        "eligible": scalars,
        "ineligible_reason": scalars,
        "at_limit": scalars,
        "grants": json_values | st.lists(grants, max_size=12),
    },
)
rows = st.fixed_dictionaries(
    {}, optional={"key": scalars, "display_name": scalars | st.text(max_size=80), "percent": scalars}
)
windows = st.none() | st.fixed_dictionaries(
    {}, optional={"utilization": scalars | st.floats(0, 100), "resets_at": scalars, "locked_reason": scalars}
)
answers = st.fixed_dictionaries(
    {},
    optional={
        "five_hour": windows,
        "seven_day": windows,
        "seven_day_opus": windows,
        "iguana_necktie": st.none() | credits | json_values,
        "cinder_cove": st.none() | credits,
        "nimbus_quill": st.none() | credits,
        "cedar_ember": cedar,
        "seven_day_breakdown": json_values | st.fixed_dictionaries({"rows": st.lists(rows, max_size=12)}),
        "spend": json_values,
    },
).flatmap(
    lambda base: st.dictionaries(st.sampled_from(["harbor_lantern", "x_credit"]), credits, max_size=12).map(
        lambda more: {**base, **more}
    )
)


def _clean(text: str | None, limit: int) -> bool:
    return text is None or (len(text) <= limit and not CONTROL.search(text))


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers)
def test_any_family_shape_parses_bounded_or_fails_typed(answer: dict[str, Any]) -> None:
    try:
        reading = parse_usage(answer, TAKEN_AT)
    except BadResponse:
        return
    assert len(reading.credits) <= MAX_CREDITS
    for credit in reading.credits:
        assert 0 < credit.limit <= 1e9
        assert 0 <= credit.used <= credit.limit and 0 <= credit.remaining <= credit.limit
        assert 0 <= credit.utilization <= 100
        assert credit.expires_at is None or credit.expires_at.utcoffset() == timedelta(0)
    if reading.banked is not None:
        assert len(reading.banked.grants) <= MAX_GRANTS
        assert _clean(reading.banked.ineligible_reason, 40)
        for grant in reading.banked.grants:
            assert re.fullmatch(r"[A-Za-z0-9._:-]{1,100}", grant.id)
            assert _clean(grant.label, 120) and 0 <= grant.resets_left <= 1000
            assert all(_clean(name, 40) for name in grant.clears) and len(grant.clears) <= 8
            grant.available(TAKEN_AT)  # comparable instants
    if reading.breakdown is not None:
        assert 1 <= len(reading.breakdown.rows) <= MAX_BREAKDOWN_ROWS
        assert all(0 <= r.percent <= 100 and _clean(r.display_name, 40) for r in reading.breakdown.rows)
        assert len(reading.breakdown.summary()) < 1000
    assert len(reading.locked) <= 8 and all(_clean(reason, 40) for _, reason in reading.locked)
    assert len(reading.unknown_numbers) <= 20


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers, answers, st.integers(min_value=0, max_value=90 * 24))
def test_deciding_on_any_family_shape_never_raises_and_the_state_reads_back(
    first: dict[str, Any], second: dict[str, Any], hours: int
) -> None:
    state = None
    for when, answer in ((TAKEN_AT, first), (TAKEN_AT + timedelta(hours=hours), second)):
        try:
            reading = parse_usage(answer, when)
        except BadResponse:
            continue
        decision = decide(state, reading, when, DecideConfig(charts_enabled=False))
        written = dump_state(decision.state)
        assert len(written) < 64_000
        state = parse_state(written)
        assert state == parse_state(dump_state(state))
        for alert in decision.alerts:
            assert alert.kind in {"armed", "credit", "banked_reset", "locked", "threshold", "reset_shift"} | {
                "forecast",
                "extra_usage",
                "recovered",
                "digest",
                "session",
            }
            assert len(alert.plain) < 4000


@settings(max_examples=300, deadline=None)
@given(
    json_values
    | st.fixed_dictionaries(
        {},
        optional={
            "credits": json_values,
            "grants": json_values,
            "locked": json_values,
            "breakdown": json_values,
            "at_limit_since": scalars,
        },
    )
)
def test_any_families_record_in_state_json_reads_or_is_corrupt(families: Any) -> None:
    doc = {"schema": 2, "buckets": {}, "outbox": [], "health": {}, "families": families}
    try:
        state = parse_state(json.dumps(doc).encode())
    except CorruptState:
        return  # refused with where: the file is moved aside and the bot re-arms
    assert len(state.families.credits) <= 8 and len(state.families.grants) <= 8
    assert parse_state(dump_state(state)) == state
