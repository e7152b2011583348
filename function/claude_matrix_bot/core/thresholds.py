"""Threshold crossings, one helper for every family (docs/design.md §1, §8).

Weekly buckets, paid overage, the session and credits all say a threshold once per
window (or spend period): the thresholds at or below the value that were not said yet.
"""

from __future__ import annotations

from collections.abc import Iterable


def crossed(thresholds: Iterable[int], value: float | None, said: Iterable[int]) -> list[int]:
    """The thresholds `value` has reached that are not in `said`, in configured order."""
    if value is None:
        return []
    done = set(said)
    out: list[int] = []
    for threshold in thresholds:
        if value >= threshold and threshold not in done:
            done.add(threshold)
            out.append(threshold)
    return out


def exceeded(thresholds: Iterable[int], value: float) -> tuple[int, ...]:
    """The thresholds `value` has reached (the armed baseline marks them as said)."""
    return tuple(t for t in thresholds if value >= t)
