"""Burn-rate forecast (docs/design.md §1, "The forecast (decided design)").

Ordinary least squares of utilization over time, the estimator Prometheus'
`predict_linear` uses; exhaustion is projected from the latest reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

Sample = tuple[int, float]


@dataclass(frozen=True, slots=True)
class Projection:
    slope_per_hour: float  # percent per hour
    samples: int
    span_sec: int
    exhausted_at: datetime


def least_squares_slope(samples: Sequence[Sample]) -> float | None:
    """Slope in percent per second, or None if time does not vary."""
    n = len(samples)
    if n < 2:
        return None
    # Centre on the first timestamp: Unix seconds squared would lose precision.
    t0 = samples[0][0]
    xs = [float(t - t0) for t, _ in samples]
    ys = [u for _, u in samples]
    mean_x = sum(xs) / n
    mean_y = sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        return None
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    return sxy / sxx


def project(
    history: Sequence[Sample],
    *,
    now: datetime,
    current: float,
    min_samples: int,
    min_span_sec: int,
) -> Projection | None:
    """Project when utilization reaches 100 %, or None when the rules forbid a projection:
    fewer than `min_samples`, a span under `min_span_sec`, or a slope <= 0."""
    if len(history) < min_samples:
        return None
    span = history[-1][0] - history[0][0]
    if span < min_span_sec:
        return None
    slope = least_squares_slope(history)
    if slope is None or slope <= 0:
        return None
    remaining = max(0.0, 100.0 - current)
    seconds = remaining / slope
    # A nearly flat slope projects centuries ahead; cap before timedelta overflows.
    seconds = min(seconds, 10 * 365 * 86400)
    return Projection(
        slope_per_hour=slope * 3600,
        samples=len(history),
        span_sec=span,
        exhausted_at=now + timedelta(seconds=seconds),
    )
