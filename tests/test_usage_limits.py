"""The usage answer as it is today (issue 11, docs/design.md §1/§2): buckets from `limits[]`,
the precedence between legacy keys and `limits[]`, paid overage (`spend` / `extra_usage`),
numbers under keys this release does not read, and "never silent".

Table-driven against `parse_usage`, plus the fake's samples through the real client.
The samples themselves are written from docs/design.md §2 and what public clients recorded
(see the docstring of claude_matrix_bot/usage.py for the threads).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from claude_matrix_bot.errors import BadResponse, NoUsageLimit
from claude_matrix_bot.model import BucketReading, ExtraUsage
from claude_matrix_bot.usage import UsageClient, parse_usage, scope_slug
from devstack.fakes.anthropic import (
    SAMPLE_EMPTY,
    SAMPLE_LIMITS_ONLY,
    SAMPLE_MIXED,
    SAMPLE_OVERAGE,
    FakeAnthropic,
    limit_entry,
    spend_answer,
)

NOW = datetime(2026, 7, 2, 12, 0, tzinfo=UTC)
UA = "claude-code/2.1.80"
R1 = "2026-07-08T06:59:59Z"
R1_AT = datetime(2026, 7, 8, 6, 59, 59, tzinfo=UTC)
R2 = "2026-07-08T07:00:00.123+00:00"
R2_AT = datetime(2026, 7, 8, 7, 0, 0, 123000, tzinfo=UTC)


def _answer(*entries: dict[str, Any], **legacy: Any) -> dict[str, Any]:
    return {"five_hour": None, "seven_day": None, **legacy, "limits": list(entries)}


# --- the mapping (docs/design.md §2, decided) ------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "bucket"),
    [
        (limit_entry("session", 7, R1), "five_hour"),
        (limit_entry("weekly_all", 28, R1), "seven_day"),
        (limit_entry("weekly_scoped", 35, R1, model="Fable"), "seven_day_fable"),
        (limit_entry("weekly_scoped", 35, R1, model="opus"), "seven_day_opus"),
        (limit_entry("weekly_scoped", 35, R1, model="Fable 5.1"), "seven_day_fable_5_1"),
        (limit_entry("weekly_scoped", 35, R1, model="  Claude -- Opus!  "), "seven_day_claude_opus"),
        # no model: the surface's display name
        (limit_entry("weekly_scoped", 3, R1, surface="Claude Code"), "seven_day_claude_code"),
        # a model name wins over a surface name
        (limit_entry("weekly_scoped", 3, R1, model="Fable", surface="Claude Code"), "seven_day_fable"),
    ],
)
def test_limits_kinds_map_to_buckets(entry: dict[str, Any], bucket: str) -> None:
    reading = parse_usage(_answer(entry), NOW)
    assert list(reading.buckets) == [bucket]
    assert reading.buckets[bucket].resets_at == R1_AT


@pytest.mark.parametrize(
    ("display_name", "slug"),
    [
        ("Fable", "fable"),
        ("opus", "opus"),
        ("Sonnet 4.5", "sonnet_4_5"),
        ("OAuth apps", "oauth_apps"),
        ("__x__", "x"),
        ("Ünïcode Model", "ünïcode_model"),
        ("!!!", ""),
    ],
)
def test_scope_slug(display_name: str, slug: str) -> None:
    assert scope_slug(display_name) == slug


@pytest.mark.parametrize(
    "entry",
    [
        {"kind": "monthly_org", "group": "org", "percent": None, "scope": None},
        {"kind": "daily", "percent": None},
        {"group": "weekly", "percent": None},
        limit_entry("weekly_scoped", None, R1),  # no scope at all
        limit_entry("weekly_scoped", None, R1, model="!!!"),  # a name with nothing to slug
        "a string entry",
        None,
    ],
)
def test_other_kinds_and_unnamed_scopes_are_ignored(entry: object) -> None:
    reading = parse_usage({"five_hour": {"utilization": 1.0}, "limits": [entry]}, NOW)
    assert list(reading.buckets) == ["five_hour"]
    assert reading.null_buckets == ()
    assert reading.unknown_numbers == ()


@pytest.mark.parametrize(
    ("entry", "reported"),
    [
        ({"kind": "daily_all", "percent": 40}, "limits[0] (kind=daily_all)"),
        (limit_entry("weekly_scoped", 12, R1), "limits[0] (kind=weekly_scoped, no scope name)"),
        ({"percent": 40}, "limits[0] (no kind)"),
        ([5], "limits[0]"),
    ],
)
def test_limits_with_numbers_this_release_cannot_read_are_reported(entry: object, reported: str) -> None:
    reading = parse_usage({"five_hour": {"utilization": 1.0}, "limits": [entry]}, NOW)
    assert list(reading.buckets) == ["five_hour"]
    assert reading.unknown_numbers == (reported,)


@pytest.mark.parametrize(
    ("percent", "expected"),
    [(35, 35.0), (35.5, 35.5), (0, 0.0), (100.3, 100.0), (-0.4, 0.0)],
)
def test_percent_is_a_percentage_integer_or_float(percent: float, expected: float) -> None:
    reading = parse_usage(_answer(limit_entry("weekly_all", percent, R1)), NOW)
    assert reading.buckets["seven_day"].utilization == expected


def test_percent_null_is_a_null_bucket() -> None:
    reading = parse_usage(
        _answer(limit_entry("session", 4, R1), limit_entry("weekly_scoped", None, R1, model="Fable")), NOW
    )
    assert "seven_day_fable" in reading.null_buckets
    assert "seven_day_fable" not in reading.buckets


@pytest.mark.parametrize(
    ("entry", "needle"),
    [
        (limit_entry("weekly_all", "28%", R1), "'seven_day': percent is a str"),
        (limit_entry("weekly_all", True, R1), "'seven_day': percent is a bool"),
        (limit_entry("weekly_scoped", 4000, R1, model="Fable"), "'seven_day_fable': percent 4000.0"),
        (limit_entry("session", 5, "soon"), "'five_hour': resets_at is not an ISO-8601 instant"),
        (limit_entry("session", 5, 1783000000), "'five_hour': resets_at is a int"),
    ],
)
def test_insane_numbers_in_a_read_kind_reject_the_answer(entry: dict[str, Any], needle: str) -> None:
    # The same strictness as a legacy bucket: alerting on a garbled number is worse than one failed cycle.
    with pytest.raises(BadResponse) as info:
        parse_usage(_answer(entry, five_hour={"utilization": 3.0}), NOW)
    assert needle in str(info.value)


def test_is_active_and_severity_are_kept() -> None:
    reading = parse_usage(SAMPLE_LIMITS_ONLY, NOW)
    fable = reading.buckets["seven_day_fable"]
    assert (fable.utilization, fable.is_active, fable.severity, fable.binding) == (35.0, True, "warn", True)
    weekly = reading.buckets["seven_day"]
    # The sample's weekly_all entry has no severity key at all.
    assert (weekly.is_active, weekly.severity, weekly.binding) == (False, None, False)


@pytest.mark.parametrize(
    ("value", "kept"),
    [("WARNING", "warning"), ("  normal ", "normal"), ("", None), (3, None), (None, None)],
)
def test_severity_is_normalised_text_or_nothing(value: object, kept: str | None) -> None:
    entry = {**limit_entry("weekly_all", 5, R1), "severity": value, "is_active": "yes"}
    bucket = parse_usage(_answer(entry), NOW).buckets["seven_day"]
    assert bucket.severity == kept
    assert bucket.is_active is None, "only a JSON boolean says whether a limit binds"


# --- precedence (docs/design.md §2: the legacy float wins; limits[] fills field by field) ----------


@pytest.mark.parametrize(
    ("legacy", "entry", "expected"),
    [
        # both give a number: the legacy float (more precise) wins, its resets_at too
        (
            {"utilization": 36.4, "resets_at": R2},
            limit_entry("weekly_all", 36, R1),
            BucketReading(36.4, R2_AT, False, "normal"),
        ),
        # legacy number with resets_at null takes the entry's resets_at
        (
            {"utilization": 36.4, "resets_at": None},
            limit_entry("weekly_all", 36, R1),
            BucketReading(36.4, R1_AT, False, "normal"),
        ),
        # ... and with no resets_at key at all
        ({"utilization": 36.4}, limit_entry("weekly_all", 36, R1), BucketReading(36.4, R1_AT, False, "normal")),
        # legacy number, entry percent null: the legacy number, the entry's resets_at
        ({"utilization": 36.4}, limit_entry("weekly_all", None, R1), BucketReading(36.4, R1_AT, False, "normal")),
        # legacy null: the entry fills it all
        (None, limit_entry("weekly_all", 36, R1, is_active=True), BucketReading(36.0, R1_AT, True, "normal")),
        # legacy utilization null: the same
        (
            {"utilization": None, "resets_at": None},
            limit_entry("weekly_all", 36, R1),
            BucketReading(36.0, R1_AT, False, "normal"),
        ),
        # legacy utilization null with a resets_at: the entry's number, the legacy resets_at
        (
            {"utilization": None, "resets_at": R2},
            limit_entry("weekly_all", 36, R1),
            BucketReading(36.0, R2_AT, False, "normal"),
        ),
    ],
)
def test_precedence_field_by_field(legacy: object, entry: dict[str, Any], expected: BucketReading) -> None:
    reading = parse_usage({"five_hour": {"utilization": 1.0}, "seven_day": legacy, "limits": [entry]}, NOW)
    assert reading.buckets["seven_day"] == expected


def test_legacy_absent_and_entry_present() -> None:
    reading = parse_usage({"limits": [limit_entry("session", 9, R1)]}, NOW)
    assert reading.buckets == {"five_hour": BucketReading(9.0, R1_AT, False, "normal")}


def test_both_null_is_a_null_bucket() -> None:
    reading = parse_usage(
        {"five_hour": {"utilization": 1.0}, "seven_day": None, "limits": [limit_entry("weekly_all", None, R1)]}, NOW
    )
    assert reading.null_buckets == ("seven_day",)


def test_two_entries_for_one_bucket_keep_the_fuller() -> None:
    # Two display names that slug alike: the one nearer its limit is never hidden.
    reading = parse_usage(
        _answer(
            limit_entry("weekly_scoped", 20, R1, model="Fable"), limit_entry("weekly_scoped", 70, R2, model="fable")
        ),
        NOW,
    )
    assert reading.buckets["seven_day_fable"] == BucketReading(70.0, R2_AT, False, "normal")


def test_the_mixed_sample() -> None:
    reading = parse_usage(SAMPLE_MIXED, NOW)
    assert reading.buckets["five_hour"].utilization == 24.4, "legacy float wins over the entry's 24"
    assert reading.buckets["seven_day"].resets_at == R1_AT, "null legacy resets_at filled from limits[]"
    assert reading.buckets["seven_day_fable"] == BucketReading(
        64.0, datetime(2026, 7, 8, 6, 59, 59, 600974, tzinfo=UTC), True, "warning"
    )
    assert reading.buckets["seven_day_claude_code"].utilization == 3.0
    assert "seven_day_opus" in reading.null_buckets
    # seven_day_breakdown, member_dashboard_available, code-named nulls and limit_dollars: no complaint.
    assert reading.unknown_numbers == ()
    assert "seven_day_breakdown" not in reading.buckets and "seven_day_breakdown" not in reading.null_buckets


def test_the_limits_only_sample_is_not_silent() -> None:
    reading = parse_usage(SAMPLE_LIMITS_ONLY, NOW)
    assert {name: b.utilization for name, b in reading.buckets.items()} == {
        "five_hour": 7.0,
        "seven_day": 28.0,
        "seven_day_fable": 35.0,
    }
    assert set(reading.null_buckets) == {"seven_day_sonnet", "seven_day_opus", "seven_day_oauth_apps"}


# --- never silent (docs/design.md §1) -----------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        SAMPLE_EMPTY,
        {"five_hour": None, "seven_day": None, "seven_day_opus": None, "limits": []},
        {"five_hour": None, "limits": [limit_entry("session", None, R1), limit_entry("weekly_all", None, None)]},
        # Spend off: an enabled cap would be a Team seat, watched (tests/test_usage_families.py).
        {
            "five_hour": None,
            "limits": [{"kind": "monthly", "percent": 40}],
            "spend": spend_answer(500, 5000, enabled=False)["spend"],
        },
        # A credit's zero placeholder is not a credit.
        {"seven_day": None, "nimbus_quill": {"utilization": 0.0, "limit_dollars": None, "resets_at": None}},
        {"iguana_necktie": None, "member_dashboard_available": True, "seven_day_breakdown": {"rows": [1, 2]}},
    ],
)
def test_no_number_in_any_bucket_is_no_usage_limit(answer: dict[str, Any]) -> None:
    with pytest.raises(NoUsageLimit) as info:
        parse_usage(answer, NOW)
    assert str(info.value).startswith("no usage limit in the answer: a free plan, or the endpoint changed")
    assert isinstance(info.value, BadResponse), "a typed failure of the upstream family"


# --- numbers under keys not understood ------------------------------------------------------


def test_numbers_under_unknown_keys_are_reported_known_ones_are_not() -> None:
    answer = {
        "five_hour": {"utilization": 1.0, "used": 4, "limit": 10, "limit_dollars": 3.5},  # per-bucket extras
        "seven_day_breakdown": {"rows": [{"share": 0.4}]},  # known, ignored
        "member_dashboard_available": True,
        "iguana_necktie": None,  # code-named null: nothing to say
        "tangelo": {"utilization": 12},  # a code-named key with a number: say so
        "new_weekly_thing": [{"pct": 5}],
        "plan": "max",  # no number
        "seven_day": {"resets_at": R1, "remaining": 40},  # bucket-shaped name, no utilization
    }
    reading = parse_usage(answer, NOW)
    assert list(reading.buckets) == ["five_hour"]
    assert set(reading.unknown_numbers) == {"tangelo", "new_weekly_thing", "seven_day"}


def test_the_unknown_list_is_bounded() -> None:
    answer: dict[str, Any] = {"five_hour": {"utilization": 1.0}}
    answer.update({f"key_{i}": i for i in range(500)})
    answer["x" * 5000] = 1
    reading = parse_usage(answer, NOW)
    assert len(reading.unknown_numbers) == 20
    assert all(len(name) <= 40 for name in reading.unknown_numbers)


# --- paid overage (docs/design.md §2) ------------------------------------------------------------------

BUCKET = {"five_hour": {"utilization": 1.0}}


@pytest.mark.parametrize(
    ("blocks", "expected"),
    [
        # spend preferred; percent from used/limit
        (spend_answer(9221, 11000), ExtraUsage(True, 9221, 11000, "USD", 2, 9221 * 100 / 11000)),
        # spend preferred also when its `enabled` disagrees with extra_usage.is_enabled
        (
            {
                "spend": spend_answer(500, 5000, enabled=False, disabled_reason="out_of_credits")["spend"],
                "extra_usage": {"is_enabled": True, "used_credits": 1, "monthly_limit": 2},
            },
            ExtraUsage(False, 500, 5000, "USD", 2, 10.0, "out_of_credits"),
        ),
        # spend without `enabled`: extra_usage.is_enabled speaks
        (
            {
                "spend": {"used": {"amount_minor": 305, "currency": "EUR", "exponent": 2}, "limit": None, "percent": 0},
                "extra_usage": {"is_enabled": True},
            },
            ExtraUsage(True, 305, None, "EUR", 2, 0.0),
        ),
        # neither says: unknown, not "off"
        (
            {"spend": {"used": {"amount_minor": 305, "currency": "USD", "exponent": 2}, "limit": None}},
            ExtraUsage(None, 305, None, "USD", 2, None),
        ),
        # another exponent (yen: none)
        (
            {
                "spend": {
                    "used": {"amount_minor": 1500, "currency": "JPY", "exponent": 0},
                    "limit": {"amount_minor": 3000, "currency": "JPY", "exponent": 0},
                    "enabled": True,
                }
            },
            ExtraUsage(True, 1500, 3000, "JPY", 0, 50.0),
        ),
        # a cap in other units cannot be compared: dropped, the given percent speaks
        (
            {
                "spend": {
                    "used": {"amount_minor": 1500, "currency": "USD", "exponent": 2},
                    "limit": {"amount_minor": 3000, "currency": "EUR", "exponent": 2},
                    "percent": 45,
                    "enabled": True,
                }
            },
            ExtraUsage(True, 1500, None, "USD", 2, 45.0),
        ),
        # the older extra_usage alone: minor units with 2 decimals...
        (
            {
                "extra_usage": {
                    "is_enabled": True,
                    "monthly_limit": 5000,
                    "used_credits": 1234.0,
                    "utilization": 24.68,
                    "currency": "USD",
                }
            },
            ExtraUsage(True, 1234, 5000, "USD", 2, 24.68, source="extra_usage"),
        ),
        # ... unless it carries decimal_places
        (
            {
                "extra_usage": {
                    "is_enabled": True,
                    "monthly_limit": 50000,
                    "used_credits": 12345,
                    "decimal_places": 3,
                    "currency": "usd",
                }
            },
            ExtraUsage(True, 12345, 50000, "USD", 3, 24.69, source="extra_usage"),
        ),
        # disabled, nothing spent, fields missing
        (
            {"extra_usage": {"is_enabled": False, "monthly_limit": None, "used_credits": None, "utilization": None}},
            ExtraUsage(False, None, None, "USD", 2, None, source="extra_usage"),
        ),
        # no limit known: the given utilization is the percent
        (
            {"extra_usage": {"is_enabled": True, "used_credits": 700, "utilization": 70}},
            ExtraUsage(True, 700, None, "USD", 2, 70.0, source="extra_usage"),
        ),
    ],
)
def test_overage_readings(blocks: dict[str, Any], expected: ExtraUsage) -> None:
    extra = parse_usage({**BUCKET, **blocks}, NOW).extra_usage
    assert extra is not None
    assert extra == ExtraUsage(
        expected.enabled,
        expected.used,
        expected.limit,
        expected.currency,
        expected.exponent,
        pytest.approx(expected.percent, abs=0.01) if expected.percent is not None else None,  # type: ignore[arg-type]
        expected.disabled_reason,
        expected.source,
    )


@pytest.mark.parametrize(
    ("blocks", "reported"),
    [
        ({"spend": {"used": {"amount_minor": "lots"}}}, "spend (unreadable: spend.used.amount_minor is a str)"),
        ({"spend": {"used": {"amount_minor": -5}}}, "spend (unreadable: spend.used.amount_minor is out of range)"),
        ({"spend": {"used": {"amount_minor": 5, "exponent": 40}}}, "spend (unreadable: spend.used.exponent"),
        ({"spend": {"used": 12}}, "spend (unreadable: spend.used is not an object)"),
        ({"spend": [1]}, "spend"),
        ({"extra_usage": {"used_credits": float("inf")}}, "extra_usage (unreadable: extra_usage.used_credits"),
    ],
)
def test_garbled_money_is_reported_and_never_costs_the_buckets(blocks: dict[str, Any], reported: str) -> None:
    reading = parse_usage({**BUCKET, **blocks}, NOW)
    assert list(reading.buckets) == ["five_hour"], "the buckets still count"
    assert reading.extra_usage is None
    assert any(u.startswith(reported) for u in reading.unknown_numbers), reading.unknown_numbers


def test_garbled_spend_falls_back_to_extra_usage() -> None:
    reading = parse_usage(
        {**BUCKET, "spend": {"used": {"amount_minor": "?"}}, "extra_usage": {"is_enabled": True, "used_credits": 42}},
        NOW,
    )
    assert reading.extra_usage is not None and reading.extra_usage.used == 42
    assert reading.extra_usage.source == "extra_usage"


USED = {"amount_minor": 211926, "currency": "USD", "exponent": 2}


@pytest.mark.parametrize(
    "blocks",
    [
        # the cap only in the older block: spend is preferred, extra_usage fills what it lacks
        {"spend": {"used": USED, "enabled": True}, "extra_usage": {"is_enabled": True, "monthly_limit": 500000}},
        # a Team seat's `spend.cap` (docs/design.md §2) in money
        {"spend": {"used": USED, "limit": None, "cap": {"money": {**USED, "amount_minor": 500000}}, "enabled": True}},
    ],
    ids=["extra_usage.monthly_limit", "spend.cap.money"],
)
def test_a_spend_without_its_limit_takes_the_cap_from_elsewhere(blocks: dict[str, Any]) -> None:
    extra = parse_usage({**BUCKET, **blocks}, NOW).extra_usage
    assert extra is not None and extra.source == "spend"
    assert (extra.used, extra.limit, extra.currency, extra.exponent) == (211926, 500000, "USD", 2)
    assert extra.percent == pytest.approx(42.39, abs=0.01)


def test_a_cap_in_other_units_is_not_taken() -> None:
    blocks = {
        "spend": {"used": USED, "cap": {"money": None, "credits": {"amount_minor": 500000, "exponent": 2}}},
        "extra_usage": {"is_enabled": True, "monthly_limit": 500000, "currency": "EUR"},
    }
    extra = parse_usage({**BUCKET, **blocks}, NOW).extra_usage
    assert extra is not None and extra.limit is None, "credits, and euros, are not the dollars spent"


def test_the_overage_sample() -> None:
    reading = parse_usage(SAMPLE_OVERAGE, NOW)
    assert reading.extra_usage == ExtraUsage(True, 9221, 11000, "USD", 2, pytest.approx(83.83, abs=0.01))  # type: ignore[arg-type]
    assert reading.buckets["seven_day_fable"].binding


# --- timestamps (docs/design.md §2: µs, ms or none; Z or +00:00; a missing key) --------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-07-03T03:19:59Z", datetime(2026, 7, 3, 3, 19, 59, tzinfo=UTC)),
        ("2026-07-03T03:19:59.123Z", datetime(2026, 7, 3, 3, 19, 59, 123000, tzinfo=UTC)),
        ("2026-07-03T03:19:59.600956+00:00", datetime(2026, 7, 3, 3, 19, 59, 600956, tzinfo=UTC)),
        ("2026-07-03T03:19:59+00:00", datetime(2026, 7, 3, 3, 19, 59, tzinfo=UTC)),
        ("2026-07-03T05:19:59.600+02:00", datetime(2026, 7, 3, 3, 19, 59, 600000, tzinfo=UTC)),
    ],
)
def test_every_timestamp_form_in_both_places(text: str, expected: datetime) -> None:
    legacy = parse_usage({"seven_day": {"utilization": 3, "resets_at": text}}, NOW)
    from_limits = parse_usage(_answer(limit_entry("weekly_all", 3, text)), NOW)
    assert legacy.buckets["seven_day"].resets_at == expected
    assert from_limits.buckets["seven_day"].resets_at == expected


def test_a_missing_resets_at_key_in_an_entry() -> None:
    entry = {"kind": "weekly_scoped", "percent": 50, "scope": {"model": {"display_name": "Fable"}}}
    assert parse_usage(_answer(entry), NOW).buckets["seven_day_fable"] == BucketReading(50.0, None, None, None)


# --- through the real client and the loopback fake --------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def client(fake: FakeAnthropic) -> Iterator[UsageClient]:
    with UsageClient(fake.base_url, UA, timeout=5.0) as usage_client:
        yield usage_client


@pytest.mark.parametrize("sample", ["limits_only", "mixed", "overage", "legacy"])
def test_the_fake_serves_each_sample_and_the_client_reads_it(
    fake: FakeAnthropic, client: UsageClient, sample: str
) -> None:
    token = fake.issue_tokens().access_token
    with httpx.Client(base_url=fake.base_url) as control:
        assert control.post("/_control/usage", json={"sample": sample, "jitter": True}).status_code == 200
    reading = client.fetch(token, NOW)
    assert reading.buckets
    assert all(b.resets_at is None or b.resets_at.tzinfo is not None for b in reading.buckets.values())
    if sample != "legacy":
        assert any(name.startswith("seven_day_") and b.binding for name, b in reading.buckets.items())


def test_the_fake_serves_the_empty_answer_and_the_client_says_what_is_wrong(
    fake: FakeAnthropic, client: UsageClient
) -> None:
    token = fake.issue_tokens().access_token
    with httpx.Client(base_url=fake.base_url) as control:
        assert control.post("/_control/usage", json={"sample": "empty"}).status_code == 200
        assert control.post("/_control/usage", json={"sample": "nope"}).status_code == 400
    with pytest.raises(NoUsageLimit, match="a free plan, or the endpoint changed"):
        client.fetch(token, NOW)


def test_unknown_numbers_are_logged_at_the_boundary(
    fake: FakeAnthropic, client: UsageClient, caplog: pytest.LogCaptureFixture
) -> None:
    fake.set_usage({**SAMPLE_LIMITS_ONLY, "amber_gauge": {"percent": 91}})
    with caplog.at_level(logging.WARNING, logger="claude_matrix_bot.usage"):
        reading = client.fetch(fake.issue_tokens().access_token, NOW)
    assert reading.unknown_numbers == ("amber_gauge",)
    assert "numbers this release does not read: amber_gauge" in caplog.text
