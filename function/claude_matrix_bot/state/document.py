"""The whole state.json: `dump_state` writes v2, `parse_state` reads v2 or upgrades v1."""

from __future__ import annotations

import json
from typing import Any

from ..errors import CorruptState, StateSchemaError
from ..isotime import iso as _iso
from .buckets import _bucket_from_json, _bucket_to_json
from .extra import _extra_from_json, _extra_to_json
from .families import families_from_json, families_to_json
from .fields import _number, _parse_time
from .outbox import _alert_from_json, _alert_to_json
from .records import _MAX_TEXT, MAX_LONG_TEXT, MAX_OUTBOX, MAX_UNKNOWN_NUMBERS, BucketState, Health, State

SCHEMA = 2


def _unknown_from_json(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list):
        return ()
    return tuple(item[:_MAX_TEXT] for item in raw if isinstance(item, str))[:MAX_UNKNOWN_NUMBERS]


def _long_text(value: object) -> str | None:
    """A sentence the bot wrote (an error, a note), capped: a 10 MB `note` planted in the
    file must not cost hundreds of MB in every message and status made of it (issue 21)."""
    if not isinstance(value, str):
        return None
    return value if len(value) <= MAX_LONG_TEXT else value[: MAX_LONG_TEXT - 1] + "…"


def health_to_json(health: Health) -> dict[str, Any]:
    """The health counters as state.json and `status` show them."""
    return {
        "consecutive_failures": health.consecutive_failures,
        "degraded": health.degraded,
        "failing_since": _iso(health.failing_since),
        "last_error": health.last_error,
        "last_success_at": _iso(health.last_success_at),
        "last_attempt_at": _iso(health.last_attempt_at),
    }


def dump_state(state: State) -> bytes:
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "armed_at": _iso(state.armed_at),
        "note": state.note,
        "buckets": {name: _bucket_to_json(b) for name, b in sorted(state.buckets.items())},
        "outbox": [_alert_to_json(a) for a in state.outbox],
        "health": health_to_json(state.health),
    }
    if state.extra_usage is not None:
        doc["extra_usage"] = _extra_to_json(state.extra_usage)
    if not state.families.empty():
        doc["families"] = families_to_json(state.families)
    if state.unknown_numbers:
        doc["unknown_numbers"] = [u[:_MAX_TEXT] for u in state.unknown_numbers[:MAX_UNKNOWN_NUMBERS]]
    return (json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def parse_state(data: bytes) -> State:
    """Read v2 or upgrade v1. Raise `StateSchemaError` for a future schema (the file
    must be left alone) and `CorruptState` for anything unreadable."""
    try:
        doc = json.loads(data.decode("utf-8"))
    # ValueError also covers integers longer than Python's int-conversion digit limit.
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CorruptState("not valid JSON") from None
    if not isinstance(doc, dict):
        raise CorruptState("top level is not an object")
    schema = doc.get("schema")
    if schema is None:
        return _upgrade_v1(doc)
    if isinstance(schema, bool) or not isinstance(schema, int):
        raise CorruptState("schema is not a number")
    if schema > SCHEMA:
        raise StateSchemaError(
            f"state.json has schema {schema}, this release understands up to {SCHEMA}: "
            "upgrade the bot (the file was left untouched)"
        )
    if schema != SCHEMA:
        raise CorruptState(f"unknown schema {schema}")
    raw_buckets = doc.get("buckets") or {}
    raw_outbox = doc.get("outbox") or []
    raw_health = doc.get("health") or {}
    if not isinstance(raw_buckets, dict) or not isinstance(raw_outbox, list) or not isinstance(raw_health, dict):
        raise CorruptState("buckets/outbox/health have the wrong type")
    failures = _number(raw_health.get("consecutive_failures", 0), "health.consecutive_failures") or 0
    last_error = _long_text(raw_health.get("last_error"))
    note = _long_text(doc.get("note"))
    return State(
        buckets={str(k): _bucket_from_json(str(k), v, v1=False) for k, v in raw_buckets.items()},
        outbox=tuple(_alert_from_json(a) for a in raw_outbox)[-MAX_OUTBOX:],
        health=Health(
            consecutive_failures=max(0, int(failures)),
            degraded=bool(raw_health.get("degraded", False)),
            failing_since=_parse_time(raw_health.get("failing_since"), "health.failing_since"),
            last_error=last_error,
            last_success_at=_parse_time(raw_health.get("last_success_at"), "health.last_success_at"),
            last_attempt_at=_parse_time(raw_health.get("last_attempt_at"), "health.last_attempt_at"),
        ),
        armed_at=_parse_time(doc.get("armed_at"), "armed_at"),
        note=note,
        extra_usage=_extra_from_json(doc.get("extra_usage")),
        unknown_numbers=_unknown_from_json(doc.get("unknown_numbers")),
        families=families_from_json(doc.get("families")),
    )


def _upgrade_v1(doc: dict[str, Any]) -> State:
    """v1: `{bucket: {utilization, resets_at, alerted_thresholds}}` with no schema key.
    History starts empty; dedup flags are kept (docs/design.md §4)."""
    buckets: dict[str, BucketState] = {}
    for name, raw in doc.items():
        if raw is None:
            continue
        buckets[str(name)] = _bucket_from_json(str(name), raw, v1=True)
    # A v1 file means the bot was armed already: the caller passes this State as
    # `previous`, so there is no second baseline and no alert storm.
    return State(buckets=buckets)
