"""What the pure core is configured with (docs/design.md §3): a leaf module, so the settings,
the core and the tests share it without importing the decision itself."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo

from .. import defaults
from ..quiet_hours import QuietHours


@dataclass(frozen=True, slots=True)
class DecideConfig:
    # The defaults are the settings' defaults (one source: defaults.py).
    thresholds: tuple[int, ...] = defaults.WEEKLY_THRESHOLDS
    shift_tolerance_sec: int = defaults.RESET_SHIFT_TOLERANCE_SEC
    forecast_enabled: bool = defaults.FORECAST_ENABLED
    forecast_window_sec: int = defaults.FORECAST_WINDOW_SEC
    forecast_min_samples: int = defaults.FORECAST_MIN_SAMPLES
    forecast_min_span_sec: int = defaults.FORECAST_MIN_SPAN_SEC
    health_failures: int = defaults.HEALTH_FAILURES
    extra_usage_thresholds: tuple[int, ...] = defaults.EXTRA_USAGE_THRESHOLDS
    charts_enabled: bool = defaults.CHARTS_ENABLED
    digest_enabled: bool = defaults.DIGEST_ENABLED
    # docs/design.md §8, §9: the session, credit and banked-reset families and the reader's day.
    session_alerts: bool = defaults.SESSION_ALERTS
    session_thresholds: tuple[int, ...] = defaults.SESSION_THRESHOLDS
    credit_thresholds: tuple[int, ...] = defaults.CREDIT_THRESHOLDS
    banked_resets_enabled: bool = defaults.BANKED_RESETS_ENABLED
    timezone: tzinfo = defaults.TIMEZONE
    quiet_hours: QuietHours | None = None
