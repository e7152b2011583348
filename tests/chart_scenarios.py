"""A synthetic weekly window for the chart tests: four days of quiet nights, busy work hours
and a hard burn at the end, as a `ChartSpec` (times in Unix seconds). Importable from a fresh
interpreter too, which the same-bytes test starts."""

from __future__ import annotations

from datetime import UTC, datetime

from claude_matrix_bot.charts import ChartSpec, Fit

RESET = int(datetime(2026, 12, 7, 18, 0, tzinfo=UTC).timestamp())
START = RESET - 7 * 86400
HOUR = 3600


def synthetic_window(*, fit: bool = True, limit_hit: bool = False) -> ChartSpec:
    """Four days of a weekly window: quiet nights, busy work hours, a hard burn at the end."""
    samples: list[tuple[int, float]] = []
    utilization = 0.0
    for hour in range(4 * 24 + 6):
        busy = 9 <= (hour + 18) % 24 <= 18  # the window starts at 18:00
        utilization += 0.9 if busy else 0.05
        if hour >= 4 * 24:
            utilization += 2.5
        samples.append((START + hour * HOUR, round(min(utilization, 100.0), 1)))
    now, current = samples[-1]
    return ChartSpec(
        title=f"Weekly (all models): {current:.0f}% now",
        samples=tuple(samples),
        window_start=START,
        resets_at=RESET,
        now=now,
        thresholds=(50, 80),
        fit=Fit(
            start=now - 6 * HOUR,
            start_utilization=current - 6 * 3.4,
            exhausted_at=now + int((100 - current) / 3.4 * HOUR),
        )
        if fit
        else None,
        limit_hit_at=now if limit_hit else None,
    )
