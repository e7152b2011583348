"""The chart's hourly samples (docs/design.md §7) as state.json keeps them: `[first_hour,
[values]]`, a value per hour and `null` for an hour with no reading."""

from __future__ import annotations

from typing import Any

from ..errors import CorruptState
from .fields import _number, _plain_number
from .records import HOUR_SEC, MAX_HOURLY_SAMPLES, Sample


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
