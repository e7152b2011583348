"""Pictures for the room (docs/design.md §7): one weekly window as a PNG, readable on a phone.

Pure: a `ChartSpec` in, PNG bytes out (`render_png`, drawn by `chart_drawing`). The spec
is plain data (it rides in an alert's `details` through the outbox, so it round-trips
through JSON); the core builds it and the sinks draw it, so the decision stays free of
plotting. matplotlib is imported only when a chart is drawn: cycles that draw nothing
never load it (cold start and quiet cycles stay as they were), and the sinks draw in a
child process (`picture_for`), so a cycle never holds matplotlib and nio together.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import math
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import localtime
from .chart_drawing import HEIGHT_PX, WIDTH_PX, render_png, render_png_in_child

if TYPE_CHECKING:
    from .model import Alert

__all__ = ["HEIGHT_PX", "PNG_SIGNATURE", "WIDTH_PX", "ChartSpec", "Fit", "Picture", "picture_for", "render_png"]

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
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


@dataclass(frozen=True, slots=True)
class Picture:
    """A drawn chart, ready for a sink: the bytes and what an `m.image` says about them."""

    png: bytes
    width: int
    height: int
    body: str  # the text a client shows when it cannot show the image

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.png).hexdigest()


def png_dimensions(data: bytes) -> tuple[int, int]:
    """(width, height) from the PNG's IHDR chunk, which always comes first."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


# --- what the sinks call ------------------------------------------------------------------


# Pictures drawn by `drawn_ahead`, by alert id, while its block runs (None: outside one).
_DRAWN: contextvars.ContextVar[dict[str, Picture | None] | None] = contextvars.ContextVar("drawn", default=None)


@contextlib.contextmanager
def drawn_ahead(alerts: Sequence[Alert]) -> Iterator[None]:
    """Draw the pictures `alerts` ask for now; inside the block `picture_for` hands them
    out instead of drawing again. The cycle calls it before it opens the sink, so the
    drawing child runs while this process holds no sink yet (the Matrix sink's modules
    and asyncio are 2 MB of a cycle that draws: issue 15, both processes ≤ 100 MB)."""
    drawn = {alert.id: _draw_picture(alert.details, alert_id=alert.id) for alert in alerts if "chart" in alert.details}
    token = _DRAWN.set(drawn)
    try:
        yield
    finally:
        _DRAWN.reset(token)


def picture_for(details: dict[str, Any], *, alert_id: str) -> Picture | None:
    """The picture an alert asks for (`details["chart"]`), or None when it asks for none.

    Never raises: a chart that cannot be drawn is logged and the alert goes out as text
    (docs/design.md §7: the text never waits on a picture). Drawn in a child process
    (`render_png_in_child`): the sink's process never loads matplotlib."""
    drawn = _DRAWN.get()
    if drawn is not None and alert_id in drawn:
        return drawn[alert_id]
    return _draw_picture(details, alert_id=alert_id)


def _draw_picture(details: dict[str, Any], *, alert_id: str) -> Picture | None:
    raw = details.get("chart")
    if raw is None:
        return None
    try:
        spec = ChartSpec.from_json(raw)
        png = render_png_in_child(spec)
        width, height = png_dimensions(png)
    except Exception as exc:  # any failure to draw: the text alert still goes out
        log.warning(
            "could not draw the chart of alert %s (%s: %s); sending the text alone", alert_id, type(exc).__name__, exc
        )
        return None
    return Picture(png=png, width=width, height=height, body=f"Chart: {spec.title}")


def strip_chart(fields: dict[str, Any]) -> dict[str, Any]:
    """An alert's JSON without the chart's inputs (they are for drawing, not for reading)."""
    return {k: v for k, v in fields.items() if k != "chart"}
