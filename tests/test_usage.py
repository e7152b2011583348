"""The usage parser (table + fuzz) and the usage client against the loopback fake."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_matrix_bot.errors import (
    BadResponse,
    Forbidden,
    NoUsageLimit,
    RateLimited,
    ServerError,
    Unauthorized,
    UpstreamError,
    UpstreamTimeout,
)
from claude_matrix_bot.model import BucketReading
from claude_matrix_bot.usage import UsageClient, parse_retry_after, parse_usage
from devstack.fakes.anthropic import (
    HTML_BODY,
    INFERENCE_ONLY,
    SAMPLE_USAGE,
    TRUNCATED_JSON,
    WRONG_SHAPE_JSON,
    FakeAnthropic,
)

NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
UA = "claude-code/2.0.55"


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def client(fake: FakeAnthropic) -> Iterator[UsageClient]:
    with UsageClient(fake.base_url, UA, timeout=5.0) as usage_client:
        yield usage_client


# --- parser -----------------------------------------------------------------------------


def test_parses_the_real_sample() -> None:
    reading = parse_usage(SAMPLE_USAGE, NOW)
    assert reading.taken_at == NOW
    assert reading.buckets == {
        "five_hour": BucketReading(24.0, datetime(2026, 1, 2, 19, 59, 59, 600956, tzinfo=UTC)),
        "seven_day": BucketReading(36.0, datetime(2026, 1, 8, 6, 59, 59, 600974, tzinfo=UTC)),
        "seven_day_sonnet": BucketReading(1.0, datetime(2026, 1, 8, 6, 59, 59, 600981, tzinfo=UTC)),
    }
    # extra_usage (utilization null) is not a window, so not a null bucket either.
    assert reading.null_buckets == ("seven_day_oauth_apps", "seven_day_opus")


def _one(bucket: str, value: Any) -> dict[str, Any]:
    return {"five_hour": {"utilization": 1.0, "resets_at": None}, bucket: value}


@pytest.mark.parametrize(
    ("payload", "bucket", "expected"),
    [
        # ints are fine
        ({"seven_day": {"utilization": 36, "resets_at": None}}, "seven_day", BucketReading(36.0, None)),
        # a bucket nobody knows yet is discovered
        (
            _one("seven_day_cowork", {"utilization": 5.5, "resets_at": "2026-01-08T07:00:00Z"}),
            "seven_day_cowork",
            BucketReading(5.5, datetime(2026, 1, 8, 7, tzinfo=UTC)),
        ),
        # slightly over 100 and slightly under 0 are clamped
        ({"seven_day": {"utilization": 100.4}}, "seven_day", BucketReading(100.0, None)),
        ({"seven_day": {"utilization": -0.2}}, "seven_day", BucketReading(0.0, None)),
        # offsets are converted to UTC; nanosecond fractions are accepted
        (
            {"five_hour": {"utilization": 0, "resets_at": "2026-01-02T21:59:59.600956123+02:00"}},
            "five_hour",
            BucketReading(0.0, datetime(2026, 1, 2, 19, 59, 59, 600956, tzinfo=UTC)),
        ),
        # an instant without offset is read as UTC
        (
            {"five_hour": {"utilization": 3.0, "resets_at": "2026-01-02T19:00:00"}},
            "five_hour",
            BucketReading(3.0, datetime(2026, 1, 2, 19, tzinfo=UTC)),
        ),
    ],
)
def test_bucket_values(payload: dict[str, Any], bucket: str, expected: BucketReading) -> None:
    assert parse_usage(payload, NOW).buckets[bucket] == expected


@pytest.mark.parametrize(
    "payload",
    [
        {"five_hour": {"utilization": 1.0}, "extra_usage": {"is_enabled": True, "utilization": 55.0}},
        {"five_hour": {"utilization": 1.0}, "limits": [{"utilization": 3}], "seven_day_breakdown": {"x": 1}},
        {"five_hour": {"utilization": 1.0}, "seven_day": {"resets_at": "2026-01-08T07:00:00Z"}},
        {"five_hour": {"utilization": 1.0}, "seven_day": [1, 2], "seven_day_x": "high"},
        {"five_hour": {"utilization": 1.0}, "weird key": None, "extra_usage": None},
    ],
)
def test_unknown_keys_are_ignored(payload: dict[str, Any]) -> None:
    reading = parse_usage(payload, NOW)
    assert list(reading.buckets) == ["five_hour"]
    assert reading.null_buckets == ()


def test_all_buckets_null_is_a_failure_never_a_quiet_reading() -> None:
    # docs/design.md §1 "never silent": no bucket with a number is a failed cycle, not "not in use".
    with pytest.raises(NoUsageLimit) as info:
        parse_usage({"five_hour": None, "seven_day": {"utilization": None, "resets_at": None}}, NOW)
    assert "no usage limit in the answer: a free plan, or the endpoint changed" in str(info.value)
    assert "2 null bucket(s)" in str(info.value)


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ([], "not an object"),
        ("five_hour", "not an object"),
        (None, "not an object"),
        ({}, "no usage limit in the answer"),
        ({"extra_usage": {"utilization": 3}, "limits": []}, "no usage limit in the answer"),
        (_one("seven_day", {"utilization": "36"}), "'seven_day': utilization is a str"),
        (_one("seven_day", {"utilization": True}), "'seven_day': utilization is a bool"),
        (_one("seven_day", {"utilization": math.nan}), "'seven_day': utilization nan"),
        (_one("seven_day", {"utilization": math.inf}), "'seven_day': utilization inf"),
        (_one("seven_day", {"utilization": 1000.5}), "'seven_day': utilization 1000.5"),
        (_one("seven_day", {"utilization": -3}), "'seven_day': utilization -3.0"),
        (_one("seven_day", {"utilization": 10**400}), "'seven_day': utilization is not a percentage"),
        (_one("seven_day", {"utilization": 3, "resets_at": "next tuesday"}), "'seven_day': resets_at"),
        (_one("seven_day", {"utilization": 3, "resets_at": 1767254400}), "'seven_day': resets_at is a int"),
    ],
)
def test_insane_answers_are_bad_responses(payload: object, needle: str) -> None:
    with pytest.raises(BadResponse) as info:
        parse_usage(payload, NOW)
    assert needle in str(info.value)


def test_error_never_echoes_a_huge_key() -> None:
    key = "seven_day_" + "x" * 10_000
    with pytest.raises(BadResponse) as info:
        parse_usage({key: {"utilization": "lots"}}, NOW)
    assert len(str(info.value)) < 200


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
_bucket_names = st.sampled_from(["five_hour", "seven_day", "seven_day_opus", "seven_day_new", "extra_usage"])
_bucket_values = st.none() | st.fixed_dictionaries(
    {},
    optional={
        "utilization": st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        "resets_at": st.none()
        | st.integers()
        | st.text(max_size=40)
        | st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    },
)
_usage_like = st.dictionaries(_bucket_names | st.text(max_size=10), _bucket_values | _json, max_size=6)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_json, _usage_like))
def test_fuzz_only_bad_response_or_a_sane_reading(payload: object) -> None:
    try:
        reading = parse_usage(payload, NOW)
    except BadResponse:
        return
    assert reading.buckets, "an answer without a number is NoUsageLimit, never a quiet reading"
    for bucket in reading.buckets.values():
        assert 0.0 <= bucket.utilization <= 100.0
        assert bucket.resets_at is None or bucket.resets_at.utcoffset() == timedelta(0)


# --- client against the fake --------------------------------------------------------------


def test_fetch_sends_the_headers_the_endpoint_needs(fake: FakeAnthropic, client: UsageClient) -> None:
    issued = fake.issue_tokens()
    reading = client.fetch(issued.access_token, NOW)
    assert reading.buckets["seven_day"].utilization == 36.0
    (request,) = fake.requests
    assert request.method == "GET"
    assert request.path == "/api/oauth/usage"
    assert request.header("authorization") == f"Bearer {issued.access_token}"
    assert request.header("anthropic-beta") == "oauth-2025-04-20"
    assert request.header("user-agent") == UA
    assert request.header("accept") == "application/json"


def test_jittered_resets_stay_within_the_second(fake: FakeAnthropic, client: UsageClient) -> None:
    fake.set_usage(SAMPLE_USAGE, jitter=True)
    token = fake.issue_tokens().access_token
    seen = {client.fetch(token, NOW).buckets["seven_day"].resets_at for _ in range(5)}
    assert all(r is not None and r.replace(microsecond=0) == datetime(2026, 1, 8, 6, 59, 59, tzinfo=UTC) for r in seen)
    assert len(seen) > 1


def test_unknown_token_is_unauthorized(fake: FakeAnthropic, client: UsageClient) -> None:
    with pytest.raises(Unauthorized) as info:
        client.fetch("fake-at-not-issued-by-the-fake", NOW)
    assert info.value.status == 401
    assert "fake-at-not-issued-by-the-fake" not in str(info.value)


def test_revoked_token_is_unauthorized(fake: FakeAnthropic, client: UsageClient) -> None:
    issued = fake.issue_tokens()
    fake.revoke(issued.access_token)
    with pytest.raises(Unauthorized):
        client.fetch(issued.access_token, NOW)


def test_inference_only_token_is_forbidden_with_a_scope_hint(fake: FakeAnthropic, client: UsageClient) -> None:
    issued = fake.issue_tokens(scopes=INFERENCE_ONLY)
    with pytest.raises(Forbidden) as info:
        client.fetch(issued.access_token, NOW)
    assert "user:profile" in str(info.value)
    assert "bootstrap" in str(info.value)
    assert issued.access_token not in str(info.value)


def test_missing_claude_code_user_agent_is_a_persistent_429_with_a_hint(fake: FakeAnthropic) -> None:
    token = fake.issue_tokens().access_token
    with UsageClient(fake.base_url, "python-httpx/0.28") as client:
        for _ in range(2):
            with pytest.raises(RateLimited) as info:
                client.fetch(token, NOW)
            assert "claude-cli/<version> (external, cli)" in str(info.value)
            assert "python-httpx/0.28" in str(info.value)


def test_429_with_retry_after_seconds(fake: FakeAnthropic, client: UsageClient) -> None:
    fake.fail_next("usage", 429, headers={"Retry-After": "120"})
    with pytest.raises(RateLimited) as info:
        client.fetch(fake.issue_tokens().access_token, NOW)
    assert info.value.retry_after == 120.0
    assert info.value.status == 429
    # a claude-code UA gets no User-Agent hint
    assert "ANTHROPIC_USER_AGENT" not in str(info.value)


def test_429_with_retry_after_http_date(fake: FakeAnthropic, client: UsageClient) -> None:
    fake.fail_next("usage", 429, headers={"Retry-After": format_datetime(NOW + timedelta(seconds=90), usegmt=True)})
    with pytest.raises(RateLimited) as info:
        client.fetch(fake.issue_tokens().access_token, NOW)
    assert info.value.retry_after == 90.0


def test_429_without_retry_after(fake: FakeAnthropic, client: UsageClient) -> None:
    fake.fail_next("usage", 429)
    with pytest.raises(RateLimited) as info:
        client.fetch(fake.issue_tokens().access_token, NOW)
    assert info.value.retry_after is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("0", 0.0), ("2.5", 2.5), ("-4", 0.0), ("soon", None), ("Fri, 02 Jan 2026 11:59:00 GMT", 0.0)],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_a_server_error_with_a_short_excerpt(fake: FakeAnthropic, client: UsageClient, status: int) -> None:
    fake.fail_next("usage", status, body="overloaded " * 100)
    with pytest.raises(ServerError) as info:
        client.fetch(fake.issue_tokens().access_token, NOW)
    assert info.value.status == status
    assert "overloaded" in str(info.value)
    assert len(str(info.value)) < 300


def test_html_error_page_is_a_server_error(fake: FakeAnthropic, client: UsageClient) -> None:
    fake.fail_next("usage", 502, body=HTML_BODY)
    with pytest.raises(ServerError, match="502"):
        client.fetch(fake.issue_tokens().access_token, NOW)


def test_other_4xx_is_a_plain_upstream_error(fake: FakeAnthropic, client: UsageClient) -> None:
    fake.fail_next("usage", 404)
    with pytest.raises(UpstreamError) as info:
        client.fetch(fake.issue_tokens().access_token, NOW)
    assert type(info.value) is UpstreamError
    assert info.value.status == 404


@pytest.mark.parametrize("body", [HTML_BODY, TRUNCATED_JSON, "", b"\xff\xfe\x00garbage"])
def test_200_that_is_not_json_is_a_bad_response(fake: FakeAnthropic, client: UsageClient, body: str | bytes) -> None:
    fake.fail_next("usage", 200, body=body)
    with pytest.raises(BadResponse) as info:
        client.fetch(fake.issue_tokens().access_token, NOW)
    # no body excerpt for 2xx
    assert "cloudflare" not in str(info.value)
    assert "utilization" not in str(info.value)


def test_200_of_the_wrong_shape_is_a_bad_response(fake: FakeAnthropic, client: UsageClient) -> None:
    fake.fail_next("usage", 200, body=WRONG_SHAPE_JSON)
    with pytest.raises(BadResponse, match="not an object"):
        client.fetch(fake.issue_tokens().access_token, NOW)


def test_error_body_echoing_the_token_is_redacted(fake: FakeAnthropic, client: UsageClient) -> None:
    token = fake.issue_tokens().access_token
    fake.fail_next("usage", 400, body=json.dumps({"error": f"bad token {token}"}))
    with pytest.raises(UpstreamError) as info:
        client.fetch(token, NOW)
    assert token not in str(info.value)
    assert "<redacted>" in str(info.value)


def test_slow_answer_is_a_timeout(fake: FakeAnthropic) -> None:
    fake.fail_next("usage", 200, delay=30)
    with UsageClient(fake.base_url, UA, timeout=0.3) as client, pytest.raises(UpstreamTimeout, match="timed out"):
        client.fetch(fake.issue_tokens().access_token, NOW)


def test_dropped_connection_is_a_timeout_family_error(fake: FakeAnthropic, client: UsageClient) -> None:
    fake.fail_next("usage", drop=True)
    with pytest.raises(UpstreamTimeout, match="unreachable"):
        client.fetch(fake.issue_tokens().access_token, NOW)


def test_refused_connection_is_a_timeout_family_error(fake: FakeAnthropic) -> None:
    token = fake.issue_tokens().access_token
    with UsageClient(fake.base_url, UA, timeout=2.0) as client:
        with fake.refusing_connections(), pytest.raises(UpstreamTimeout) as info:
            client.fetch(token, NOW)
        assert token not in str(info.value)
        # the same port serves again afterwards
        assert client.fetch(token, NOW).buckets


def test_injected_transport_is_used() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/oauth/usage"
        return httpx.Response(200, json={"five_hour": {"utilization": 7}})

    with UsageClient("http://usage.invalid/", UA, transport=httpx.MockTransport(answer)) as client:
        assert client.fetch("t", NOW).buckets["five_hour"].utilization == 7.0
