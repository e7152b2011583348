"""The bot's memory (DESIGN §4): what it saw, what it already said, what it still owes.

`State` is an immutable value; `parse_state(bytes)` reads v2 (and upgrades v1),
`dump_state(State)` writes v2. Both are pure: the cycle moves the bytes.

Size is bounded whatever the uptime: history is trimmed to the forecast window
and capped in count, shift dedup keeps only a few recent values, and the outbox
only holds undelivered alerts. The extra-usage record is one fixed-size object
and the unknown-number list is capped in count and length. The chart's hourly
samples (DESIGN §7) are one per hour of the current weekly window, written as
`[first_hour, [values]]` (a value per hour, `null` for an hour with no reading):
a full week of four weekly buckets costs about 3 KB.

Schema (DESIGN §4): the extra-usage record, the unknown-number list and a bucket's
`is_active`/`severity`, its `hourly` samples, `passed` times and `last_reset`, are new
optional keys of v2. An older v2 reader ignores them
(it cannot misread them), so they do not bump the schema; a missing one reads as
"never seen", which starts a new spend period at the next reading.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from .errors import CorruptState, StateSchemaError
from .isotime import iso as _iso
from .model import Alert, AlertKind, ExtraUsage

SCHEMA = 2
# A trigger storm is refused after MIN_INTERVAL_SEC, but the cap keeps the file
# small even if that is set to 0: 6 h at one sample a minute.
MAX_HISTORY_SAMPLES = 360
# A week and a day: a window whose reset moved later lasts longer than seven days.
MAX_HOURLY_SAMPLES = 8 * 24
HOUR_SEC = 3600
MAX_SHIFT_MEMORY = 4
MAX_OUTBOX = 200
MAX_UNKNOWN_NUMBERS = 20
_MAX_TEXT = 80
# Derived from the Literal, so a new kind is accepted as soon as the model names it.
ALERT_KINDS = frozenset(get_args(AlertKind))


Sample = tuple[int, float]  # (Unix seconds, utilization percent)


@dataclass(frozen=True, slots=True)
class BucketState:
    utilization: float | None = None
    resets_at: datetime | None = None
    # The `resets_at` that identified the current window when it began; it keys
    # per-window dedup (threshold and forecast alert ids) and survives shifts.
    window: datetime | None = None
    alerted_thresholds: tuple[int, ...] = ()
    history: tuple[Sample, ...] = ()
    forecast_fired: bool = False
    # The last `resets_at` reported, kept while readings carry none (the bucket null, or
    # its reset null): a window whose reset moved ends at the moved reset.
    last_reset: datetime | None = None
    # New `resets_at` values already announced as shifts (dedup "once per value").
    shifted_to: tuple[datetime, ...] = ()
    # The server's judgement at the last reading (limits[] `is_active`, `severity`).
    is_active: bool | None = None
    severity: str | None = None
    # The current window at one sample per hour (DESIGN §7): the chart and the digest
    # draw the whole window from these. Times are whole hours; values one decimal.
    hourly: tuple[Sample, ...] = ()
    # When this window passed each threshold and the limit (100): (percent, Unix
    # seconds), for the weekly digest. A threshold already past at arming has no time.
    passed: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class ExtraUsageState:
    """Paid overage across cycles (DESIGN §1 extra usage): the current spend period
    and what was already said in it. A period begins at the first reading and
    whenever the used amount falls below the previous reading (a new month)."""

    period_start: datetime
    last: ExtraUsage
    # The last used amount seen (kept when a reading omits it, so a drop is still seen).
    last_used: int | None = None
    started_alerted: bool = False
    alerted_thresholds: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Health:
    consecutive_failures: int = 0
    degraded: bool = False
    failing_since: datetime | None = None
    last_error: str | None = None
    last_success_at: datetime | None = None
    last_attempt_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class State:
    buckets: dict[str, BucketState] = field(default_factory=dict)
    outbox: tuple[Alert, ...] = ()
    health: Health = field(default_factory=Health)
    armed_at: datetime | None = None
    # Where an upgrade or a repair came from, shown once in the next armed message.
    note: str | None = None
    extra_usage: ExtraUsageState | None = None
    # Where the last answer carried numbers this release does not read (shown by status).
    unknown_numbers: tuple[str, ...] = ()

    def with_outbox(self, outbox: tuple[Alert, ...]) -> State:
        # An alert decided twice (same stable id) is queued once.
        first: dict[str, Alert] = {}
        for alert in outbox:
            first.setdefault(alert.id, alert)
        return replace(self, outbox=tuple(first.values())[-MAX_OUTBOX:])

    def mark_attempted(self, at_ms: int) -> State:
        """Every outbox alert not yet attempted marked as attempted at `at_ms` (DESIGN §5).

        Written before the sink sees the alerts: a crash or a lost answer after a send
        leaves the mark, and the next delivery looks for the alert in the room before
        sending it again. `self` itself when nothing changes."""
        if all(alert.attempted_at is not None for alert in self.outbox):
            return self
        marked = tuple(
            alert if alert.attempted_at is not None else replace(alert, attempted_at=at_ms) for alert in self.outbox
        )
        return replace(self, outbox=marked)


# --- what a crash may undo ------------------------------------------------------------


def _lasting(state: State) -> tuple[object, ...]:
    """The part of a state that a crash must never undo once written: what is owed
    (the outbox, its attempt marks), what was said (dedup: windows, thresholds and
    when they fell, forecasts, shifts, the reset a window ends at, spend periods), the
    health episode (counters and error that drive degraded/recovered), the arming.
    The rest is what the next reading rewrites anyway: the last utilization,
    `resets_at` and server flags, the forecast's samples, the times of the last attempt
    and success, the last spend reading, the unknown numbers; and the hourly chart
    samples (after a crash the chart may lack the point of that one hour)."""
    health = state.health
    extra = state.extra_usage
    return (
        {
            name: (b.window, b.alerted_thresholds, b.forecast_fired, b.shifted_to, b.passed, _minute(b.last_reset))
            for name, b in state.buckets.items()
        },
        state.outbox,
        (health.consecutive_failures, health.degraded, health.failing_since, health.last_error),
        state.armed_at,
        state.note,
        None if extra is None else (extra.period_start, extra.started_alerted, extra.alerted_thresholds),
    )


def _minute(moment: datetime | None) -> datetime | None:
    # The API jitters a reset by fractions of a second from one answer to the next;
    # only a reset that moved (by a minute or more) changes where a window ends.
    return None if moment is None else (moment.astimezone(UTC) + timedelta(seconds=30)).replace(second=0, microsecond=0)


def lasting_change(old: State | None, new: State) -> bool:
    """Whether `new` differs from `old` in what a crash must never undo (see `_lasting`).

    When it does not (a quiet cycle: one more sample, new timestamps), the cycle may
    write it "consistent" instead of "durable" (store/base.py): a crash of the machine
    can then bring back the state of a cycle or two before, which the next reading
    overwrites, and never a torn file, a lost alert or an alert said twice."""
    return old is None or _lasting(old) != _lasting(new)


# --- encoding ------------------------------------------------------------------


def _parse_time(value: object, where: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise CorruptState(f"{where}: expected an ISO time, got {type(value).__name__}")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        # Year 1 or 9999 with an offset falls off the calendar once moved to UTC.
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise CorruptState(f"{where}: not an ISO time") from None


# Integers up to 2**53 convert to float and back exactly: for them the fast checks below
# give what `_number` gives (a state holds a few hundred samples, read every cycle).
_EXACT = 2**53


def _exact_int(value: object) -> bool:
    return type(value) is int and -_EXACT < value < _EXACT  # `type`: a bool is not a number here


def _plain_number(value: object) -> bool:
    """A finite float or an exactly convertible int: what `_number` accepts as it is."""
    return (type(value) is float and math.isfinite(value)) or _exact_int(value)


def _number(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CorruptState(f"{where}: expected a number")
    try:
        number = float(value)  # a JSON integer can be too big for a float
    except OverflowError:
        raise CorruptState(f"{where}: number out of range") from None
    if not math.isfinite(number):
        raise CorruptState(f"{where}: expected a number")
    return number


def _thresholds(value: object, where: str) -> tuple[int, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise CorruptState(f"{where}: expected a list")
    out: set[int] = set()
    for item in value:
        number = _number(item, where)
        if number is not None:
            out.add(int(number))
    return tuple(sorted(out))


def _bucket_to_json(bucket: BucketState) -> dict[str, Any]:
    out: dict[str, Any] = {
        "utilization": bucket.utilization,
        "resets_at": _iso(bucket.resets_at),
        "window": _iso(bucket.window),
        "alerted_thresholds": list(bucket.alerted_thresholds),
        "forecast_fired": bucket.forecast_fired,
        "shifted_to": [_iso(m) for m in bucket.shifted_to],
        # Compact pairs keep 6 h of samples in a few KB. Written exactly (no rounding):
        # a state must read back equal to what was decided.
        "history": [[t, u] for t, u in bucket.history],
    }
    if bucket.last_reset is not None:
        out["last_reset"] = _iso(bucket.last_reset)
    if bucket.hourly:
        out["hourly"] = _hourly_to_json(bucket.hourly)
    if bucket.passed:
        out["passed"] = [[percent, t] for percent, t in bucket.passed]
    if bucket.is_active is not None:
        out["is_active"] = bucket.is_active
    if bucket.severity is not None:
        out["severity"] = bucket.severity
    return out


def _bucket_from_json(name: str, raw: object, *, v1: bool) -> BucketState:
    where = f"buckets.{name}"
    if not isinstance(raw, dict):
        raise CorruptState(f"{where}: expected an object")
    history: list[Sample] = []
    if not v1:
        raw_history = raw.get("history") or []
        if not isinstance(raw_history, list):
            raise CorruptState(f"{where}.history: expected a list")
        for pair in raw_history[-MAX_HISTORY_SAMPLES:]:
            if type(pair) is list and len(pair) == 2 and _exact_int(pair[0]) and _plain_number(pair[1]):
                history.append((pair[0], float(pair[1])))  # what the checks below make of it, cheaply
                continue
            if not (isinstance(pair, list) and len(pair) == 2):
                raise CorruptState(f"{where}.history: expected [time, utilization] pairs")
            t = _number(pair[0], where)
            u = _number(pair[1], where)
            if t is None or u is None:
                raise CorruptState(f"{where}.history: null sample")
            history.append((int(t), u))
    resets_at = _parse_time(raw.get("resets_at"), f"{where}.resets_at")
    shifted_raw = raw.get("shifted_to") or []
    if not isinstance(shifted_raw, list):
        raise CorruptState(f"{where}.shifted_to: expected a list")
    shifted = tuple(m for m in (_parse_time(s, f"{where}.shifted_to") for s in shifted_raw) if m is not None)
    return BucketState(
        utilization=_number(raw.get("utilization"), f"{where}.utilization"),
        resets_at=resets_at,
        # v1 had no window key: the current resets_at is the best anchor we have.
        window=_parse_time(raw.get("window"), f"{where}.window") if not v1 else resets_at,
        alerted_thresholds=_thresholds(raw.get("alerted_thresholds"), f"{where}.alerted_thresholds"),
        history=tuple(history),
        forecast_fired=bool(raw.get("forecast_fired", False)),
        shifted_to=shifted[-MAX_SHIFT_MEMORY:],
        is_active=_flag(raw.get("is_active")),
        severity=_text(raw.get("severity")),
        last_reset=_parse_time(raw.get("last_reset"), f"{where}.last_reset"),
        hourly=_hourly_from_json(raw.get("hourly"), f"{where}.hourly"),
        passed=_passed_from_json(raw.get("passed"), f"{where}.passed"),
    )


def _hourly_to_json(hourly: tuple[Sample, ...]) -> list[Any]:
    """`[first_hour, [value or null per hour]]`: a time per sample would triple the size."""
    first = hourly[0][0]
    values: list[float | None] = [None] * ((hourly[-1][0] - first) // HOUR_SEC + 1)
    for t, u in hourly:
        values[(t - first) // HOUR_SEC] = u
    return [first, values]


def _hourly_from_json(raw: object, where: str) -> tuple[Sample, ...]:
    if raw is None:
        return ()  # written before hourly samples existed: the next cycles fill them
    if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[1], list)):
        raise CorruptState(f"{where}: expected [first_hour, [values]]")
    first = _number(raw[0], where)
    if first is None or first != int(first) or first % HOUR_SEC:
        raise CorruptState(f"{where}: the first hour is not a whole hour")
    values = raw[1]
    skip = max(0, len(values) - MAX_HOURLY_SAMPLES)
    samples: list[Sample] = []
    for index, value in enumerate(values[skip:], start=skip):
        number = float(value) if _plain_number(value) else _number(value, where)
        if number is not None:
            samples.append((int(first) + index * HOUR_SEC, number))
    return tuple(samples)


def _passed_from_json(raw: object, where: str) -> tuple[tuple[int, int], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise CorruptState(f"{where}: expected a list")
    out: dict[int, int] = {}
    for pair in raw:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise CorruptState(f"{where}: expected [percent, time] pairs")
        percent, moment = _number(pair[0], where), _number(pair[1], where)
        if percent is None or moment is None:
            raise CorruptState(f"{where}: null entry")
        out.setdefault(int(percent), int(moment))
    return tuple(sorted(out.items()))


def _flag(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _text(value: object) -> str | None:
    return value[:_MAX_TEXT] if isinstance(value, str) else None


def _minor(value: object, where: str) -> int | None:
    number = _number(value, where)
    if number is None:
        return None
    if number < 0 or number != int(number):
        raise CorruptState(f"{where}: expected a whole amount")
    return int(number)


def _extra_to_json(extra: ExtraUsageState) -> dict[str, Any]:
    last = extra.last
    return {
        "period_start": _iso(extra.period_start),
        "last_used": extra.last_used,
        "started_alerted": extra.started_alerted,
        "alerted_thresholds": list(extra.alerted_thresholds),
        "last": {
            "enabled": last.enabled,
            "used": last.used,
            "limit": last.limit,
            "currency": last.currency,
            "exponent": last.exponent,
            "percent": last.percent,
            "disabled_reason": last.disabled_reason,
            "source": last.source,
        },
    }


def _extra_from_json(raw: object) -> ExtraUsageState | None:
    if raw is None:
        return None
    where = "extra_usage"
    if not isinstance(raw, dict) or not isinstance(raw.get("last"), dict):
        raise CorruptState(f"{where}: expected an object with the last reading")
    period_start = _parse_time(raw.get("period_start"), f"{where}.period_start")
    if period_start is None:
        raise CorruptState(f"{where}.period_start: missing")
    last = raw["last"]
    exponent = _number(last.get("exponent"), f"{where}.last.exponent")
    if exponent is None or not 0 <= exponent <= 8 or exponent != int(exponent):
        raise CorruptState(f"{where}.last.exponent: expected 0-8 decimals")
    currency = last.get("currency")
    if not isinstance(currency, str) or not currency:
        raise CorruptState(f"{where}.last.currency: expected a currency code")
    return ExtraUsageState(
        period_start=period_start,
        last=ExtraUsage(
            enabled=_flag(last.get("enabled")),
            used=_minor(last.get("used"), f"{where}.last.used"),
            limit=_minor(last.get("limit"), f"{where}.last.limit"),
            currency=currency[:8],
            exponent=int(exponent),
            percent=_number(last.get("percent"), f"{where}.last.percent"),
            disabled_reason=_text(last.get("disabled_reason")),
            source="extra_usage" if last.get("source") == "extra_usage" else "spend",
        ),
        last_used=_minor(raw.get("last_used"), f"{where}.last_used"),
        started_alerted=bool(raw.get("started_alerted", False)),
        alerted_thresholds=_thresholds(raw.get("alerted_thresholds"), f"{where}.alerted_thresholds"),
    )


def _unknown_from_json(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list):
        return ()
    return tuple(item[:_MAX_TEXT] for item in raw if isinstance(item, str))[:MAX_UNKNOWN_NUMBERS]


def _alert_from_json(raw: object) -> Alert:
    if not isinstance(raw, dict):
        raise CorruptState("outbox: expected objects")
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in ALERT_KINDS:
        # Sinks pick a template by kind; an unknown one must not reach them.
        raise CorruptState(f"outbox: unknown alert kind {str(kind)[:40]!r}")
    attempted_at = _unix_ms(raw.get("attempted_at"), "outbox.attempted_at")
    try:
        details = dict(raw.get("details") or {})
        return Alert(
            id=str(raw["id"]),
            kind=raw["kind"],
            plain=str(raw["plain"]),
            html=str(raw["html"]),
            bucket=raw.get("bucket"),
            created_at=_parse_time(raw.get("created_at"), "outbox.created_at"),
            details=details,
            attempted_at=attempted_at,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptState(f"outbox: malformed alert ({exc.__class__.__name__})") from None


def _unix_ms(value: object, where: str) -> int | None:
    number = _number(value, where)
    if number is None:
        return None
    if number < 0 or number != int(number):
        raise CorruptState(f"{where}: expected Unix milliseconds")
    return int(number)


def _alert_to_json(alert: Alert) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": alert.id,
        "kind": alert.kind,
        "bucket": alert.bucket,
        "plain": alert.plain,
        "html": alert.html,
        "created_at": _iso(alert.created_at),
        "details": alert.details,
    }
    # Optional: an older v2 reader ignores it (it would only resend without looking first).
    if alert.attempted_at is not None:
        out["attempted_at"] = alert.attempted_at
    return out


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
    last_error = raw_health.get("last_error")
    note = doc.get("note")
    return State(
        buckets={str(k): _bucket_from_json(str(k), v, v1=False) for k, v in raw_buckets.items()},
        outbox=tuple(_alert_from_json(a) for a in raw_outbox)[-MAX_OUTBOX:],
        health=Health(
            consecutive_failures=max(0, int(failures)),
            degraded=bool(raw_health.get("degraded", False)),
            failing_since=_parse_time(raw_health.get("failing_since"), "health.failing_since"),
            last_error=last_error if isinstance(last_error, str) else None,
            last_success_at=_parse_time(raw_health.get("last_success_at"), "health.last_success_at"),
            last_attempt_at=_parse_time(raw_health.get("last_attempt_at"), "health.last_attempt_at"),
        ),
        armed_at=_parse_time(doc.get("armed_at"), "armed_at"),
        note=note if isinstance(note, str) else None,
        extra_usage=_extra_from_json(doc.get("extra_usage")),
        unknown_numbers=_unknown_from_json(doc.get("unknown_numbers")),
    )


def _upgrade_v1(doc: dict[str, Any]) -> State:
    """v1: `{bucket: {utilization, resets_at, alerted_thresholds}}` with no schema key.
    History starts empty; dedup flags are kept (DESIGN §4)."""
    buckets: dict[str, BucketState] = {}
    for name, raw in doc.items():
        if raw is None:
            continue
        buckets[str(name)] = _bucket_from_json(str(name), raw, v1=True)
    # A v1 file means the bot was armed already: the caller passes this State as
    # `previous`, so there is no second baseline and no alert storm.
    return State(buckets=buckets)
