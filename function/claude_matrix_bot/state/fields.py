"""Reading the values inside a parsed state.json: each either gives the value or raises
`CorruptState` saying where. Shared by the parts of the document (buckets, outbox, ...)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from ..errors import CorruptState
from ..isotime import LATEST
from .records import _MAX_TEXT


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
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise CorruptState(f"{where}: not an ISO time") from None
    if moment >= LATEST:
        raise CorruptState(f"{where}: a time too close to the end of the calendar")
    return moment


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


def _flag(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _text(value: object) -> str | None:
    return value[:_MAX_TEXT] if isinstance(value, str) else None
