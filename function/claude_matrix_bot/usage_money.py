"""Paid overage in the usage answer (docs/design.md §1 extra usage): `spend` when readable, else
`extra_usage`. Garbled money is reported like an unknown key, never a reason to lose the
buckets (see usage.py's docstring for what public clients recorded)."""

from __future__ import annotations

import contextlib
import math
import re
from typing import Any

from .model import ExtraUsage
from .usage_values import UTILIZATION_CEILING as _UTILIZATION_CEILING
from .usage_values import carries_number as _carries_number
from .usage_values import is_number as _is_number
from .usage_values import short as _short

# Money: minor units up to 10^15 and up to 8 decimals cover every real currency;
# anything beyond is garbage, not an amount.
_MAX_MINOR = 10**15
_MAX_EXPONENT = 8
_DEFAULT_EXPONENT = 2
_DEFAULT_CURRENCY = "USD"


class _Unreadable(ValueError):
    """A money field that is present but not an amount."""


def _minor(value: object, where: str) -> int | None:
    if value is None:
        return None
    if not _is_number(value):
        raise _Unreadable(f"{where} is a {type(value).__name__}")
    assert isinstance(value, int | float)
    if isinstance(value, float) and not math.isfinite(value):
        raise _Unreadable(f"{where} is not finite")
    if not 0 <= value <= _MAX_MINOR:
        raise _Unreadable(f"{where} is out of range")
    return round(value)


def _exponent(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_EXPONENT:
        raise _Unreadable(f"{where} is not a number of decimals")
    return value


def _currency(value: object) -> str | None:
    # ISO 4217 codes; anything else is not trusted into a message.
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z]{3}", value.strip()):
        return value.strip().upper()
    return None


def _percent(value: object) -> float | None:
    if not _is_number(value):
        return None
    assert isinstance(value, int | float)
    try:
        number = float(value)
    except OverflowError:
        return None
    return max(number, 0.0) if math.isfinite(number) and number <= 100 * _UTILIZATION_CEILING else None


def _cap_percent(used: int | None, limit: int | None, given: object) -> float | None:
    """Percent of the monthly cap: used/limit when both are known, else what the answer said."""
    if used is not None and limit:
        return used * 100.0 / limit
    return _percent(given)


def _reason(value: object) -> str | None:
    return _short(value.strip(), 60) if isinstance(value, str) and value.strip() else None


def _money(raw: object, where: str) -> tuple[int | None, str | None, int | None]:
    """`{"amount_minor", "currency", "exponent"}` -> (minor, currency, exponent)."""
    if raw is None:
        return None, None, None
    if not isinstance(raw, dict):
        raise _Unreadable(f"{where} is not an object")
    return (
        _minor(raw.get("amount_minor"), f"{where}.amount_minor"),
        _currency(raw.get("currency")),
        _exponent(raw.get("exponent"), f"{where}.exponent"),
    )


def _from_spend(spend: dict[str, Any], legacy: dict[str, Any] | None) -> ExtraUsage:
    used, used_currency, used_exponent = _money(spend.get("used"), "spend.used")
    limit, limit_currency, limit_exponent = _money(spend.get("limit"), "spend.limit")
    currency = used_currency or limit_currency or _currency((legacy or {}).get("currency")) or _DEFAULT_CURRENCY
    exponent = used_exponent if used_exponent is not None else limit_exponent
    exponent = _DEFAULT_EXPONENT if exponent is None else exponent
    if limit is not None and ((limit_currency not in (None, currency)) or (limit_exponent not in (None, exponent))):
        limit = None  # a cap in other units cannot be compared with the amount used
    if limit is None:
        limit = _cap_elsewhere(spend, legacy, currency, exponent)
    enabled = spend.get("enabled")
    if not isinstance(enabled, bool):
        legacy_enabled = (legacy or {}).get("is_enabled")
        enabled = legacy_enabled if isinstance(legacy_enabled, bool) else None
    return ExtraUsage(
        enabled=enabled,
        used=used,
        limit=limit,
        currency=currency,
        exponent=exponent,
        percent=_cap_percent(used, limit, spend.get("percent")),
        disabled_reason=_reason(spend.get("disabled_reason")) or _reason((legacy or {}).get("disabled_reason")),
        source="spend",
    )


def _cap_elsewhere(spend: dict[str, Any], legacy: dict[str, Any] | None, currency: str, exponent: int) -> int | None:
    """A spend without a usable `limit`: its `cap.money` (a Team seat's cap, docs/design.md §2),
    else `extra_usage.monthly_limit` — field by field, and only in the units of the amount used."""
    cap = spend.get("cap")
    money = cap.get("money") if isinstance(cap, dict) else None
    with contextlib.suppress(_Unreadable):
        minor, cap_currency, cap_exponent = _money(money, "spend.cap.money")
        if minor is not None and cap_currency in (None, currency) and cap_exponent in (None, exponent):
            return minor
    if legacy is None:
        return None
    with contextlib.suppress(_Unreadable):
        minor = _minor(legacy.get("monthly_limit"), "extra_usage.monthly_limit")
        legacy_exponent = _exponent(legacy.get("decimal_places"), "extra_usage.decimal_places")
        same_units = _currency(legacy.get("currency")) in (None, currency) and legacy_exponent in (None, exponent)
        return minor if same_units else None
    return None


def _from_extra_usage(raw: dict[str, Any]) -> ExtraUsage:
    used = _minor(raw.get("used_credits"), "extra_usage.used_credits")
    limit = _minor(raw.get("monthly_limit"), "extra_usage.monthly_limit")
    exponent = _exponent(raw.get("decimal_places"), "extra_usage.decimal_places")
    enabled = raw.get("is_enabled")
    return ExtraUsage(
        enabled=enabled if isinstance(enabled, bool) else None,
        used=used,
        limit=limit,
        currency=_currency(raw.get("currency")) or _DEFAULT_CURRENCY,
        exponent=_DEFAULT_EXPONENT if exponent is None else exponent,
        percent=_cap_percent(used, limit, raw.get("utilization")),
        disabled_reason=_reason(raw.get("disabled_reason")),
        source="extra_usage",
    )


def extra_usage(payload: dict[str, Any], unknown: list[str]) -> ExtraUsage | None:
    """`spend` when present and readable (also when its `enabled` disagrees), else
    `extra_usage`. Garbled money never rejects the answer: the buckets still count,
    and the unreadable part is reported like an unknown key."""
    spend = payload.get("spend")
    legacy = payload.get("extra_usage")
    legacy_obj = legacy if isinstance(legacy, dict) else None
    if isinstance(spend, dict):
        try:
            return _from_spend(spend, legacy_obj)
        except _Unreadable as exc:
            unknown.append(f"spend (unreadable: {exc})")
    elif spend is not None and _carries_number(spend):
        unknown.append("spend")
    if legacy_obj is not None:
        try:
            return _from_extra_usage(legacy_obj)
        except _Unreadable as exc:
            unknown.append(f"extra_usage (unreadable: {exc})")
    elif legacy is not None and _carries_number(legacy):
        unknown.append("extra_usage")
    return None
