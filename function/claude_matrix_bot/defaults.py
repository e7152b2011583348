"""The defaults of what the decision is configured with (DESIGN §3): one source for
`Settings` (the environment) and `DecideConfig` (the pure core). Plain values, so
reading the settings at a cold start imports nothing else."""

from __future__ import annotations

from datetime import UTC, tzinfo

WEEKLY_THRESHOLDS = (50, 80)
RESET_SHIFT_TOLERANCE_SEC = 60
FORECAST_ENABLED = True
FORECAST_WINDOW_SEC = 21600
FORECAST_MIN_SAMPLES = 6
FORECAST_MIN_SPAN_SEC = 3600
HEALTH_FAILURES = 3
EXTRA_USAGE_THRESHOLDS = (50, 80, 100)
CHARTS_ENABLED = True
DIGEST_ENABLED = True
# docs/design.md §8, §9: the session, credit and banked-reset families and the reader's day.
SESSION_ALERTS = True
SESSION_THRESHOLDS: tuple[int, ...] = ()
CREDIT_THRESHOLDS = (80, 100)
BANKED_RESETS_ENABLED = True
TIMEZONE: tzinfo = UTC
