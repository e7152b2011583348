"""Drawing a `ChartSpec` (docs/design.md §7): matplotlib, driven for the same bytes every time.

matplotlib is imported inside `render_png` only. It is driven through `Figure` and the
Agg canvas directly, never `pyplot`: no global figure registry, no backend selection,
nothing left behind between two charts.

Deterministic bytes for a fixed spec: the style is set from matplotlib's defaults (a
user's matplotlibrc cannot change a chart), the font is the DejaVu Sans that matplotlib
ships, and the PNG carries no `Software` text chunk (the only metadata Agg writes).

Readable in light and dark themes and for colour-blind readers: the image has its own
opaque light background; series differ by line style and width as well as by hue, with
hues from the Okabe-Ito palette; everything is labelled on the chart (no legend).
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from datetime import datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, cast

from .localtime import abbreviation, to_minute, zone_named

if TYPE_CHECKING:
    from .chart_spec import ChartSpec

WIDTH_PX = 1000
HEIGHT_PX = 500
_DPI = 100
_MIN_TITLE_PT = 14  # still about 5 px tall on a 360 px-wide phone

# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common
# colour-vision deficiency. Blue for what happened, vermilion for what is projected.
_BLUE = "#0072B2"
_VERMILION = "#D55E00"
_INK = "#1A1A1A"
_MUTED = "#5A5A5A"
_GRID = "#E3E3E3"
_PAPER = "#FFFFFF"


def _moment(ts: float, zone: tzinfo) -> datetime:
    return datetime.fromtimestamp(ts, zone)


def _label_time(ts: float, zone: tzinfo) -> str:
    """`Thu 08:00 CET`: on the reader's clock (docs/design.md §9), to the minute (the API's
    …:59:59.6 means "on the hour")."""
    moment = to_minute(_moment(ts, zone)).astimezone(zone)
    return f"{moment:%a %H:%M} {abbreviation(moment)}"


def _label_on_limit(axes: Any, label_x: float, span: float, text: str) -> None:
    """A bold label beside a mark on the 100 % line, turned inwards in the right 40 %."""
    left = label_x > span * 0.6
    axes.annotate(
        text,
        (label_x, 100),
        xytext=(-14 if left else 14, -30),
        textcoords="offset points",
        ha="right" if left else "left",
        va="center",
        fontsize=17,
        fontweight="bold",
        color=_VERMILION,
    )


def _style() -> dict[str, Any]:
    # Sizes in points at 100 dpi: 18 pt ≈ 25 px, about 9 px tall on a 360 px-wide phone.
    return {
        "font.family": "DejaVu Sans",
        "font.size": 18,
        "axes.titlesize": 22,
        "axes.titleweight": "bold",
        "axes.titlelocation": "left",
        "axes.edgecolor": _MUTED,
        "axes.labelcolor": _INK,
        "axes.linewidth": 1.2,
        "text.color": _INK,
        "xtick.color": _INK,
        "ytick.color": _INK,
        "xtick.labelsize": 17,
        "ytick.labelsize": 17,
        "figure.facecolor": _PAPER,
        "axes.facecolor": _PAPER,
        "savefig.facecolor": _PAPER,
        "path.simplify": False,
    }


def render_png(spec: ChartSpec) -> bytes:
    """Draw `spec` as a WIDTH_PX by HEIGHT_PX PNG. Same spec, same bytes."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context():
        # Start from the library's defaults so no matplotlibrc on the host changes a chart.
        matplotlib.rcdefaults()
        matplotlib.rcParams.update(cast(Any, _style()))  # keys are checked at run time
        figure = Figure(figsize=(WIDTH_PX / _DPI, HEIGHT_PX / _DPI), dpi=_DPI)
        FigureCanvasAgg(figure)
        _draw(figure, spec)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()


def _draw(figure: Any, spec: ChartSpec) -> None:
    """The chart, part by part, in the order the parts are drawn (later ones on top)."""
    x = _hours_since(spec.window_start)
    span = x(spec.resets_at)
    zone = zone_named(spec.timezone)
    axes = figure.add_axes((0.085, 0.13, 0.80, 0.72))
    axes.set_xlim(0, span)
    axes.set_ylim(0, 108)
    axes.spines[["top", "right"]].set_visible(False)
    axes.set_yticks([0, 25, 50, 75, 100], ["0%", "25%", "50%", "75%", "100%"])
    axes.grid(axis="y", color=_GRID, linewidth=1)
    axes.set_axisbelow(True)
    _draw_days(axes, spec.window_start, span, zone)
    _draw_levels(axes, spec.thresholds)
    _draw_reset(axes, x(spec.resets_at), span, _label_time(spec.resets_at, zone))
    _draw_usage(axes, spec, x, span)
    _draw_fit(axes, spec, x, span, zone)
    _draw_limit_hit(axes, spec, x, span, zone)
    _draw_title(figure, axes, spec.title)


def _hours_since(start: int) -> Callable[[float], float]:
    def x(ts: float) -> float:  # hours since the window began: the x axis
        return (ts - start) / 3600.0

    return x


def _draw_days(axes: Any, start: int, span: float, zone: tzinfo) -> None:
    """A tick at each of the reader's midnights, the weekday written under the middle of
    the day (a day of a DST change is 23 or 25 hours long: midnights come from the calendar)."""
    x = _hours_since(start)
    first_day = _moment(start, zone).date()
    # Nine midnights from the day the window starts: a window is seven days, a moved one a little more.
    bounds = [datetime.combine(first_day + timedelta(days=d), time(), zone).timestamp() for d in range(10)]
    midnights = [x(ts) for ts in bounds if 0 < x(ts) < span]
    axes.set_xticks(midnights, [""] * len(midnights))
    axes.tick_params(axis="x", length=8)
    noons = [(x((a + b) / 2), _moment(a, zone).strftime("%a")) for a, b in itertools.pairwise(bounds)]
    inside = [(h, name) for h, name in noons if 2 <= h <= span - 2]
    axes.set_xticks([h for h, _ in inside], [name for _, name in inside], minor=True)
    axes.tick_params(axis="x", which="minor", length=0, pad=8)


def _draw_levels(axes: Any, thresholds: tuple[int, ...]) -> None:
    """The limit and the thresholds, labelled at the right edge."""
    axes.axhline(100, color=_INK, linewidth=1.6)
    _label_right(axes, 100, "limit", _INK)
    for threshold in sorted(set(thresholds)):
        if 0 < threshold < 100:
            axes.axhline(threshold, color=_MUTED, linewidth=1.4, linestyle=(0, (6, 4)))
            _label_right(axes, threshold, f"{threshold}%", _MUTED)


def _label_right(axes: Any, level: float, text: str, colour: str) -> None:
    axes.annotate(
        text,
        (1.0, level),
        xycoords=("axes fraction", "data"),
        xytext=(8, 0),
        textcoords="offset points",
        va="center",
        fontsize=16,
        color=colour,
    )


def _draw_reset(axes: Any, reset_at_x: float, span: float, when: str) -> None:
    """The reset, a vertical line at the window's end (drawn inside so it stays visible)."""
    reset_x = min(span, reset_at_x) - span * 0.002
    axes.axvline(reset_x, color=_INK, linewidth=2.0, linestyle=(0, (2, 3)))
    axes.annotate(
        f"reset {when}",
        (reset_x, 104),
        xytext=(-8, 0),
        textcoords="offset points",
        ha="right",
        va="center",
        fontsize=16,
        color=_INK,
    )


def _draw_usage(axes: Any, spec: ChartSpec, x: Callable[[float], float], span: float) -> None:
    samples = sorted((t, u) for t, u in spec.samples if spec.window_start <= t <= spec.resets_at)
    if not samples:
        axes.text(span / 2, 54, "no samples in this window yet", ha="center", va="center", color=_MUTED)
        return
    xs = [x(t) for t, _ in samples]
    ys = [max(0.0, min(u, 100.0)) for _, u in samples]
    axes.fill_between(xs, ys, 0, color=_BLUE, alpha=0.12, linewidth=0)
    axes.plot(xs, ys, color=_BLUE, linewidth=3.5, solid_capstyle="round", solid_joinstyle="round")
    last_t, last_u = samples[-1]
    axes.plot([x(last_t)], [min(last_u, 100.0)], marker="o", markersize=11, color=_BLUE)


def _draw_fit(axes: Any, spec: ChartSpec, x: Callable[[float], float], span: float, zone: tzinfo) -> None:
    """The forecast's line up to the reset, and where it reaches 100 % when that is sooner."""
    fit = spec.fit
    if fit is None or fit.exhausted_at <= fit.start:
        return
    end = min(fit.exhausted_at, spec.resets_at)
    slope = (100.0 - fit.start_utilization) / (fit.exhausted_at - fit.start)
    end_u = fit.start_utilization + slope * (end - fit.start)
    axes.plot(
        [x(fit.start), x(end)],
        [fit.start_utilization, end_u],
        color=_VERMILION,
        linewidth=3.0,
        linestyle=(0, (5, 3)),
    )
    if fit.exhausted_at <= spec.resets_at:
        # Projected exhaustion: a hollow diamond (shape as well as colour) on the limit.
        axes.plot(
            [x(fit.exhausted_at)],
            [100],
            marker="D",
            markersize=15,
            markerfacecolor=_PAPER,
            markeredgecolor=_VERMILION,
            markeredgewidth=3.0,
        )
        _label_on_limit(axes, x(fit.exhausted_at), span, f"100% {_label_time(fit.exhausted_at, zone)}")


def _draw_limit_hit(axes: Any, spec: ChartSpec, x: Callable[[float], float], span: float, zone: tzinfo) -> None:
    hit = spec.limit_hit_at
    if hit is None or not spec.window_start <= hit <= spec.resets_at:
        return
    axes.plot(
        [x(hit)],
        [100],
        marker="X",
        markersize=16,
        color=_VERMILION,
        markeredgecolor=_PAPER,
        markeredgewidth=1.5,
    )
    _label_on_limit(axes, x(hit), span, f"limit hit {_label_time(hit, zone)}")


def _draw_title(figure: Any, axes: Any, title: str) -> None:
    """The title, in the largest size that fits the image's width (an account's name and a
    long bucket name would otherwise run off the right edge), cut short below 14 pt."""
    text = axes.set_title(title, pad=14)
    renderer = figure.canvas.get_renderer()
    room = figure.bbox.width - text.get_window_extent(renderer).x0 - 10
    size = float(text.get_fontsize())
    while text.get_window_extent(renderer).width > room and size > _MIN_TITLE_PT:
        size -= 1
        text.set_fontsize(size)
    width = text.get_window_extent(renderer).width
    if width > room:
        # Cut in proportion first (a title from a damaged outbox may be very long), then by letters.
        title = title[: max(1, int(len(title) * room / width))]
        text.set_text(title + "…")
        while text.get_window_extent(renderer).width > room and len(title) > 1:
            title = title[:-1]
            text.set_text(title.rstrip() + "…")


# --- drawing in a child process -----------------------------------------------------------

CHILD_TIMEOUT_SEC = 60.0
# What the child needs to find Python, matplotlib and a writable font cache; nothing else
# of the cycle's environment (tokens, the trigger token, passphrases) reaches it.
_CHILD_ENVIRONMENT = (
    "PATH",
    "HOME",
    "TMPDIR",
    "LANG",
    "LC_ALL",
    "MPLCONFIGDIR",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "VIRTUAL_ENV",
)
# Set for the child whatever the parent has: the chart does no linear algebra, and
# numpy's OpenBLAS would otherwise start one thread per core (2 here, 1 with this: no
# RSS measured on 2 cores, 40 MB less address space; more on a node with many cores).
_CHILD_FIXED_ENVIRONMENT = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# -OO: no docstrings (matplotlib's are large, and interpolated at import): the child's
# peak 73 -> 68 MB. It loads the `.opt-2.pyc` bytecode, which the image compiles at
# build time (Dockerfile) since its root filesystem is read-only at run time.
_CHILD_FLAGS = ("-OO",)


def render_png_in_child(spec: ChartSpec, timeout: float = CHILD_TIMEOUT_SEC) -> bytes:
    """`render_png(spec)` in a new interpreter (`python -m claude_matrix_bot.chart_drawing`),
    the spec's JSON in, the PNG out: the same bytes.

    Why a child: matplotlib and numpy take about 50 MB that Python never gives back, and a
    Matrix delivery adds nio and aiohttp (about 30 MB) to the same process; drawn here, a
    cycle that draws peaks at the larger of the two instead of their sum, and a warm
    instance holds neither between cycles. A drawing that crashes or hangs ends with the
    child (killed at `timeout`), and the caller sends the text alone (docs/design.md §7)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {name: value for name in _CHILD_ENVIRONMENT if (value := os.environ.get(name)) is not None}
    # Where this package lives, so the child imports the same code however the parent found
    # it (installed, PYTHONPATH, or functions-framework's --source adding function/ to sys.path).
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    env.update(_CHILD_FIXED_ENVIRONMENT)
    done = subprocess.run(
        [sys.executable, *_CHILD_FLAGS, "-m", __name__],
        input=json.dumps(spec.to_json()).encode(),
        env=env,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(f"the drawing process failed (exit {done.returncode}): {last[:200]}")
    return done.stdout


def _main() -> int:
    import json
    import sys

    # The child never hashes, but charts and matplotlib's texmanager import hashlib, whose
    # OpenSSL backend maps libcrypto (3-4 MB of RSS). Without `_hashlib`, hashlib uses
    # CPython's built-in hashes, as on a Python built without OpenSSL.
    sys.modules.setdefault("_hashlib", None)  # type: ignore[arg-type]
    from .chart_spec import ChartSpec

    spec = ChartSpec.from_json(json.loads(sys.stdin.buffer.read()))
    sys.stdout.buffer.write(render_png(spec))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
