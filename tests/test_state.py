"""state.json (docs/design.md §4): v2 round trip, the v1 upgrade, future schemas, corrupt files.

`parse_state` must only ever raise `CorruptState` (the cycle moves the file aside and
re-arms) or `StateSchemaError` (the file is left alone): anything else would leave the
bot failing on the same file forever.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_matrix_bot.core.decide import DecideConfig, decide
from claude_matrix_bot.errors import StateSchemaError, StorageError
from claude_matrix_bot.model import Alert, AlertKind
from claude_matrix_bot.state import SCHEMA, BucketState, CorruptState, Health, State, dump_state, parse_state
from claude_matrix_bot.state_file import load_state
from claude_matrix_bot.store import ANY, open_store
from tests.scenarios import FIVE_RESET, T0, WEEK_RESET, Watch, kinds, reading

V1 = {
    "five_hour": {"utilization": 24.0, "resets_at": "2026-01-02T14:59:59.600956+00:00", "alerted_thresholds": []},
    "seven_day": {"utilization": 62.0, "resets_at": "2026-01-08T06:59:59.600974+00:00", "alerted_thresholds": [50]},
    "seven_day_sonnet": {
        "utilization": 85.0,
        "resets_at": "2026-01-08T06:59:59.600974+00:00",
        "alerted_thresholds": [50, 80],
    },
    "seven_day_opus": None,
}


def v1_bytes(doc: dict[str, Any] = V1) -> bytes:
    return json.dumps(doc).encode()


def full_state() -> State:
    """A state with every field in use: history, shifts, outbox, a degraded episode."""
    alert = Alert(
        id="cmb-threshold-abc",
        kind="threshold",
        plain="🟠 Weekly (all models) usage passed 50%",
        html="<b>🟠 Weekly (all models) usage passed 50%</b>",
        bucket="seven_day",
        created_at=T0,
        details={"threshold": 50, "utilization": 51.5, "resets_at": WEEK_RESET.isoformat()},
    )
    return State(
        buckets={
            "seven_day": BucketState(
                utilization=51.5,
                resets_at=WEEK_RESET + timedelta(hours=2),
                window=WEEK_RESET,
                alerted_thresholds=(50,),
                history=((1767355200, 49.0), (1767355500, 50.25), (1767355800, 51.5)),
                forecast_fired=True,
                shifted_to=(WEEK_RESET + timedelta(hours=2),),
                # 11:00 and 13:00, none at 12:00: a gap is kept as a gap.
                hourly=((1767351600, 47.0), (1767358800, 51.5)),
                passed=((50, 1767355500),),
            ),
            # Null now; its window's reset had moved: the moved reset is kept.
            "seven_day_opus": BucketState(window=WEEK_RESET, last_reset=WEEK_RESET + timedelta(hours=3)),
            "five_hour": BucketState(utilization=3.0, resets_at=FIVE_RESET, window=FIVE_RESET),
        },
        outbox=(alert,),
        health=Health(
            consecutive_failures=4,
            degraded=True,
            failing_since=T0 - timedelta(minutes=20),
            last_error="usage API answered 403",
            last_success_at=T0 - timedelta(minutes=25),
            last_attempt_at=T0,
        ),
        armed_at=T0 - timedelta(days=3),
        note=None,
    )


# --- v2 ----------------------------------------------------------------------------------


def test_v2_round_trip_keeps_every_field() -> None:
    state = full_state()
    data = dump_state(state)
    assert parse_state(data) == state
    doc = json.loads(data)
    assert doc["schema"] == SCHEMA == 2
    assert data.endswith(b"\n")
    # Times are written as UTC instants.
    assert doc["buckets"]["seven_day"]["window"] == "2026-01-08T06:59:59.600974Z"
    # docs/design.md §7's hourly samples: the first whole hour, then one value (or null) per hour.
    assert doc["buckets"]["seven_day"]["hourly"] == [1767351600, [47.0, None, 51.5]]
    assert doc["buckets"]["seven_day"]["passed"] == [[50, 1767355500]]
    assert "hourly" not in doc["buckets"]["five_hour"], "nothing written for a bucket without samples"
    assert doc["buckets"]["seven_day_opus"]["last_reset"] == "2026-01-08T09:59:59.600974Z"
    assert "last_reset" not in doc["buckets"]["seven_day"], "only while readings carry no reset"


def test_a_v2_file_from_before_hourly_samples_upgrades_from_its_history() -> None:
    # The previous release wrote no `hourly`/`passed`: read as empty, and the next
    # cycle starts the hourly series from the window's recent history (docs/design.md §4).
    doc = json.loads(dump_state(full_state()))
    for key in ("hourly", "passed"):
        del doc["buckets"]["seven_day"][key]
    old = parse_state(json.dumps(doc).encode())
    assert old.buckets["seven_day"].hourly == () and old.buckets["seven_day"].passed == ()
    assert old.buckets["seven_day"].history == full_state().buckets["seven_day"].history

    now = T0 + timedelta(hours=1, minutes=5)
    after = decide(old, reading(now, {"seven_day": (53.0, WEEK_RESET + timedelta(hours=2))}), now, DecideConfig())
    week = after.state.buckets["seven_day"]
    # 12:00 from the history's first sample of that hour, 13:00 from this reading.
    assert week.hourly == ((1767355200, 49.0), (1767358800, 53.0))
    assert parse_state(dump_state(after.state)) == after.state


def test_times_in_other_offsets_or_naive_are_read_as_utc() -> None:
    doc = json.loads(dump_state(full_state()))
    doc["armed_at"] = "2026-01-02T13:00:00+01:00"
    doc["health"]["last_attempt_at"] = "2026-01-02T12:00:00"
    state = parse_state(json.dumps(doc).encode())
    assert state.armed_at == T0
    assert state.armed_at is not None and state.armed_at.utcoffset() == timedelta(0)
    assert state.health.last_attempt_at == T0


def test_a_state_written_by_decide_reads_back_equal() -> None:
    watch = Watch()
    watch.see({"five_hour": (24.0, FIVE_RESET), "seven_day": (36.0, WEEK_RESET), "seven_day_opus": None})
    for step in range(1, 20):
        watch.see(
            {"five_hour": (24.0, FIVE_RESET), "seven_day": (36.0 + 1.7 * step, WEEK_RESET)},
            at=T0 + step * timedelta(minutes=5),
        )
    assert watch.state is not None
    assert parse_state(dump_state(watch.state)) == watch.state


# --- v1 (docs/design.md §4: upgraded on read, history empty, dedup flags kept) -----------------------


def test_v1_is_upgraded_with_dedup_kept_and_history_empty() -> None:
    state = parse_state(v1_bytes())
    assert set(state.buckets) == {"five_hour", "seven_day", "seven_day_sonnet"}
    week = state.buckets["seven_day"]
    assert week.utilization == 62.0
    assert week.resets_at == WEEK_RESET
    assert week.window == WEEK_RESET
    assert week.alerted_thresholds == (50,)
    assert state.buckets["seven_day_sonnet"].alerted_thresholds == (50, 80)
    assert all(b.history == () for b in state.buckets.values())
    assert state.outbox == ()
    # Written back as v2, and v2 from then on.
    rewritten = dump_state(state)
    assert json.loads(rewritten)["schema"] == 2
    assert parse_state(rewritten) == state


def test_v1_upgrade_does_not_rearm_or_repeat_thresholds_it_already_sent() -> None:
    previous = parse_state(v1_bytes())
    values = {
        "five_hour": (30.0, FIVE_RESET),
        "seven_day": (64.0, WEEK_RESET + timedelta(microseconds=3)),
        "seven_day_sonnet": (90.0, WEEK_RESET),
        "seven_day_opus": None,
    }
    now = T0 + timedelta(hours=1)
    decision = decide(previous, reading(now, values), now, DecideConfig())
    assert decision.alerts == ()
    # Thresholds v1 had not sent yet still fire.
    later = T0 + timedelta(hours=2)
    values["seven_day"] = (81.0, WEEK_RESET)
    nxt = decide(decision.state, reading(later, values), later, DecideConfig())
    assert [(a.kind, a.bucket, a.details["threshold"]) for a in nxt.alerts] == [("threshold", "seven_day", 80)]


def test_v1_thresholds_written_as_floats_or_repeated_are_normalised() -> None:
    doc = {"seven_day": {"utilization": 85, "resets_at": None, "alerted_thresholds": [80.0, 50, 50]}}
    assert parse_state(v1_bytes(doc)).buckets["seven_day"].alerted_thresholds == (50, 80)


def test_v1_window_that_expired_while_the_bot_was_away_rolls_over_silently() -> None:
    previous = parse_state(v1_bytes())
    now = WEEK_RESET + timedelta(hours=1)
    values = {
        "seven_day": (2.0, WEEK_RESET + timedelta(days=7)),
        "seven_day_sonnet": (1.0, WEEK_RESET + timedelta(days=7)),
    }
    decision = decide(previous, reading(now, values), now, DecideConfig())
    assert decision.alerts == ()
    assert decision.state.buckets["seven_day_sonnet"].alerted_thresholds == ()


# --- future schema (docs/design.md §4: "refused with a clear error and left untouched") -------------


@pytest.mark.parametrize("doc", [{"schema": 3}, {"schema": 3, "buckets": "not even an object"}, {"schema": 10**30}])
def test_a_future_schema_is_refused(doc: dict[str, Any]) -> None:
    with pytest.raises(StateSchemaError) as caught:
        parse_state(json.dumps(doc).encode())
    assert isinstance(caught.value, StorageError)
    assert "schema" in str(caught.value)
    assert "untouched" in str(caught.value)


# --- corrupt (docs/design.md §4: moved aside, re-armed) ----------------------------------------------


def _v2(**overrides: Any) -> bytes:
    doc = json.loads(dump_state(full_state()))
    for dotted, value in overrides.items():
        target = doc
        *parents, last = dotted.split("__")
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return json.dumps(doc).encode()


CORRUPT = {
    "empty": b"",
    "truncated": dump_state(full_state())[:-40],
    "not-utf8": b"\xff\xfe{\x00",
    "json-array": b"[]",
    "json-null": b"null",
    "json-number": b"42",
    "json-string": b'"state"',
    "schema-string": b'{"schema": "2"}',
    "schema-bool": b'{"schema": true}',
    "schema-old": b'{"schema": 1}',
    "schema-float": b'{"schema": 2.0}',
    "buckets-list": _v2(buckets=["seven_day"]),
    "outbox-object": _v2(outbox={"0": "cmb-x"}),
    "health-list": _v2(health=[1]),
    "utilization-text": _v2(buckets__seven_day__utilization="high"),
    "utilization-bool": _v2(buckets__seven_day__utilization=True),
    "resets-number": _v2(buckets__seven_day__resets_at=1767855599),
    "resets-not-iso": _v2(buckets__seven_day__resets_at="next thursday"),
    "history-object": _v2(buckets__seven_day__history={"t": 1}),
    "history-triple": _v2(buckets__seven_day__history=[[1, 2, 3]]),
    "history-null-sample": _v2(buckets__seven_day__history=[[1767355200, None]]),
    "shifted-text": _v2(buckets__seven_day__shifted_to="2026-01-08T06:59:59Z"),
    "thresholds-object": _v2(buckets__seven_day__alerted_thresholds={"50": True}),
    "bucket-number": _v2(buckets__seven_day=12),
    "hourly-not-a-pair": _v2(buckets__seven_day__hourly=[1767351600]),
    "hourly-values-not-a-list": _v2(buckets__seven_day__hourly=[1767351600, 47.0]),
    "hourly-not-a-whole-hour": _v2(buckets__seven_day__hourly=[1767351601, [47.0]]),
    "hourly-first-null": _v2(buckets__seven_day__hourly=[None, [47.0]]),
    "hourly-value-text": _v2(buckets__seven_day__hourly=[1767351600, ["47"]]),
    "passed-not-a-list": _v2(buckets__seven_day__passed={"50": 1767355500}),
    "passed-triple": _v2(buckets__seven_day__passed=[[50, 1767355500, 1]]),
    "passed-null": _v2(buckets__seven_day__passed=[[50, None]]),
    "last-reset-number": _v2(buckets__seven_day_opus__last_reset=1767855599),
    "alert-not-object": _v2(outbox=["cmb-x"]),
    "alert-without-id": _v2(outbox=[{"kind": "armed", "plain": "", "html": ""}]),
    "alert-details-text": _v2(outbox=[{"id": "x", "kind": "armed", "plain": "", "html": "", "details": "oops"}]),
    "v1-bucket-number": b'{"seven_day": 5}',
    "v1-bad-thresholds": b'{"seven_day": {"utilization": 1, "resets_at": null, "alerted_thresholds": "50"}}',
    # Found by the fuzz below: these used to escape as OverflowError / ValueError.
    "int-too-big-for-float": _v2(buckets__seven_day__utilization=10**400),
    "int-beyond-digit-limit": b'{"schema": 2, "health": {"consecutive_failures": ' + b"9" * 5000 + b"}}",
    "year-1-with-offset": _v2(armed_at="0001-01-01T00:00:00+01:00"),
    "year-9999-behind-utc": _v2(buckets__seven_day__resets_at="9999-12-31T23:59:59-01:00"),
    "alert-time-off-calendar": _v2(outbox__0__created_at="0001-01-01T00:30:00+05:00"),
    "deep-nesting": b"[" * 100_000 + b"]" * 100_000,
    "nan": _v2().replace(b'"utilization": 51.5', b'"utilization": NaN'),
    "infinity": _v2().replace(b'"utilization": 51.5', b'"utilization": -Infinity'),
}


@pytest.mark.parametrize("data", CORRUPT.values(), ids=CORRUPT.keys())
def test_unreadable_state_raises_corrupt_state(data: bytes) -> None:
    with pytest.raises(CorruptState):
        parse_state(data)


def test_corrupt_state_messages_say_where_without_echoing_the_file() -> None:
    with pytest.raises(CorruptState) as caught:
        parse_state(_v2(buckets__seven_day__resets_at="hunter2-secret-looking-text"))
    assert "buckets.seven_day.resets_at" in str(caught.value)
    assert "hunter2" not in str(caught.value)


# --- fuzz: nothing but CorruptState / StateSchemaError, and what is accepted can be rewritten --

_OFFSETS = [UTC, timezone(timedelta(hours=5)), timezone(timedelta(hours=-7, minutes=-30))]
iso_texts = st.one_of(
    st.datetimes(timezones=st.sampled_from(_OFFSETS)).map(datetime.isoformat),
    st.datetimes().map(datetime.isoformat),
    st.sampled_from(["2026-01-08T06:59:59.600974Z", "2026-13-01T00:00:00Z", "0001-01-01T00:00:00+14:00"]),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**320),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    iso_texts,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


def _paths(doc: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from _paths(value, (*prefix, index))


def _replace(doc: Any, path: tuple[str | int, ...], value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(doc)
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


VALID_DOCS = [json.loads(dump_state(full_state())), V1]


def _parse_or_refuse(data: bytes) -> State | None:
    try:
        return parse_state(data)
    except (CorruptState, StateSchemaError):
        return None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_the_two_state_errors(data: bytes) -> None:
    _parse_or_refuse(data)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_only_raises_the_two_state_errors(value: Any) -> None:
    _parse_or_refuse(json.dumps(value).encode())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VALID_DOCS), st.data())
def test_damaged_state_files_are_refused_or_read_and_rewritable(doc: Any, data: st.DataObject) -> None:
    # Damage one place of a real file, at any depth: the parser must either refuse it
    # with one of its two errors, or produce a State that writes and reads back the same.
    path = data.draw(st.sampled_from(list(_paths(doc))), label="path")
    value = data.draw(json_values, label="value")
    state = _parse_or_refuse(json.dumps(_replace(doc, path, value)).encode())
    if state is not None:
        assert parse_state(dump_state(state)) == state


def test_an_unknown_alert_kind_in_the_outbox_is_corrupt() -> None:
    doc = json.loads(dump_state(full_state()))
    doc["outbox"][0]["kind"] = "nonsense"
    with pytest.raises(CorruptState, match="unknown alert kind 'nonsense'"):
        parse_state(json.dumps(doc).encode())
    doc["outbox"][0]["kind"] = ["threshold"]
    with pytest.raises(CorruptState, match="unknown alert kind"):
        parse_state(json.dumps(doc).encode())


def test_alert_details_that_are_not_an_object_are_corrupt() -> None:
    # Found by the damage property above: [[null, null]] read as {None: None}, which wrote
    # back as {"null": null} and so read back as another state.
    doc = json.loads(dump_state(full_state()))
    doc["outbox"][0]["details"] = [[None, None]]
    with pytest.raises(CorruptState, match="details must be an object"):
        parse_state(json.dumps(doc).encode())


def test_the_attempt_mark_is_written_before_the_send_and_reads_back() -> None:
    """docs/design.md §5: an outbox alert carries when its delivery was first tried (Unix ms)."""
    state = full_state()
    fresh = replace(state.outbox[0], id="cmb-threshold-new", attempted_at=None)
    state = state.with_outbox((*state.outbox, fresh))
    marked = state.mark_attempted(1_767_355_800_123)
    assert [a.attempted_at for a in marked.outbox] == [1_767_355_800_123] * 2
    # A mark is never moved: the first attempt is the one that may be in the room.
    again = marked.with_outbox((*marked.outbox, replace(fresh, id="cmb-x"))).mark_attempted(1_767_356_000_000)
    assert [a.attempted_at for a in again.outbox] == [1_767_355_800_123] * 2 + [1_767_356_000_000]
    assert again.mark_attempted(1_767_357_000_000) is again, "nothing new: no write needed"
    assert parse_state(dump_state(again)) == again
    doc = json.loads(dump_state(again))
    assert doc["outbox"][0]["attempted_at"] == 1_767_355_800_123
    assert "attempted_at" not in json.loads(dump_state(state))["outbox"][0], "unattempted: no key"
    # The stdout shape (docs/design.md §3) is message content only.
    assert "attempted_at" not in again.outbox[0].to_json()


@pytest.mark.parametrize("value", ["1767355800123", -1, 1.5, True, [1]])
def test_a_garbled_attempt_mark_is_corrupt(value: object) -> None:
    doc = json.loads(dump_state(full_state()))
    doc["outbox"][0]["attempted_at"] = value
    with pytest.raises(CorruptState, match=r"outbox\.attempted_at"):
        parse_state(json.dumps(doc).encode())


@pytest.mark.parametrize("kind", sorted(get_args(AlertKind)))
def test_every_alert_kind_of_the_model_reads_back(kind: str) -> None:
    doc = json.loads(dump_state(full_state()))
    doc["outbox"][0]["kind"] = kind
    assert parse_state(json.dumps(doc).encode()).outbox[0].kind == kind


def test_a_corrupt_file_note_leads_to_a_rearm() -> None:
    # The cycle's recovery path, in core terms: State(note=...) arms again.
    note = "state.json could not be read (not valid JSON) and was moved aside; starting over."
    previous = State(note=note)
    decision = decide(previous, reading(T0, {"seven_day": (10.0, WEEK_RESET)}), T0, DecideConfig())
    assert kinds(decision.alerts) == ["armed"]
    assert "re-armed" in decision.alerts[0].plain


def test_an_alerts_urgency_is_written_and_an_older_entry_reads_as_not_urgent() -> None:
    """docs/design.md §9: urgency is decided when the alert is made and survives the outbox."""
    state = full_state()
    urgent = replace(state.outbox[0], id="cmb-threshold-urgent", urgent=True)
    state = state.with_outbox((*state.outbox, urgent))
    doc = json.loads(dump_state(state))
    assert [entry["urgent"] for entry in doc["outbox"]] == [False, True]
    assert parse_state(dump_state(state)) == state
    del doc["outbox"][1]["urgent"]
    assert parse_state(json.dumps(doc).encode()).outbox[1].urgent is False, "written before the rule: not urgent"
    doc["outbox"][1]["urgent"] = "yes"
    with pytest.raises(CorruptState, match="urgent"):
        parse_state(json.dumps(doc).encode())
    assert urgent.to_json()["urgent"] is True
    assert state.outbox[0].to_json()["urgent"] is False, "always on the stdout line (docs/design.md §3)"


def test_two_corrupt_files_in_one_second_are_both_kept() -> None:
    """docs/design.md §4: a corrupt state.json is moved aside, never deleted — also when a
    second one is found in the same second (NOW_OVERRIDE replays, a quick re-run)."""
    store = open_store("memory://two-corrupt-files")
    for garbage in (b"first {", b"second {"):
        store.write("state.json", garbage, expect=ANY)
        loaded = load_state(store, T0)
        assert loaded.state is not None and loaded.state.note is not None
        aside = loaded.state.note.split("moved aside to ")[1].split(";")[0]
        assert store.read(aside)[0] == garbage, "the note names the copy that holds this file"
    kept = sorted(store.read(k)[0] for k in store.list("") if k.startswith("state.json.corrupt-"))
    assert kept == [b"first {", b"second {"]


def test_a_corrupt_file_that_cannot_be_copied_aside_is_left_in_place() -> None:
    """Re-arming over a file that was not copied would delete it: the run fails instead."""
    store = open_store("memory://corrupt-not-copied")
    store.write("state.json", b"garbage", expect=ANY)

    class NoCopies:
        def read(self, key: str) -> tuple[bytes, str]:
            return store.read(key)

        def write(self, key: str, data: bytes, *, expect: Any, durability: Any = "durable") -> str:
            raise StorageError(f"cannot write {key}: read-only")

    with pytest.raises(StorageError, match="read-only"):
        load_state(NoCopies(), T0)  # type: ignore[arg-type]
    assert store.read("state.json")[0] == b"garbage"
