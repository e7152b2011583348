"""What the pure core is configured with (docs/design.md §3): a leaf module, so the settings,
the core and the tests share it without importing the decision itself.

Each field is a setting declared once (`setting()`): the environment variable is its name in
upper case; `Settings` extends this class with what the shell needs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import cast

from ..quiet_hours import QuietHours, parse_quiet_hours
from ..settings_spec import setting
from ..settings_values import boolean, thresholds, timezone_name, whole


@dataclass(frozen=True, slots=True)
class DecideConfig:
    weekly_thresholds: tuple[int, ...] = setting((50, 80), thresholds, "percent thresholds for weekly buckets")
    forecast_enabled: bool = setting(True, boolean, "burn-rate forecast on/off")
    forecast_window_sec: int = setting(21600, whole(60), "history the forecast fits")
    forecast_min_samples: int = setting(6, whole(2), "no forecast from fewer samples")
    forecast_min_span_sec: int = setting(3600, whole(1), "no forecast from a shorter span")
    reset_shift_tolerance_sec: int = setting(60, whole(), "resets_at moves smaller than this are jitter")
    health_failures: int = setting(3, whole(1), "failed runs in a row before the degraded alert")
    extra_usage_thresholds: tuple[int, ...] = setting(
        (50, 80, 100), thresholds, "percent of the monthly overage cap", when_empty=()
    )
    charts_enabled: bool = setting(True, boolean, "charts with the forecast alert and the digest")
    digest_enabled: bool = setting(True, boolean, "the weekly digest at each natural weekly rollover")
    # docs/design.md §8, §9: the session, credit and banked-reset families and the reader's day.
    session_alerts: bool = setting(True, boolean, "the 5-hour limit reached / back alerts")
    session_thresholds: tuple[int, ...] = setting(
        (), thresholds, "percent thresholds of the 5-hour bucket", when_empty=(), shown="empty"
    )
    credit_thresholds: tuple[int, ...] = setting(
        (80, 100), thresholds, "percent of a credit budget used", when_empty=()
    )
    banked_resets_enabled: bool = setting(True, boolean, "read the banked usage-limit resets and alert on them")
    timezone: tzinfo = setting(cast(tzinfo, UTC), timezone_name, "IANA zone in which people read every time")
    quiet_hours: QuietHours | None = setting(None, parse_quiet_hours, "HH:MM-HH:MM when non-urgent alerts wait")
