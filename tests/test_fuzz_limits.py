"""Fuzzing the new parts of the two parsers (issue 11): arbitrary `limits[]` and
`spend`/`extra_usage` structures in the usage answer, and arbitrary extra-usage and
unknown-number records in state.json. The only failures allowed are the typed ones
(`BadResponse` and its `NoUsageLimit`; `CorruptState`/`StateSchemaError`), and what is
accepted is sane. Also: state.json stays small with the new records, and a v2 file
written before them still reads.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_matrix_bot.core.decide import DecideConfig, decide
from claude_matrix_bot.errors import BadResponse, StateSchemaError
from claude_matrix_bot.state import CorruptState, dump_state, parse_state
from claude_matrix_bot.usage import parse_usage
from devstack.fakes.anthropic import limits_only_answer, spend_answer

TAKEN_AT = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["2026-07-03T03:19:59Z", "2026-07-03T03:19:59.123+00:00", "0001-01-01T00:00:00+01:00", "USD"])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=15,
)
names = st.sampled_from(["Fable", "opus", "Claude Code", "", "!!!", "Ünï", "x" * 80]) | st.text(max_size=12)
scopes = json_values | st.fixed_dictionaries(
    {},
    optional={
        "model": json_values | st.fixed_dictionaries({}, optional={"id": scalars, "display_name": names | scalars}),
        "surface": json_values | st.fixed_dictionaries({}, optional={"display_name": names | scalars}),
    },
)
entries = json_values | st.fixed_dictionaries(
    {},
    optional={
        "kind": st.sampled_from(["session", "weekly_all", "weekly_scoped", "monthly", "daily"]) | scalars,
        "group": scalars,
        "percent": scalars | st.integers(min_value=0, max_value=100) | st.floats(min_value=0, max_value=100),
        "resets_at": scalars,
        "severity": scalars,
        "scope": scopes,
        "is_active": scalars,
    },
)
money = json_values | st.fixed_dictionaries(
    {},
    optional={
        "amount_minor": scalars | st.integers(min_value=0, max_value=10**6),
        "currency": scalars,
        "exponent": scalars | st.integers(min_value=0, max_value=4),
    },
)
spends = json_values | st.fixed_dictionaries(
    {},
    optional={
        "used": money,
        "limit": money,
        "cap": json_values,
        "percent": scalars,
        "enabled": scalars,
        "disabled_reason": scalars,
    },
)
extra_usages = json_values | st.fixed_dictionaries(
    {},
    optional={
        "is_enabled": scalars,
        "monthly_limit": scalars,
        "used_credits": scalars,
        "utilization": scalars,
        "currency": scalars,
        "decimal_places": scalars,
        "disabled_reason": scalars,
    },
)
answers = st.fixed_dictionaries(
    {},
    optional={
        "five_hour": st.none() | st.fixed_dictionaries({"utilization": scalars, "resets_at": scalars}),
        "seven_day": st.none() | json_values,
        "limits": json_values | st.lists(entries, max_size=6),
        "spend": spends,
        "extra_usage": extra_usages,
        "seven_day_breakdown": json_values,
        "tangelo": json_values,
    },
)


def _ran_dry(reading: Any) -> bool:
    extra = reading.extra_usage
    return extra is not None and extra.disabled_reason == "out_of_credits" and extra.limit is not None


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers)
def test_parse_usage_with_arbitrary_limits_and_spend_raises_nothing_but_bad_response(answer: dict[str, Any]) -> None:
    try:
        reading = parse_usage(answer, TAKEN_AT)
    except BadResponse:
        return
    # Never silent: a bucket with a number, or a Team seat's enabled spend cap, a credit or
    # a locked window to watch (docs/design.md §1).
    watched = (reading.extra_usage is not None and reading.extra_usage.enabled is True) or reading.credits
    assert reading.buckets or watched or reading.locked or _ran_dry(reading), "never silent"
    for name, bucket in reading.buckets.items():
        assert name == "five_hour" or name.startswith("seven_day")
        assert 0.0 <= bucket.utilization <= 100.0
        assert bucket.resets_at is None or bucket.resets_at.utcoffset() == timedelta(0)
        assert bucket.is_active in (None, True, False)
        assert bucket.severity is None or (isinstance(bucket.severity, str) and len(bucket.severity) <= 20)
    extra = reading.extra_usage
    if extra is not None:
        assert extra.used is None or 0 <= extra.used <= 10**15
        assert extra.limit is None or 0 <= extra.limit <= 10**15
        assert 0 <= extra.exponent <= 8 and len(extra.currency) == 3
        assert extra.percent is None or (math.isfinite(extra.percent) and extra.percent >= 0)
    assert len(reading.unknown_numbers) <= 20
    # Whatever was accepted can be decided on and stored, and reads back equal.
    decision = decide(None, reading, TAKEN_AT, DecideConfig())
    assert parse_state(dump_state(decision.state)) == decision.state


extra_records = json_values | st.fixed_dictionaries(
    {},
    optional={
        "period_start": scalars,
        "last_used": scalars,
        "started_alerted": scalars,
        "alerted_thresholds": json_values,
        "last": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "enabled": scalars,
                "used": scalars,
                "limit": scalars,
                "currency": scalars,
                "exponent": scalars,
                "percent": scalars,
                "disabled_reason": scalars,
                "source": scalars,
            },
        ),
    },
)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    extra=extra_records,
    unknown=json_values,
    bucket_extras=st.fixed_dictionaries({}, optional={"is_active": scalars, "severity": scalars}),
)
def test_parse_state_with_arbitrary_new_records_raises_nothing_but_its_typed_errors(
    extra: Any, unknown: Any, bucket_extras: dict[str, Any]
) -> None:
    doc = {
        "schema": 2,
        "buckets": {"seven_day": {"utilization": 10.0, "resets_at": None, **bucket_extras}},
        "extra_usage": extra,
        "unknown_numbers": unknown,
    }
    try:
        state = parse_state(json.dumps(doc, allow_nan=True).encode())
    except (CorruptState, StateSchemaError):
        return
    assert parse_state(dump_state(state)) == state


def test_a_v2_file_written_before_these_records_still_reads() -> None:
    old = {
        "schema": 2,
        "armed_at": "2026-06-01T00:00:00Z",
        "buckets": {"seven_day": {"utilization": 40.0, "resets_at": "2026-06-05T07:00:00Z", "alerted_thresholds": []}},
        "outbox": [],
        "health": {},
    }
    state = parse_state(json.dumps(old).encode())
    assert state.extra_usage is None and state.unknown_numbers == ()
    assert state.buckets["seven_day"].is_active is None
    # And a state without the new records is written without them (an older reader sees what it always saw).
    written = json.loads(dump_state(state))
    assert "extra_usage" not in written and "unknown_numbers" not in written
    assert "is_active" not in written["buckets"]["seven_day"]


def test_state_stays_small_with_four_weekly_limits_buckets_overage_and_unknown_numbers() -> None:
    # A month of five-minute cycles on a limits-only account with three model-scoped
    # weekly limits, overage being spent, and the most unknown numbers an answer can list.
    state = None
    config = DecideConfig()
    now = datetime(2026, 7, 1, tzinfo=UTC)
    reset = now + timedelta(days=7)
    biggest = 0
    for step in range(30 * 24 * 12):
        now += timedelta(minutes=5)
        if now >= reset:
            reset += timedelta(days=7)
        pct = min(100, (step % 2016) / 20)
        answer = limits_only_answer(
            session=(pct, (now + timedelta(hours=3)).isoformat()),
            weekly_all=(pct, reset.isoformat()),
            scoped={m: (pct, reset.isoformat()) for m in ("Fable", "Opus", "Claude Code")},
            active="Fable",
            severities={"Fable": "warning"},
            overage=spend_answer(step * 7 % 11000, 11000),
        )
        answer.update({f"unknown_key_{i}_{'x' * 40}": i for i in range(30)})
        reading = parse_usage(answer, now)
        decision = decide(state, reading, now, config)
        state = decision.state.with_outbox(())  # delivered
        biggest = max(biggest, len(dump_state(state)))
    assert state is not None and state.extra_usage is not None and len(state.unknown_numbers) == 20
    print(f"largest state.json over 30 days: {biggest} bytes")
    assert biggest < 16 * 1024, biggest
