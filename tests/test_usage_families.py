"""The newer families in the usage answer (issue 23, docs/design.md §2 "Since autumn 2026"):
credit budgets, banked resets (`cedar_ember`), `locked_reason`, `seven_day_breakdown`, Team
seats; read from the answers in tests/data/usage/ (SOURCES.md names each one's source), and
the client's one request against the loopback fake, which serves `cedar_ember` as the real
endpoint does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from claude_matrix_bot.errors import BadResponse, NoUsageLimit
from claude_matrix_bot.settings import DEFAULT_USER_AGENT
from claude_matrix_bot.usage import UsageClient, parse_usage
from devstack.fakes.anthropic import SAMPLE_BANKED, SAMPLE_TEAM_SEAT, FakeAnthropic, spend_answer

DATA = Path(__file__).parent / "data" / "usage"
NOW = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)


def capture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / name).read_text())
    return loaded


def test_every_capture_has_its_source_named() -> None:
    sources = (DATA / "SOURCES.md").read_text()
    files = sorted(p.name for p in DATA.glob("*.json"))
    assert len(files) >= 8
    for name in files:
        assert f"`{name}`" in sources, f"{name} has no row in SOURCES.md"


# --- credits ------------------------------------------------------------------------------


def test_a_credit_budget_is_read_with_its_money_and_expiry() -> None:
    reading = parse_usage(capture("credit_iguana_necktie.json"), NOW)
    (credit,) = reading.credits
    assert (credit.key, credit.limit, credit.used, credit.remaining) == ("iguana_necktie", 250.0, 25.0, 225.0)
    assert credit.utilization == 10.0
    assert credit.expires_at == datetime(2026, 11, 5, 7, 59, tzinfo=UTC)
    assert reading.unknown_numbers == ()  # no longer "numbers this release does not read"
    assert reading.banked is None  # `cedar_ember: null`: a plain call


def test_credits_under_unknown_names_and_with_missing_fields() -> None:
    reading = parse_usage(capture("credit_two_pools.json"), NOW)
    by_key = {c.key: c for c in reading.credits}
    assert set(by_key) == {"iguana_necktie", "harbor_lantern"}
    lantern = by_key["harbor_lantern"]
    assert (lantern.used, lantern.remaining, lantern.expires_at) == (1.6, 98.4, None)
    assert reading.buckets == {}, "credits alone are watched: not a failure"


def test_placeholders_and_window_dollar_fields_are_known_not_unknown() -> None:
    reading = parse_usage(capture("window_dollar_fields.json"), NOW)
    assert reading.credits == () and reading.locked == ()
    assert reading.unknown_numbers == ()
    assert set(reading.buckets) == {"five_hour", "seven_day"}


@pytest.mark.parametrize(
    ("credit", "why"),
    [
        ({"limit_dollars": "250"}, "credit"),
        ({"limit_dollars": 250, "used_dollars": -4}, "used_dollars is out of range"),
        ({"limit_dollars": 250, "remaining_dollars": float("inf")}, "remaining_dollars is out of range"),
        ({"limit_dollars": 250, "resets_at": "soon"}, "resets_at is not an instant"),
    ],
)
def test_a_garbled_credit_is_named_and_dropped_never_fatal(credit: dict[str, Any], why: str) -> None:
    answer = {"seven_day": {"utilization": 3.0, "resets_at": None}, "cinder_cove": credit}
    reading = parse_usage(answer, NOW)
    assert reading.credits == ()
    if why == "credit":  # a string is no amount: not a credit, and carries no number
        assert reading.unknown_numbers == ()
    else:
        assert any(u.startswith("cinder_cove (credit:") and why in u for u in reading.unknown_numbers)


# --- banked resets ----------------------------------------------------------------------------


def test_the_launch_grant_is_read_and_an_unreadable_one_named() -> None:
    reading = parse_usage(capture("banked_launch_grant.json"), NOW)
    assert reading.banked is not None
    assert (reading.banked.eligible, reading.banked.at_limit) == (True, False)
    (grant,) = reading.banked.grants
    assert grant.id == "opus55-launch-promax-20260921"
    assert grant.label is not None and grant.label.startswith("Claude Opus 5.5 launch")
    assert (grant.resets_left, grant.resets_total, grant.usable_now) == (1, 1, True)
    assert grant.clears == ("five_hour", "seven_day", "seven_day_overage_included")
    assert grant.ends_at == datetime(2026, 10, 22, 16, 0, tzinfo=UTC)
    assert grant.available(NOW) and not grant.available(datetime(2026, 10, 23, tzinfo=UTC))
    assert any("cedar_ember.grants[1]" in u for u in reading.unknown_numbers)
    assert "juniper_tide" in reading.unknown_numbers  # a sibling block nobody reads yet: said


def test_several_grants_keep_their_order_and_empty_labels_read_as_none() -> None:
    reading = parse_usage(capture("banked_several_grants.json"), NOW)
    assert reading.banked is not None
    assert [g.id for g in reading.banked.grants] == ["g1", "g2", "g3"]
    assert all(g.label is None for g in reading.banked.grants)
    assert [g.available(NOW) for g in reading.banked.grants] == [True, True, False]


# --- breakdown, locked, seats -----------------------------------------------------------------


# The breakdown a live Max 20 answer carried (SixFive7/StatusAI docs/limits.md, see SOURCES.md;
# its `as_of` is elided there, so it is left out here): surfaces at 0% are not said.
_MAX20_BREAKDOWN = {
    "window_started_at": "2026-09-21T07:00:00.037784+00:00",
    "rows": [
        {"key": "claude_code", "display_name": "Claude Code", "percent": 99},
        {"key": "chat", "display_name": "Chats", "percent": 0},
        {"key": "cowork", "display_name": "Cowork", "percent": 1},
        {"key": "other", "display_name": "Other", "percent": 0},
    ],
}


def test_the_breakdown_says_where_the_week_went() -> None:
    reading = parse_usage(capture("breakdown_rows.json"), NOW)
    assert reading.breakdown is not None
    assert reading.breakdown.summary() == "Claude Code 57%, Cowork 30%, Chat 10%, Other 3%"
    assert reading.breakdown.window_started_at == datetime(2026, 9, 29, 12, 0, 0, 879348, tzinfo=UTC)
    assert reading.breakdown.as_of == datetime(2026, 10, 6, 5, 45, 15, 895251, tzinfo=UTC)
    assert reading.buckets["seven_day"].severity == "critical"

    max20 = parse_usage(capture("breakdown_rows.json") | {"seven_day_breakdown": _MAX20_BREAKDOWN}, NOW)
    assert max20.breakdown is not None
    assert max20.breakdown.summary() == "Claude Code 99%, Cowork 1%"
    assert max20.breakdown.window_started_at == datetime(2026, 9, 21, 7, 0, 0, 37784, tzinfo=UTC)
    assert max20.breakdown.as_of is None


def test_a_locked_window_is_read_and_watched() -> None:
    reading = parse_usage(capture("locked_seat.json"), NOW)
    assert reading.locked == (("five_hour", "seat_removed"), ("seven_day", "seat_removed"))
    assert reading.buckets == {}


def test_a_team_seat_with_an_enabled_spend_cap_is_watched_not_failed() -> None:
    for answer in (capture("team_seat.json"), SAMPLE_TEAM_SEAT):
        reading = parse_usage(answer, NOW)
        assert reading.buckets == {}
        extra = reading.extra_usage
        assert extra is not None and extra.enabled is True
        assert (extra.used, extra.limit) == (211926, 500000)


@pytest.mark.parametrize(
    "answer",
    [
        {},
        {"five_hour": None, "seven_day": None, "limits": [], **spend_answer(None, 500000, enabled=False)},
        {"five_hour": None, "limits": [], "member_dashboard_available": True, "cedar_ember": None},
        {"five_hour": None, "iguana_necktie": {"utilization": 0.0, "limit_dollars": 0, "resets_at": None}},
    ],
)
def test_nothing_to_watch_still_fails(answer: dict[str, Any]) -> None:
    with pytest.raises(NoUsageLimit, match="no usage limit in the answer: a free plan, or the endpoint changed"):
        parse_usage(answer, NOW)


# --- the one request, against the fake --------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        server.set_usage(SAMPLE_BANKED)
        yield server


def test_the_default_agent_asks_for_banked_resets_on_the_one_request(fake: FakeAnthropic) -> None:
    token = fake.issue_tokens().access_token
    with UsageClient(fake.base_url, DEFAULT_USER_AGENT) as client:
        reading = client.fetch(token, NOW)
    (request,) = fake.requests
    assert request.method == "GET" and request.path == "/api/oauth/usage" and request.query == "cedar_ember=1"
    assert request.header("User-Agent") == DEFAULT_USER_AGENT
    assert fake.usage_calls == 1 and fake.refresh_calls == 0
    assert reading.banked is not None and [g.id for g in reading.banked.grants] == ["opus55-launch-promax-20260921"]


def test_an_agent_that_is_not_claude_codes_gets_surface(fake: FakeAnthropic) -> None:
    token = fake.issue_tokens().access_token
    with UsageClient(fake.base_url, "claude-code/2.0.55") as client:
        reading = client.fetch(token, NOW)
    assert reading.banked is not None
    assert (reading.banked.eligible, reading.banked.ineligible_reason, reading.banked.grants) == (False, "surface", ())


def test_banked_resets_off_makes_a_plain_call(fake: FakeAnthropic) -> None:
    token = fake.issue_tokens().access_token
    with UsageClient(fake.base_url, DEFAULT_USER_AGENT, banked_resets=False) as client:
        reading = client.fetch(token, NOW)
    assert reading.banked is None  # `cedar_ember: null`
    assert fake.requests[0].query == ""
    assert [c.key for c in reading.credits] == ["iguana_necktie"]


def test_an_instant_in_the_last_day_of_year_9999_is_refused_not_an_overflow() -> None:
    """Rounding it to the minute would fall off the calendar (issue 21 item 1): a window's is
    a refused answer, a credit's drops that credit."""
    late = "9999-12-31T23:59:59.999+00:00"
    with pytest.raises(BadResponse, match="resets_at is out of range"):
        parse_usage({"five_hour": {"utilization": 3.0, "resets_at": late}}, NOW)
    reading = parse_usage({"seven_day": {"utilization": 3.0}, "x_credit": {"limit_dollars": 5, "resets_at": late}}, NOW)
    assert reading.credits == () and any(u.startswith("x_credit (credit:") for u in reading.unknown_numbers)
