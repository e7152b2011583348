"""What one weekly window's chart shows (docs/design.md §7), as plain data: the core builds a
`ChartSpec`, it rides in an alert's details through the outbox (JSON both ways), and the
drawing child reads it back. A leaf module: `charts` and `chart_drawing` both import it, and
neither imports the other's way back (no import cycle)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from . import localtime

WEEK_SEC = 7 * 86400


Sample = tuple[int, float]  # (Unix seconds, utilization percent)


@dataclass(frozen=True, slots=True)
class Fit:
    """The forecast's fitted line: from (`start`, `start_utilization`) to 100 % at `exhausted_at`."""

    start: int
    start_utilization: float
    exhausted_at: int


@dataclass(frozen=True, slots=True)
class ChartSpec:
    """One weekly window as the chart shows it. Times are Unix seconds (UTC); `timezone` is
    the IANA name of the reader's zone, in which its days and times are drawn (docs/design.md §9)."""

    title: str
    samples: tuple[Sample, ...]
    window_start: int
    resets_at: int
    now: int
    thresholds: tuple[int, ...] = ()
    fit: Fit | None = None
    limit_hit_at: int | None = None  # the first time the window reached 100 %
    timezone: str = "UTC"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "title": self.title,
            "samples": [[t, u] for t, u in self.samples],
            "window_start": self.window_start,
            "resets_at": self.resets_at,
            "now": self.now,
            "thresholds": list(self.thresholds),
        }
        if self.fit is not None:
            out["fit"] = [self.fit.start, self.fit.start_utilization, self.fit.exhausted_at]
        if self.limit_hit_at is not None:
            out["limit_hit_at"] = self.limit_hit_at
        if self.timezone != "UTC":  # an outbox written before zones existed reads as UTC
            out["timezone"] = self.timezone
        return out

    @classmethod
    def from_json(cls, raw: object) -> ChartSpec:
        """Read back what `to_json` wrote; `ValueError` for anything else (an outbox
        written by a newer or broken release must not crash a delivery)."""
        if not isinstance(raw, dict):
            raise ValueError("chart: expected an object")
        title = raw.get("title")
        if not isinstance(title, str):
            raise ValueError("chart.title: expected a string")
        samples_raw = raw.get("samples")
        if not isinstance(samples_raw, list):
            raise ValueError("chart.samples: expected a list")
        samples: list[Sample] = []
        for pair in samples_raw:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise ValueError("chart.samples: expected [time, utilization] pairs")
            samples.append((_int(pair[0], "chart.samples"), _float(pair[1], "chart.samples")))
        thresholds_raw = raw.get("thresholds", [])
        if not isinstance(thresholds_raw, list):
            raise ValueError("chart.thresholds: expected a list")
        fit: Fit | None = None
        fit_raw = raw.get("fit")
        if fit_raw is not None:
            if not (isinstance(fit_raw, list) and len(fit_raw) == 3):
                raise ValueError("chart.fit: expected [start, utilization, exhausted_at]")
            fit = Fit(_int(fit_raw[0], "chart.fit"), _float(fit_raw[1], "chart.fit"), _int(fit_raw[2], "chart.fit"))
        limit_hit = raw.get("limit_hit_at")
        zone = raw.get("timezone", "UTC")
        if not isinstance(zone, str):
            raise ValueError("chart.timezone: expected a string")
        localtime.zone_named(zone)  # a name the zone data knows, or ValueError
        spec = cls(
            title=title,
            samples=tuple(samples),
            window_start=_int(raw.get("window_start"), "chart.window_start"),
            resets_at=_int(raw.get("resets_at"), "chart.resets_at"),
            now=_int(raw.get("now"), "chart.now"),
            thresholds=tuple(_int(t, "chart.thresholds") for t in thresholds_raw),
            fit=fit,
            limit_hit_at=None if limit_hit is None else _int(limit_hit, "chart.limit_hit_at"),
            timezone=zone,
        )
        if spec.resets_at <= spec.window_start:
            raise ValueError("chart: the window ends before it starts")
        return spec


def _int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where}: expected a number")
    return int(value)


def _float(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where}: expected a number")
    return float(value)
