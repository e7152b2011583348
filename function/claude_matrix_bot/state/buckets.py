"""A bucket's entry in state.json, both ways (v1's entry too)."""

from __future__ import annotations

from typing import Any

from ..errors import CorruptState
from ..isotime import iso as _iso
from .fields import _exact_int, _flag, _number, _parse_time, _plain_number, _text, _thresholds
from .hourly import _hourly_from_json, _hourly_to_json
from .records import MAX_HISTORY_SAMPLES, MAX_SHIFT_MEMORY, BucketState, Sample


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
