"""Property-based fuzzing of the two parsers that read what others wrote (issue 7):
`usage.parse_usage` (the undocumented endpoint's JSON) and `state.parse_state` (a file
that a crash, an operator or an older release may have mangled).

The only failures allowed are the project's own typed errors: `BadResponse` for the
usage answer; `CorruptState` (the file is moved aside) or `StateSchemaError` (left
alone) for the state. Anything else (KeyError, TypeError, OverflowError, ...) would
crash a cycle instead of being handled.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from claude_matrix_bot.errors import BadResponse, StateSchemaError
from claude_matrix_bot.state import CorruptState, dump_state, parse_state
from claude_matrix_bot.usage import parse_usage

TAKEN_AT = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(
        [
            "2026-01-02T19:59:59.600956+00:00",
            "2026-01-02T19:59:59Z",
            "2026-01-02",
            "",
            "Z",
            "9999-12-31T23:59:59+14:00",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-14:00",
        ]
    )
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)
bucket_names = st.sampled_from(
    [
        "five_hour",
        "seven_day",
        "seven_day_opus",
        "seven_day_sonnet",
        "seven_day_cowork",
        "extra_usage",
        "limits",
        "x_day",
    ]
)
# Near misses of the real shape reach deeper than arbitrary JSON does.
bucket_values = (
    st.none()
    | json_values
    | st.fixed_dictionaries({"utilization": scalars, "resets_at": scalars}, optional={"extra": json_values})
)
usage_answers = json_values | st.dictionaries(bucket_names | st.text(max_size=20), bucket_values, max_size=6)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(usage_answers)
# Found by this test: an instant that overflows when converted to UTC.
@example({"five_hour": {"utilization": 3.0, "resets_at": "0001-01-01T00:00:00+01:00"}})
def test_parse_usage_raises_nothing_but_bad_response(answer: Any) -> None:
    try:
        reading = parse_usage(answer, TAKEN_AT)
    except BadResponse:
        return
    for name, bucket in reading.buckets.items():
        # What it accepts is sane: a percentage, an aware instant.
        assert isinstance(name, str)
        assert 0.0 <= bucket.utilization <= 100.0 and math.isfinite(bucket.utilization)
        assert bucket.resets_at is None or bucket.resets_at.tzinfo is not None


times = st.sampled_from(["2031-01-01T00:00:00Z", "2031-01-01T00:00:00+02:00", "yesterday", "", None]) | scalars
buckets_v2 = st.fixed_dictionaries(
    {},
    optional={
        "utilization": scalars,
        "resets_at": times,
        "window": times,
        "alerted_thresholds": json_values | st.lists(scalars, max_size=4),
        "forecast_fired": json_values,
        "shifted_to": json_values | st.lists(times, max_size=3),
        "history": json_values | st.lists(st.lists(scalars, min_size=0, max_size=3), max_size=4),
    },
)
alerts = json_values | st.fixed_dictionaries(
    {"id": scalars, "kind": scalars, "plain": scalars, "html": scalars},
    optional={"bucket": scalars, "created_at": times, "details": json_values},
)
states_v2 = st.fixed_dictionaries(
    {"schema": st.sampled_from([2, 2, 2, 1, 3, "2", 2.0, True, None])},
    optional={
        "buckets": json_values | st.dictionaries(bucket_names, buckets_v2 | json_values, max_size=3),
        "outbox": json_values | st.lists(alerts, max_size=3),
        "health": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "consecutive_failures": scalars,
                "degraded": json_values,
                "failing_since": times,
                "last_error": scalars,
                "last_success_at": times,
                "last_attempt_at": times,
            },
        ),
        "armed_at": times,
        "note": scalars,
    },
)
states_v1 = st.dictionaries(bucket_names, st.none() | buckets_v2 | json_values, max_size=4)


def _encode(doc: Any) -> bytes:
    return json.dumps(doc, allow_nan=True).encode()


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(states_v2.map(_encode), states_v1.map(_encode), json_values.map(_encode), st.binary(max_size=200)))
def test_parse_state_raises_nothing_but_its_typed_errors(data: bytes) -> None:
    try:
        state = parse_state(data)
    except (CorruptState, StateSchemaError):
        return
    # Whatever it accepts can be written back and read again to the same value.
    assert parse_state(dump_state(state)) == state
