"""Table tests of the credit, banked-reset and account families (issue 23, docs/design.md §1,
§8), driving the pure `decide` with readings parsed from answers shaped like the captures in
tests/data/usage: once per budget/grant and event, the reminders and their urgency, "usable
now" once per limit episode, one urgent `locked` alert per value, the digest's breakdown, and
the state's records both ways (an older file without them still reads)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from claude_matrix_bot.core.decide import DecideConfig, decide
from claude_matrix_bot.model import Alert
from claude_matrix_bot.state import FamilyState, State, dump_state, parse_state
from claude_matrix_bot.usage import parse_usage
from devstack.fakes.anthropic import (
    SAMPLE_TEAM_SEAT,
    banked_block,
    credit_entry,
    grant_entry,
    spend_answer,
    window,
)

T0 = datetime(2026, 9, 23, 12, 0, tzinfo=UTC)
EXPIRES = datetime(2026, 10, 22, 16, 0, tzinfo=UTC)
CONFIG = DecideConfig(charts_enabled=False)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def answer(
    *,
    five: float = 10.0,
    week: float = 20.0,
    credit: dict[str, Any] | None = None,
    cedar: dict[str, Any] | None = None,
    locked: str | None = None,
    **more: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "five_hour": window(five, iso(T0 + timedelta(hours=3)), locked_reason=locked),
        "seven_day": window(week, "2026-09-29T06:00:00+00:00", locked_reason=locked),
        "cinder_cove": None,
        "cedar_ember": cedar,
        **more,
    }
    if credit is not None:
        body["iguana_necktie"] = credit
    return body


def run(
    steps: list[tuple[datetime, dict[str, Any]]], config: DecideConfig = CONFIG, state: State | None = None
) -> tuple[State | None, list[list[Alert]]]:
    """Each (now, answer) decided in turn, the state written and read back between cycles."""
    said: list[list[Alert]] = []
    for now, body in steps:
        decision = decide(state, parse_usage(body, now), now, config)
        said.append(list(decision.alerts))
        state = parse_state(dump_state(decision.state))
    return state, said


def kinds(alerts: list[Alert], kind: str) -> list[Alert]:
    return [a for a in alerts if a.kind == kind]


# --- credit ---------------------------------------------------------------------------------


def test_a_credit_at_arming_is_in_the_baseline_and_not_announced() -> None:
    _, (armed,) = run([(T0, answer(credit=credit_entry(250, 2.47, iso(EXPIRES))))])
    assert [a.kind for a in armed] == ["armed"]
    assert "• Credit (iguana_necktie): $247.53 left of $250.00, expires Thu 22 Oct 16:00 UTC" in armed[0].plain


def test_a_credit_new_after_arming_is_said_once_with_the_stdout_fields() -> None:
    credit = credit_entry(250, 2.47, iso(EXPIRES))
    _, said = run(
        [
            (T0, answer()),
            (T0 + timedelta(minutes=5), answer(credit=credit)),
            (T0 + timedelta(minutes=10), answer(credit=credit)),
        ]
    )
    (new,) = kinds(said[1], "credit")
    assert said[2] == []
    assert new.plain.startswith("💳 A $250.00 credit is on the account")
    line = new.to_json()
    assert "bucket" not in line and line["urgent"] is False
    assert {k: line[k] for k in ("credit", "limit", "used", "remaining", "expires_at", "event")} == {
        "credit": "iguana_necktie",
        "limit": 250.0,
        "used": 2.47,
        "remaining": 247.53,
        "expires_at": EXPIRES.isoformat(),
        "event": "new",
    }


def test_credit_thresholds_once_each_and_the_expiry_reminders_with_the_last_urgent() -> None:
    t = [EXPIRES - timedelta(days=10), EXPIRES - timedelta(days=9), EXPIRES - timedelta(days=8)]
    t += [EXPIRES - timedelta(hours=71), EXPIRES - timedelta(hours=70), EXPIRES - timedelta(hours=23)]
    t += [EXPIRES - timedelta(hours=22), EXPIRES + timedelta(hours=1)]
    used = [10, 85, 85, 90, 90, 90, 90, 90]
    steps = [
        (now, answer(credit=credit_entry(250, 250 * u / 100, iso(EXPIRES)))) for now, u in zip(t, used, strict=True)
    ]
    _, said = run(steps)
    events = [[(a.details["event"], a.urgent) for a in kinds(alerts, "credit")] for alerts in said]
    assert events == [[], [("80", False)], [], [("72h", False)], [], [("24h", True)], [], []]
    assert "expires in 2d 23h with $25.00 unused" in kinds(said[3], "credit")[0].plain


def test_no_reminder_once_less_than_one_currency_unit_is_left() -> None:
    near = EXPIRES - timedelta(hours=20)
    _, said = run(
        [
            (near - timedelta(days=5), answer(credit=credit_entry(250, 10, iso(EXPIRES)))),
            (near, answer(credit=credit_entry(250, 249.5, iso(EXPIRES)))),
        ]
    )
    # Less than one currency unit left: 80% is said, no reminder (99.8%: not yet 100).
    assert [(a.details["event"], a.urgent) for a in said[1]] == [("80", False)]


def test_a_new_credit_close_to_its_expiry_is_new_and_the_urgent_reminder() -> None:
    now = EXPIRES - timedelta(hours=20)
    _, said = run([(now - timedelta(minutes=5), answer()), (now, answer(credit=credit_entry(100, 5, iso(EXPIRES))))])
    assert [(a.details["event"], a.urgent) for a in said[1]] == [("new", False), ("24h", True)]


def test_empty_credit_thresholds_keep_the_reminders() -> None:
    config = DecideConfig(charts_enabled=False, credit_thresholds=())
    steps = [
        (EXPIRES - timedelta(days=5), answer(credit=credit_entry(250, 240, iso(EXPIRES)))),
        (EXPIRES - timedelta(hours=60), answer(credit=credit_entry(250, 240, iso(EXPIRES)))),
    ]
    _, said = run(steps, config)
    assert [a.details["event"] for a in said[1]] == ["72h"]


def test_a_second_budget_under_the_same_key_is_a_new_credit() -> None:
    later = EXPIRES + timedelta(days=30)
    steps = [
        (T0, answer(credit=credit_entry(250, 250, iso(EXPIRES)))),
        (EXPIRES + timedelta(days=1), answer(credit=credit_entry(250, 0, iso(later)))),
    ]
    _, said = run(steps)
    assert [a.details["event"] for a in said[1]] == ["new"]


# --- banked resets ----------------------------------------------------------------------------


def grant(**kw: Any) -> dict[str, Any]:
    return grant_entry("opus55-launch-promax-20260921", iso(EXPIRES), **kw)


def test_a_grant_available_once_in_words_and_never_claimed() -> None:
    cedar = banked_block([grant()])
    _, said = run(
        [
            (T0, answer()),
            (T0 + timedelta(minutes=5), answer(cedar=cedar)),
            (T0 + timedelta(minutes=10), answer(cedar=cedar)),
        ]
    )
    (available,) = said[1]
    assert available.kind == "banked_reset" and said[2] == []
    assert "A reset clears: 5-hour session, Weekly (all models)." in available.plain
    assert "never claims a reset" in available.plain
    line = available.to_json()
    assert "bucket" not in line
    assert (line["grant_id"], line["resets_left"], line["ends_at"], line["event"]) == (
        "opus55-launch-promax-20260921",
        1,
        EXPIRES.isoformat(),
        "available",
    )


def test_grant_reminders_72h_and_24h_the_last_urgent_and_none_with_no_reset_left() -> None:
    cedar = banked_block([grant()])
    steps = [
        (T0, answer(cedar=cedar)),
        (EXPIRES - timedelta(hours=70), answer(cedar=cedar)),
        (EXPIRES - timedelta(hours=69), answer(cedar=cedar)),
        (EXPIRES - timedelta(hours=20), answer(cedar=cedar)),
    ]
    _, said = run(steps)
    assert [[(a.details["event"], a.urgent) for a in alerts] for alerts in said[1:]] == [
        [("72h", False)],
        [],
        [("24h", True)],
    ]
    spent = banked_block([grant(resets_left=0)])
    _, said = run([(T0, answer(cedar=spent)), (EXPIRES - timedelta(hours=20), answer(cedar=spent))])
    assert said[1] == []


def test_usable_now_once_per_limit_episode() -> None:
    cedar = banked_block([grant()])
    usable = banked_block([grant(usable_now=True)])  # the server's word once at a limit
    t = [T0 + timedelta(hours=h) for h in range(6)]
    steps = [
        (t[0], answer(cedar=cedar)),
        (t[1], answer(cedar=usable, five=100)),
        (t[2], answer(cedar=usable, five=100)),
        (t[3], answer(cedar=cedar, five=5)),
        (t[4], answer(cedar=banked_block([grant(usable_now=True)], at_limit=True))),
        (t[5], answer(cedar=banked_block([grant(usable_now=True)], at_limit=True))),
    ]
    _, said = run(steps)
    said_usable = [[a for a in alerts if a.details.get("event") == "usable_now"] for alerts in said]
    assert [len(u) for u in said_usable] == [0, 1, 0, 0, 1, 0]
    assert said_usable[1][0].plain.startswith("🔄 At a limit (5-hour session): a banked reset can clear it now")
    # The grant's label is quoted as the server wrote it, never lower-cased.
    assert "“Claude Opus 5.5 launch: one usage-limit reset for Pro and Max”." in said_usable[1][0].plain
    assert said_usable[1][0].id != said_usable[4][0].id


def test_a_plain_answer_keeps_the_grants_and_banked_resets_off_says_nothing() -> None:
    cedar = banked_block([grant()])
    state, said = run([(T0, answer(cedar=cedar)), (T0 + timedelta(minutes=5), answer(cedar=None))])
    assert said[1] == [] and state is not None and [g.id for g in state.families.grants] == [grant()["id"]]
    off = DecideConfig(charts_enabled=False, banked_resets_enabled=False)
    _, said = run([(T0, answer()), (T0 + timedelta(minutes=5), answer(cedar=cedar, five=100))], off)
    # Only the session's own limit (issue 24), never a banked reset.
    assert [(a.kind, a.details.get("event")) for a in said[1]] == [("session", "limit")]


# --- account, seats, breakdown -----------------------------------------------------------------


def test_locked_is_one_urgent_alert_per_value_also_at_arming() -> None:
    steps = [
        (T0, answer(locked="seat_removed")),
        (T0 + timedelta(minutes=5), answer(locked="seat_removed")),
        (T0 + timedelta(minutes=10), answer()),
        (T0 + timedelta(minutes=15), answer(locked="seat_removed")),
    ]
    _, said = run(steps)
    locked = [kinds(alerts, "locked") for alerts in said]
    assert [len(x) for x in locked] == [1, 0, 0, 1]
    first = locked[0][0]
    assert first.urgent and first.plain.startswith("⛔ The account is locked: seat removed")
    assert first.to_json()["locked_reason"] == "seat_removed"


def test_a_team_seat_arms_and_alerts_on_its_spend() -> None:
    seat = dict(SAMPLE_TEAM_SEAT)
    steps = [(T0, seat), (T0 + timedelta(days=3), {**seat, **spend_answer(410000, 500000)})]
    _, said = run(steps)
    assert "• Extra usage: on, $2,119.26 of $5,000.00 (42.4%) spent" in said[0][0].plain
    assert [a.details.get("threshold") for a in said[1]] == [50, 80]


def test_the_digest_says_where_the_week_went() -> None:
    breakdown = {
        "rows": [
            {"key": "claude_code", "display_name": "Claude Code", "percent": 83},
            {"key": "chat", "display_name": "Chats", "percent": 17},
        ]
    }
    first = answer(week=40.0, seven_day_breakdown=breakdown)
    rolled = answer(week=1.0)
    rolled["seven_day"] = window(1.0, "2026-10-06T06:00:00+00:00")
    steps = [(datetime(2026, 9, 28, 12, tzinfo=UTC), first), (datetime(2026, 9, 29, 6, 5, tzinfo=UTC), rolled)]
    _, said = run(steps)
    (digest,) = [a for a in said[1] if a.kind == "digest" and a.bucket == "seven_day"]
    assert digest.plain.endswith("Where the week went: Claude Code 83%, Chats 17%.")
    assert digest.details["breakdown"] == {"Claude Code": 83.0, "Chats": 17.0}


def test_an_older_state_without_the_families_reads_and_the_records_read_back() -> None:
    state, _ = run([(T0, answer(credit=credit_entry(250, 2.47, iso(EXPIRES)), cedar=banked_block([grant()])))])
    assert state is not None and state.families != FamilyState()
    doc = json.loads(dump_state(state))
    assert parse_state(dump_state(state)) == state
    del doc["families"]
    assert parse_state(json.dumps(doc).encode()).families == FamilyState()


@pytest.mark.parametrize(
    "families",
    [
        [],
        {"credits": "x"},
        {"credits": [{"key": "k"}]},
        {"grants": [{"id": "g", "resets_left": -1}]},
        {"breakdown": [["a"]]},
    ],
)
def test_a_damaged_families_record_is_a_corrupt_state(families: Any) -> None:
    from claude_matrix_bot.errors import CorruptState

    doc = {"schema": 2, "buckets": {}, "outbox": [], "health": {}, "families": families}
    with pytest.raises(CorruptState):
        parse_state(json.dumps(doc).encode())
