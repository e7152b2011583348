"""The extra-usage record in state.json, both ways."""

from __future__ import annotations

from typing import Any

from ..errors import CorruptState
from ..isotime import iso as _iso
from ..model import ExtraUsage
from .fields import _flag, _number, _parse_time, _text, _thresholds
from .records import ExtraUsageState


def _minor(value: object, where: str) -> int | None:
    number = _number(value, where)
    if number is None:
        return None
    if number < 0 or number != int(number):
        raise CorruptState(f"{where}: expected a whole amount")
    return int(number)


def extra_usage_to_json(last: ExtraUsage) -> dict[str, Any]:
    """The last paid-overage reading as state.json and `status --json` both show it."""
    return {
        "enabled": last.enabled,
        "used": last.used,
        "limit": last.limit,
        "currency": last.currency,
        "exponent": last.exponent,
        "percent": last.percent,
        "disabled_reason": last.disabled_reason,
        "source": last.source,
    }


def _extra_to_json(extra: ExtraUsageState) -> dict[str, Any]:
    return {
        "period_start": _iso(extra.period_start),
        "last_used": extra.last_used,
        "started_alerted": extra.started_alerted,
        "alerted_thresholds": list(extra.alerted_thresholds),
        "last": extra_usage_to_json(extra.last),
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
