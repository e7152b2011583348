"""The chart renderer (docs/design.md §7): a synthetic weekly window in, a phone-sized PNG out.

Pure function, driven directly: no sink, no server. What is checked: a real PNG of the
promised size; the same spec gives the same bytes in this process, in a fresh one and
under a hostile matplotlibrc; no metadata beyond the image itself; the series are
actually drawn (their colours are in the pixels); the spec survives its trip through
JSON (it rides in the outbox); a bad spec is refused with ValueError, and a sink asking
for a picture that cannot be drawn gets None and a log line, never an exception.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import re
import subprocess
import sys
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from claude_matrix_bot import chart_drawing, localtime
from claude_matrix_bot.chart_drawing import render_png_in_child
from claude_matrix_bot.charts import (
    PNG_SIGNATURE,
    WIDTH_PX,
    ChartSpec,
    Fit,
    Picture,
    picture_for,
    png_dimensions,
    render_png,
    strip_chart,
)
from claude_matrix_bot.model import Alert
from claude_matrix_bot.sinks.stdout import StdoutSink
from claude_matrix_bot.state import BucketState, State, dump_state
from devstack.fakes.anthropic import FakeAnthropic
from tests.chart_scenarios import HOUR, RESET, START, synthetic_window
from tests.helpers import bot_env, payload, run_cli

REPO = Path(__file__).resolve().parent.parent


def _chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    out = []
    pos = len(PNG_SIGNATURE)
    while pos < len(png):
        length = int.from_bytes(png[pos : pos + 4], "big")
        kind = png[pos + 4 : pos + 8]
        data = png[pos + 8 : pos + 8 + length]
        crc = int.from_bytes(png[pos + 8 + length : pos + 12 + length], "big")
        assert zlib.crc32(kind + data) == crc, f"bad CRC in {kind!r}"
        out.append((kind, data))
        pos += 12 + length
    return out


def _colour_pixels(png: bytes, hex_colour: str, *, tolerance: int = 10) -> int:
    target = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    image = Image.open(io.BytesIO(png)).convert("RGB")
    return sum(
        1
        for pixel in image.get_flattened_data()
        if all(abs(int(c) - t) <= tolerance for c, t in zip(pixel, target, strict=True))
    )


def test_a_png_of_at_least_800_by_400() -> None:
    png = render_png(synthetic_window())
    assert png.startswith(PNG_SIGNATURE)
    width, height = png_dimensions(png)
    assert width >= 800 and height >= 400
    assert (width, height) == Image.open(io.BytesIO(png)).size
    kinds = [kind for kind, _ in _chunks(png)]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    # No text chunks: nothing about the software or the host rides along.
    assert not {b"tEXt", b"iTXt", b"zTXt"} & set(kinds)
    assert b"matplotlib" not in png.lower()


def test_same_spec_same_bytes_in_one_process() -> None:
    assert render_png(synthetic_window()) == render_png(synthetic_window())


def test_same_bytes_in_a_fresh_interpreter_and_under_a_hostile_matplotlibrc(tmp_path: Path) -> None:
    expected = hashlib.sha256(render_png(synthetic_window())).hexdigest()
    config = tmp_path / "mplconfig"
    config.mkdir()
    # Everything a user's matplotlibrc could change about a chart.
    (config / "matplotlibrc").write_text(
        "font.family: serif\nfont.size: 7\nlines.linewidth: 9\naxes.facecolor: black\n"
        "figure.facecolor: red\nsavefig.dpi: 33\naxes.prop_cycle: cycler('color', ['00ff00'])\n"
    )
    script = (
        "import hashlib, sys\n"
        "from tests.chart_scenarios import synthetic_window\n"
        "from claude_matrix_bot.charts import render_png\n"
        "sys.stdout.write(hashlib.sha256(render_png(synthetic_window())).hexdigest())\n"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join([str(REPO / "function"), str(REPO)]),
        "MPLCONFIGDIR": str(config),
        "HOME": str(tmp_path),
    }
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected


def test_different_specs_give_different_pictures() -> None:
    assert render_png(synthetic_window(fit=True)) != render_png(synthetic_window(fit=False))


def test_the_usage_curve_and_the_projection_are_drawn() -> None:
    with_fit = render_png(synthetic_window(fit=True))
    without = render_png(synthetic_window(fit=False))
    assert _colour_pixels(with_fit, "#0072B2") > 2000, "the usage curve (Okabe-Ito blue)"
    assert _colour_pixels(with_fit, "#D55E00") > 500, "the fitted line and the exhaustion mark (vermilion)"
    assert _colour_pixels(without, "#D55E00") == 0, "no projection, nothing vermilion"
    hit = render_png(synthetic_window(fit=False, limit_hit=True))
    assert _colour_pixels(hit, "#D55E00") > 200, "the limit-hit mark"


def test_opaque_background_for_dark_themes() -> None:
    image = Image.open(io.BytesIO(render_png(synthetic_window())))
    assert image.mode in ("RGB", "RGBA")
    if image.mode == "RGBA":
        alpha = image.getchannel("A")
        assert alpha.getextrema() == (255, 255), "transparent pixels would vanish on a dark theme"


def test_an_empty_window_still_draws() -> None:
    spec = ChartSpec(
        title="Weekly Sonnet: no use yet",
        samples=(),
        window_start=START,
        resets_at=RESET,
        now=START + HOUR,
        thresholds=(50, 80),
    )
    png = render_png(spec)
    assert png_dimensions(png) == (1000, 500)


def test_a_projection_beyond_the_reset_is_clipped() -> None:
    base = synthetic_window()
    assert base.fit is not None
    late = ChartSpec(
        **{
            **{f: getattr(base, f) for f in ChartSpec.__slots__},
            "fit": Fit(base.fit.start, base.fit.start_utilization, RESET + 3 * 86400),
        }
    )
    png = render_png(late)
    assert png_dimensions(png) == (1000, 500)
    assert _colour_pixels(png, "#D55E00") > 100, "the fitted line is drawn up to the reset"


@pytest.mark.parametrize(
    "title",
    [
        "work-laptop · Weekly Oauth Apps Cowork: week to Thu 18 Jan, peak 100%",  # smaller type
        "Weekly " + "Very Long Model Name " * 40,  # smaller type and cut short
    ],
)
def test_a_long_title_stays_inside_the_picture(title: str) -> None:
    # An account's name and a long bucket name must not run off the right edge, where a
    # phone would show half a word; the right margin of the title band stays blank.
    png = render_png(dataclasses.replace(synthetic_window(), title=title))
    image = Image.open(io.BytesIO(png)).convert("RGB")
    band = image.crop((WIDTH_PX - 12, 0, WIDTH_PX, 70))
    assert all(pixel == (255, 255, 255) for pixel in band.get_flattened_data())
    left = image.crop((80, 25, 400, 65))
    assert _colour_pixels_of(left, "#1A1A1A") > 200, "the title is still there, in the ink colour"


def _colour_pixels_of(image: Image.Image, hex_colour: str, *, tolerance: int = 10) -> int:
    target = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return sum(
        1
        for pixel in image.get_flattened_data()
        if all(abs(int(c) - t) <= tolerance for c, t in zip(pixel, target, strict=True))
    )


def test_spec_round_trips_through_json() -> None:
    spec = synthetic_window(limit_hit=True)
    again = ChartSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert again == spec
    assert render_png(again) == render_png(spec)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("title"), "chart.title"),
        (lambda d: d.update(samples="many"), "chart.samples"),
        (lambda d: d.update(samples=[[1, 2, 3]]), "chart.samples"),
        (lambda d: d.update(samples=[[1, float("nan")]]), "chart.samples"),
        (lambda d: d.update(resets_at=True), "chart.resets_at"),
        (lambda d: d.update(resets_at=d["window_start"]), "ends before it starts"),
        (lambda d: d.update(fit=[1, 2]), "chart.fit"),
        (lambda d: d.update(thresholds="50"), "chart.thresholds"),
        (lambda d: d.update(timezone=1), "chart.timezone"),
        (lambda d: d.update(timezone="Mars/Olympus"), "unknown time zone"),
    ],
)
def test_a_bad_spec_is_refused(mutate: object, message: str) -> None:
    raw = synthetic_window().to_json()
    mutate(raw)  # type: ignore[operator]
    with pytest.raises(ValueError, match=message):
        ChartSpec.from_json(raw)


def test_picture_for_an_alert(caplog: pytest.LogCaptureFixture) -> None:
    spec = synthetic_window()
    picture = picture_for({"chart": spec.to_json(), "threshold": 50}, alert_id="cmb-forecast-x")
    assert picture is not None
    assert picture.png == render_png(spec)
    assert (picture.width, picture.height) == (1000, 500)
    assert picture.sha256 == hashlib.sha256(picture.png).hexdigest()
    assert spec.title in picture.body
    assert picture_for({"threshold": 50}, alert_id="cmb-threshold-x") is None

    with caplog.at_level(logging.WARNING, logger="claude_matrix_bot.charts"):
        assert picture_for({"chart": {"title": 3}}, alert_id="cmb-forecast-broken") is None
    assert "cmb-forecast-broken" in caplog.text and "sending the text alone" in caplog.text


def test_the_sinks_draw_in_a_child_process_with_the_same_bytes() -> None:
    # picture_for in a fresh interpreter (this one may have loaded matplotlib already):
    # it draws, and its own process still has no matplotlib (issue 15: nio and matplotlib
    # never share a process, so a drawing cycle peaks at the larger, not at their sum).
    script = (
        "import hashlib, json, sys\n"
        "from tests.chart_scenarios import synthetic_window\n"
        "from claude_matrix_bot.charts import picture_for\n"
        "picture = picture_for({'chart': synthetic_window().to_json()}, alert_id='cmb-forecast-x')\n"
        "print(json.dumps([picture.sha256 if picture else None, 'matplotlib' in sys.modules]))\n"
    )
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join([str(REPO / "function"), str(REPO)])}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    digest, loaded = json.loads(proc.stdout)
    assert digest == hashlib.sha256(render_png(synthetic_window())).hexdigest()
    assert loaded is False


def _stand_in_interpreter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """`sys.executable` becomes a shell script, so a test sees how the drawing child is started."""
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))


def test_a_drawing_process_that_fails_leaves_the_text_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A stand-in for the interpreter: it records the environment it was given and fails.
    seen = tmp_path / "environment"
    _stand_in_interpreter(tmp_path, monkeypatch, f"env > {seen}\necho 'MemoryError: drawing' >&2\nexit 3")
    monkeypatch.setenv("TRIGGER_TOKEN", "never-for-the-drawing-child-0123456789")
    monkeypatch.setenv("MATRIX_STORE_PASSPHRASE", "nor-this-passphrase")

    with caplog.at_level(logging.WARNING, logger="claude_matrix_bot.charts"):
        assert picture_for({"chart": synthetic_window().to_json()}, alert_id="cmb-forecast-y") is None
    assert "cmb-forecast-y" in caplog.text and "sending the text alone" in caplog.text
    assert "exit 3" in caplog.text and "MemoryError: drawing" in caplog.text
    child_env = seen.read_text()
    assert "never-for-the-drawing-child" not in child_env and "nor-this-passphrase" not in child_env
    assert f"PYTHONPATH={REPO / 'function'}" in child_env.splitlines()


def test_the_drawing_child_runs_without_docstrings_and_one_blas_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 15's memory: the child runs `python -OO` and numpy's OpenBLAS gets one thread,
    # whatever the parent's environment says.
    seen = tmp_path / "seen"
    _stand_in_interpreter(tmp_path, monkeypatch, f'echo "$@" > {seen}.argv\nenv > {seen}.env\nexit 3')
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "64")

    assert picture_for({"chart": synthetic_window().to_json()}, alert_id="cmb-forecast-z") is None
    assert Path(f"{seen}.argv").read_text().split() == ["-OO", "-m", "claude_matrix_bot.chart_drawing"]
    child_env = Path(f"{seen}.env").read_text().splitlines()
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        assert f"{name}=1" in child_env


def test_the_drawing_child_never_loads_openssl() -> None:
    # charts and matplotlib import hashlib; in the child it runs on CPython's own hashes,
    # so libcrypto is never mapped there (3-4 MB of RSS), and the bytes are the same.
    script = (
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: sys.stderr.write(str('libcrypto' in open('/proc/self/maps').read())))\n"
        "runpy.run_module('claude_matrix_bot.chart_drawing', run_name='__main__', alter_sys=True)\n"
    )
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO / "function")}
    proc = subprocess.run(
        [sys.executable, "-OO", "-c", script],
        input=json.dumps(synthetic_window().to_json()).encode(),
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == render_png(synthetic_window())
    assert proc.stderr.decode().strip().splitlines()[-1] == "False"


def test_strip_chart_keeps_everything_else() -> None:
    assert strip_chart({"chart": {}, "id": "a", "kind": "forecast"}) == {"id": "a", "kind": "forecast"}


def test_importing_the_module_does_not_load_matplotlib() -> None:
    script = "import sys, claude_matrix_bot.charts, claude_matrix_bot.sinks.stdout\nprint('matplotlib' in sys.modules)"
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO / "function")}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_the_stdout_sink_names_the_picture_by_digest() -> None:
    spec = synthetic_window()
    with_chart = Alert(
        id="cmb-forecast-a",
        kind="forecast",
        plain="p",
        html="h",
        bucket="seven_day",
        details={"chart": spec.to_json(), "projected_at": "2026-12-05T08:00:00+00:00"},
    )
    without = Alert(
        id="cmb-threshold-b", kind="threshold", plain="p", html="h", bucket="seven_day", details={"threshold": 50}
    )
    stream = io.StringIO()

    report = StdoutSink(stream).deliver([with_chart, without])

    assert report.delivered == ("cmb-forecast-a", "cmb-threshold-b")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    png = render_png(spec)
    assert first["image_sha256"] == hashlib.sha256(png).hexdigest()
    assert first["image_bytes"] == len(png)
    assert first["projected_at"] == "2026-12-05T08:00:00+00:00"
    assert "chart" not in first and "chart" not in second
    assert "image_sha256" not in second and "image_bytes" not in second


def _forecast_alert(alert_id: str = "cmb-forecast-ahead") -> Alert:
    return Alert(
        id=alert_id,
        kind="forecast",
        plain="p",
        html="h",
        bucket="seven_day",
        details={"chart": synthetic_window().to_json()},
    )


def _count_drawings(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    from claude_matrix_bot import charts

    drawings: list[object] = []
    monkeypatch.setattr(charts, "render_png_in_child", lambda spec: drawings.append(spec) or render_png(spec))
    return drawings


def test_pictures_drawn_ahead_are_handed_out_not_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from claude_matrix_bot.charts import drawn_ahead

    drawings = _count_drawings(monkeypatch)
    alert = _forecast_alert()
    text_only = Alert(id="cmb-threshold-t", kind="threshold", plain="p", html="h", details={"threshold": 50})
    with drawn_ahead([alert, text_only]):
        assert len(drawings) == 1
        picture = picture_for(alert.details, alert_id=alert.id)
        assert picture_for(text_only.details, alert_id=text_only.id) is None
    assert len(drawings) == 1
    assert picture is not None and picture.png == render_png(synthetic_window())
    assert picture_for(alert.details, alert_id=alert.id) is not None
    assert len(drawings) == 2, "outside the block a picture is drawn when asked for"


def test_the_cycle_draws_before_it_opens_the_sink(monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 15: the drawing child never runs beside a loaded sink (nio, asyncio).
    import contextlib
    import types

    from claude_matrix_bot.sending import deliver
    from claude_matrix_bot.sinks.base import DeliveryReport

    drawings = _count_drawings(monkeypatch)
    seen: list[tuple[int, Picture | None]] = []

    class Sink:
        def deliver(self, alerts: list[Alert]) -> DeliveryReport:
            seen.append((len(drawings), picture_for(alerts[0].details, alert_id=alerts[0].id)))
            return DeliveryReport(tuple(a.id for a in alerts))

    @contextlib.contextmanager
    def open_sink() -> Iterator[Sink]:
        seen.append((len(drawings), None))
        yield Sink()

    ports = types.SimpleNamespace(open_sink=open_sink, redactor=lambda text: text)
    report, error = deliver(ports, [_forecast_alert()])  # type: ignore[arg-type]
    assert (report.delivered, error) == (("cmb-forecast-ahead",), None)
    (drawn_when_opened, _), (drawn_when_delivering, picture) = seen
    assert drawn_when_opened == 1 and drawn_when_delivering == 1
    assert picture is not None


def _state_with_window(tmp_path: Path, key: str = "state.json", *, rise: float = 0.5) -> Path:
    resets_at = datetime.fromtimestamp(RESET, UTC)
    history = tuple((RESET - 3 * 86400 + i * 600, 40.0 + i * rise) for i in range(12))
    state = State(
        buckets={
            "seven_day": BucketState(
                utilization=history[-1][1], resets_at=resets_at, window=resets_at, history=history
            ),
            "seven_day_opus": BucketState(utilization=None, resets_at=None),
            "five_hour": BucketState(utilization=3.0, resets_at=resets_at),
        },
        armed_at=resets_at,
    )
    state_dir = tmp_path / "state"
    (state_dir / key).parent.mkdir(parents=True, exist_ok=True)
    (state_dir / key).write_bytes(dump_state(state))
    return state_dir


def _chart_cli(tmp_path: Path, state_dir: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO / "function"),
        "STATE_URL": state_dir.as_uri(),
        "NOW_OVERRIDE": datetime.fromtimestamp(RESET - 3 * 86400 + 11 * 600, UTC).isoformat(),
        "MPLCONFIGDIR": str(tmp_path / "mpl"),
        **extra,
    }
    return subprocess.run(
        [sys.executable, "-m", "claude_matrix_bot", "chart", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_chart_command_draws_the_current_window(tmp_path: Path) -> None:
    state_dir = _state_with_window(tmp_path)
    out = tmp_path / "week.png"

    proc = _chart_cli(tmp_path, state_dir, "--out", str(out))

    assert proc.returncode == 0, proc.stderr
    png = out.read_bytes()
    assert png.startswith(PNG_SIGNATURE) and png_dimensions(png) == (1000, 500)
    assert "seven_day" in proc.stdout and f"{len(png)} bytes" in proc.stdout
    assert _colour_pixels(png, "#0072B2") > 100, "the history is drawn (two hours: a short stroke)"
    assert _colour_pixels(png, "#D55E00") > 100, "12 samples over 110 minutes, rising: the forecast line"
    assert not list(tmp_path.glob(".week.png*")), "no temporary file left behind"


def test_the_chart_command_refuses_clearly(tmp_path: Path) -> None:
    state_dir = _state_with_window(tmp_path)
    out = tmp_path / "x.png"

    unknown = _chart_cli(tmp_path, state_dir, "--bucket", "seven_day_sonnet", "--out", str(out))
    no_window = _chart_cli(tmp_path, state_dir, "--bucket", "seven_day_opus", "--out", str(out))
    not_weekly = _chart_cli(tmp_path, state_dir, "--bucket", "five_hour", "--out", str(out))
    unwritable = _chart_cli(tmp_path, state_dir, "--out", str(tmp_path / "missing-dir" / "x.png"))
    no_state = _chart_cli(tmp_path, tmp_path / "empty", "--out", str(out))

    for proc in (unknown, no_window, not_weekly, unwritable, no_state):
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr
    assert "'seven_day_sonnet'" in unknown.stderr and "there are: seven_day" in unknown.stderr
    assert "'seven_day_opus'" in no_window.stderr
    assert "'five_hour'" in not_weekly.stderr
    assert "cannot write" in unwritable.stderr
    assert "no state yet" in no_state.stderr and "run a cycle first" in no_state.stderr
    assert not out.exists()


def test_the_chart_command_draws_each_account_of_several(tmp_path: Path) -> None:
    """docs/design.md §6/§7: with ACCOUNTS, `--account NAME` draws `<name>/state.json`."""
    state_dir = _state_with_window(tmp_path, "work/state.json", rise=0.5)
    _state_with_window(tmp_path, "priv/state.json", rise=2.0)
    pictures: dict[str, bytes] = {}
    for name in ("work", "priv"):
        out = tmp_path / f"{name}.png"
        proc = _chart_cli(tmp_path, state_dir, "--account", name, "--out", str(out), ACCOUNTS="work,priv")
        assert proc.returncode == 0, proc.stderr
        assert f"{name} seven_day" in proc.stdout
        pictures[name] = out.read_bytes()
        assert png_dimensions(pictures[name]) == (1000, 500)
    assert pictures["work"] != pictures["priv"], "each account's own window"


def test_the_chart_command_with_accounts_refuses_a_name_it_does_not_know(tmp_path: Path) -> None:
    state_dir = _state_with_window(tmp_path, "work/state.json")
    out = tmp_path / "x.png"
    several = {"ACCOUNTS": "work,priv"}

    unknown = _chart_cli(tmp_path, state_dir, "--account", "home", "--out", str(out), **several)
    unnamed = _chart_cli(tmp_path, state_dir, "--out", str(out), **several)
    no_accounts = _chart_cli(tmp_path, state_dir, "--account", "work", "--out", str(out))
    no_state_yet = _chart_cli(tmp_path, state_dir, "--account", "priv", "--out", str(out), **several)

    # A name that is not configured is a usage error (exit 2), like a bad setting.
    for proc in (unknown, unnamed, no_accounts):
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
    assert "--account home" in unknown.stderr and "work, priv" in unknown.stderr
    assert "name one with --account" in unnamed.stderr
    assert "ACCOUNTS is not set" in no_accounts.stderr
    # A configured account whose first cycle has not run yet: nothing to draw (exit 1).
    assert no_state_yet.returncode == 1 and "priv/state.json" in no_state_yet.stderr
    assert not out.exists()
    # One account configured: it is the default.
    only = _chart_cli(tmp_path, state_dir, "--out", str(out), ACCOUNTS="work")
    assert only.returncode == 0, only.stderr
    assert "work seven_day" in only.stdout


@pytest.mark.parametrize("charts_enabled", ["1", "0"])
def test_the_forecast_alert_carries_its_chart_through_the_cli(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path, charts_enabled: str
) -> None:
    """The real CLI, stdout sink, simulated time: a steady burn raises one forecast, whose
    line names the picture it would post (docs/design.md §7); CHARTS_ENABLED=0 posts none."""
    start = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    reset = start + timedelta(days=3)
    env = bot_env(
        tmp_path,
        anthropic.base_url,
        anthropic.token_url,
        CHARTS_ENABLED=charts_enabled,
        MPLCONFIGDIR=str(tmp_path / "mpl"),
    )
    forecasts: list[dict[str, object]] = []
    for step in range(9):
        anthropic.set_usage(payload(weekly={"seven_day": (40.0 + 2.5 * step, reset)}), jitter=True)
        result = run_cli(env, "run", now=start + timedelta(minutes=12 * step), timeout=120)
        assert result.code == 0, result.stderr
        forecasts += [a for a in result.alerts if a["kind"] == "forecast"]

    [forecast] = forecasts
    assert "chart" not in forecast, "the chart's inputs are for drawing, not printed"
    if charts_enabled == "0":
        assert "image_sha256" not in forecast and "image_bytes" not in forecast
        return
    assert isinstance(forecast["image_bytes"], int) and forecast["image_bytes"] > 10_000
    assert re.fullmatch(r"[0-9a-f]{64}", str(forecast["image_sha256"]))


# --- the reader's zone (docs/design.md §9) ------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "ts", "label"),
    [
        ("UTC", RESET, "Mon 18:00 UTC"),
        ("Europe/Berlin", RESET, "Mon 19:00 CET"),
        # …:59:59.6 is "on the hour", on the reader's clock too; summer time says so.
        ("Europe/Berlin", int(datetime(2026, 7, 9, 6, 59, 59, tzinfo=UTC).timestamp()), "Thu 09:00 CEST"),
        ("America/New_York", RESET, "Mon 13:00 EST"),
    ],
)
def test_time_labels_are_on_the_readers_clock(zone: str, ts: int, label: str) -> None:
    assert chart_drawing._label_time(ts, localtime.zone_named(zone)) == label


class _Axes:
    """What `_draw_days` asks of matplotlib's axes: the ticks it sets."""

    def __init__(self) -> None:
        self.ticks: dict[bool, tuple[list[float], list[str]]] = {}

    def set_xticks(self, ticks: list[float], labels: list[str], minor: bool = False) -> None:
        self.ticks[minor] = (list(ticks), list(labels))

    def tick_params(self, **_: object) -> None:
        pass


def test_day_ticks_are_the_readers_midnights_across_a_dst_change() -> None:
    # A week in Berlin over the end of summer time (Sun 25 Oct 2026, 03:00 CEST -> 02:00 CET):
    # that Sunday is 25 hours long, and every tick still sits on a local midnight.
    berlin = localtime.zone_named("Europe/Berlin")
    start = int(datetime(2026, 10, 21, 12, 0, tzinfo=berlin).timestamp())
    axes = _Axes()
    span = 7 * 24.0
    chart_drawing._draw_days(axes, start, span, berlin)
    midnights, _ = axes.ticks[False]
    local = [datetime.fromtimestamp(start + h * 3600, berlin) for h in midnights]
    assert all((m.hour, m.minute) == (0, 0) for m in local), local
    assert [m.day for m in local] == [22, 23, 24, 25, 26, 27, 28]
    assert midnights[4] - midnights[3] == 25.0  # Sunday
    _, names = axes.ticks[True]
    assert names[:4] == ["Thu", "Fri", "Sat", "Sun"]  # Wednesday began before the window


def test_a_chart_in_a_zone_round_trips_and_the_child_draws_it_the_same() -> None:
    spec = dataclasses.replace(synthetic_window(), timezone="Europe/Berlin")
    raw = json.loads(json.dumps(spec.to_json()))
    assert raw["timezone"] == "Europe/Berlin"
    assert ChartSpec.from_json(raw) == spec
    png = render_png(spec)
    assert png != render_png(synthetic_window())  # the days and labels moved by an hour
    assert render_png_in_child(spec) == png  # the child finds the same zone data
