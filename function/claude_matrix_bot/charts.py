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
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .chart_drawing import HEIGHT_PX, WIDTH_PX, render_png, render_png_in_child
from .chart_spec import WEEK_SEC, ChartSpec, Fit, Sample

if TYPE_CHECKING:
    from .model import Alert

__all__ = [
    "HEIGHT_PX",
    "PNG_SIGNATURE",
    "WEEK_SEC",
    "WIDTH_PX",
    "ChartSpec",
    "Fit",
    "Picture",
    "Sample",
    "picture_for",
    "render_png",
]

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
