"""Reading single values of the usage answer: bucket names for messages, percentages, instants."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from .errors import BadResponse
from .isotime import LATEST

# Slightly outside 0-100 is rounding on the server side and is clamped; beyond
# these bounds the number cannot be a percentage and the answer is refused.
UTILIZATION_FLOOR = -1.0
UTILIZATION_CEILING = 1000.0


def bucket_name(key: str) -> str:
    """A bucket name fit for an error message (keys come from the response)."""
    return repr(key if len(key) <= 60 else key[:57] + "...")


def short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def resets_at(bucket: str, value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadResponse(
            f"bucket {bucket_name(bucket)}: resets_at is a {type(value).__name__}, not an ISO-8601 string"
        )
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadResponse(f"bucket {bucket_name(bucket)}: resets_at is not an ISO-8601 instant") from None
    if moment.tzinfo is None:
        # The API always sends an offset; a bare time is most plausibly UTC.
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # e.g. year 1 with a positive offset falls off the calendar
        raise BadResponse(f"bucket {bucket_name(bucket)}: resets_at is out of range") from None
    if moment >= LATEST:  # rounding it to the minute would fall off the calendar
        raise BadResponse(f"bucket {bucket_name(bucket)}: resets_at is out of range")
    return moment


def utilization(bucket: str, value: object, field: str = "utilization") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadResponse(f"bucket {bucket_name(bucket)}: {field} is a {type(value).__name__}, not a number")
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        raise BadResponse(f"bucket {bucket_name(bucket)}: {field} is not a percentage") from None
    if math.isnan(number) or not UTILIZATION_FLOOR <= number <= UTILIZATION_CEILING:
        raise BadResponse(f"bucket {bucket_name(bucket)}: {field} {number!r} is not a percentage")
    return min(max(number, 0.0), 100.0)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def carries_number(value: object) -> bool:
    """Whether a JSON value holds a number anywhere (iteratively: answers may nest deep)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if is_number(item):
            return True
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
