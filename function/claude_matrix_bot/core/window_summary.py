"""What a weekly window came to (docs/design.md §7): the digest's value, a leaf module so
the messages can say it without importing the digest's rules."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from ..state import Sample


@dataclass(frozen=True, slots=True)
class Passed:
    """A threshold (or the limit) the window reached; `at` is None when it was already
    past when the bot first saw the window (armed mid-window, or away at the rollover)."""

    percent: int
    at: datetime | None


@dataclass(frozen=True, slots=True)
class WindowSummary:
    bucket: str
    started_at: datetime
    ended_at: datetime  # the reset that closed it
    peak: float
    peak_on: date  # the reader's day (TIMEZONE) the peak was first read
    passed: tuple[Passed, ...]  # the thresholds reached, lowest first
    limit: Passed | None  # None: the limit was never hit
    busiest_day: date | None  # the reader's day with the largest rise; None: no rise seen
    busiest_gain: float
    samples: tuple[Sample, ...]
