"""One oversized alert must not block the outbox forever (issue 21 item 2).

The usage answer is capped where it enters (bucket-name length, buckets per answer), each
alert is cut to a size the homeserver takes (`sinks/matrix/fit.py`), and an alert the
homeserver still refuses for good (413, 400 `M_TOO_LARGE` / `M_BAD_JSON`) is set aside —
logged, counted, shown by `status` — while the rest of the outbox is delivered. The room
tests run the whole cycle against a real Synapse (through the fault proxy where Synapse
itself would accept what the bot sends).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from claude_matrix_bot.sinks.matrix.fit import ELLIPSIS, MAX_PART_BYTES, fit_message, refused_for_good
from claude_matrix_bot.usage_caps import MAX_BUCKET_NAME, MAX_BUCKETS
from claude_matrix_bot.usage_parse import parse_usage
from devstack.fakes.anthropic import FakeAnthropic
from devstack.matrix_proxy import SendFault
from devstack.payloads import iso, payload
from devstack.synapse import Homeserver
from tests.helpers import assert_no_secrets, run_cli
from tests.matrix_scene import FIVE, RESET, T0, MatrixScene, make_scene

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
LONG_NAME = "Fable " + "x" * 40_000


def _scoped(name: str, percent: float, resets_at: datetime) -> dict[str, Any]:
    return {
        "kind": "weekly_scoped",
        "group": "weekly",
        "percent": percent,
        "resets_at": iso(resets_at),
        "scope": {"model": {"id": None, "display_name": name}, "surface": None},
        "is_active": False,
    }


def _answer(*entries: dict[str, Any], weekly: float = 30.0) -> dict[str, Any]:
    answer = payload(five_hour=FIVE, weekly={"seven_day": (weekly, RESET)})
    answer["limits"] = list(entries)
    return answer


def _json_size(text: str) -> int:
    return len(json.dumps(text))


# --- where the answer enters: caps on names and on buckets -------------------------------------


def test_a_40000_character_scope_name_becomes_a_short_bucket_name() -> None:
    reading = parse_usage(_answer(_scoped(LONG_NAME, 35, NOW + timedelta(days=2))), NOW)
    scoped = [name for name in reading.buckets if name.startswith("seven_day_")]
    assert len(scoped) == 1 and len(scoped[0]) <= MAX_BUCKET_NAME
    assert scoped[0].startswith("seven_day_fable_xxx")


def test_two_long_names_sharing_a_start_stay_two_buckets() -> None:
    later = NOW + timedelta(days=2)
    reading = parse_usage(_answer(_scoped(LONG_NAME + "a", 35, later), _scoped(LONG_NAME + "b", 40, later)), NOW)
    assert len([name for name in reading.buckets if name.startswith("seven_day_")]) == 2


def test_a_40000_character_legacy_key_is_not_a_bucket_but_is_reported() -> None:
    answer = _answer()
    answer["seven_day_" + "y" * 40_000] = {"utilization": 12.0, "resets_at": iso(NOW + timedelta(days=2))}
    reading = parse_usage(answer, NOW)
    assert all(len(name) <= MAX_BUCKET_NAME for name in reading.buckets)
    assert len(reading.unknown_numbers) == 1 and len(reading.unknown_numbers[0]) < 100


def test_2000_scoped_entries_give_the_core_windows_and_the_fullest_and_say_what_was_left_out() -> None:
    later = NOW + timedelta(days=2)
    entries = [_scoped(f"Model {i}", float(i % 90), later) for i in range(2000)]
    reading = parse_usage(_answer(*entries), NOW)
    assert len(reading.buckets) == MAX_BUCKETS
    assert {"five_hour", "seven_day"} <= set(reading.buckets)
    assert min(b.utilization for n, b in reading.buckets.items() if n.startswith("seven_day_")) == 89.0
    assert (
        reading.unknown_numbers[0]
        == f"{2000 + 2 - MAX_BUCKETS} bucket(s) beyond the {MAX_BUCKETS} read from one answer"
    )


# --- each rendered alert cut to what the homeserver takes ---------------------------------------


def test_a_large_alert_is_cut_with_an_ellipsis_and_its_html_stays_whole_markup() -> None:
    plain = "line é🙂 <b>\n" * 12_000
    html = "<p>" + "<b>bold</b> é🙂 " * 12_000 + "</p>"
    fitted_plain, fitted_html = fit_message(plain, html)
    assert _json_size(fitted_plain) <= MAX_PART_BYTES and fitted_plain.endswith(ELLIPSIS)
    assert _json_size(fitted_html) <= MAX_PART_BYTES and fitted_html.endswith(ELLIPSIS)
    assert "<b>" not in fitted_html and "&lt;b&gt;" in fitted_html, "the plain text escaped, no cut tag"
    assert fitted_plain.startswith(plain[:1000])


def test_an_alert_that_fits_is_left_alone() -> None:
    assert fit_message("plain", "<p>html</p>") == ("plain", "<p>html</p>")


@pytest.mark.parametrize(
    ("status", "errcode", "for_good"),
    [
        (413, "M_TOO_LARGE", True),
        (413, None, True),
        (400, "M_TOO_LARGE", True),
        (400, "M_BAD_JSON", True),
        (400, "M_UNKNOWN", False),
        (502, None, False),
        (429, "M_LIMIT_EXCEEDED", False),
        (None, None, False),
    ],
)
def test_which_refusals_are_for_good(status: int | None, errcode: str | None, for_good: bool) -> None:
    assert refused_for_good(status, errcode) is for_good


# --- against Synapse: the whole cycle -----------------------------------------------------------


@pytest.fixture
def fresh(homeserver: Homeserver, anthropic: FakeAnthropic, tmp_path: Path) -> Iterator[MatrixScene]:
    """A bot in alice's encrypted room that has not armed yet."""
    scene = make_scene(homeserver, anthropic, tmp_path)
    try:
        yield scene
        assert_no_secrets(scene.secrets(), *scene.outputs)
    finally:
        scene.proxy.stop()
        scene.recipient.close()


@pytest.mark.synapse
def test_a_40000_character_scope_name_arms_in_the_room(fresh: MatrixScene) -> None:
    fresh.anthropic.set_usage(_answer(_scoped(LONG_NAME, 35, RESET)))
    fresh.run(0)
    armed = [body for body in fresh.bodies() if "armed" in body]
    assert len(armed) == 1 and len(armed[0]) < MAX_PART_BYTES
    assert fresh.pending() == []
    assert (fresh.state_dir / "state.json").stat().st_size < 20_000


@pytest.mark.synapse
def test_2000_scoped_entries_arm_in_the_room_and_status_says_what_was_left_out(fresh: MatrixScene) -> None:
    fresh.anthropic.set_usage(_answer(*(_scoped(f"Model {i}", float(i % 90), RESET) for i in range(2000))))
    fresh.run(0)
    armed = [body for body in fresh.bodies() if "armed" in body]
    assert len(armed) == 1 and len(armed[0]) < MAX_PART_BYTES
    assert fresh.pending() == []
    assert (fresh.state_dir / "state.json").stat().st_size < 50_000
    status = run_cli(fresh.env, "status", now=T0 + timedelta(minutes=1))
    fresh.outputs.extend([status.stdout, status.stderr])
    assert f"beyond the {MAX_BUCKETS} read from one answer" in status.stdout


@pytest.mark.parametrize(
    "refusal",
    [
        SendFault("status", 413, {"errcode": "M_TOO_LARGE", "error": "event too large"}),
        SendFault("status", 400, {"errcode": "M_BAD_JSON", "error": "bad json"}),
    ],
    ids=["413-M_TOO_LARGE", "400-M_BAD_JSON"],
)
@pytest.mark.synapse
def test_an_alert_refused_for_good_is_set_aside_and_the_one_behind_it_is_delivered(
    fresh: MatrixScene, refusal: SendFault
) -> None:
    def usage(weekly: float, sonnet: float) -> None:
        fresh.anthropic.set_usage(
            payload(five_hour=FIVE, weekly={"seven_day": (weekly, RESET), "seven_day_sonnet": (sonnet, RESET)})
        )

    usage(60.0, 60.0)
    fresh.run(0)
    # A: queued (the homeserver is failing), so it heads the outbox on the next run.
    fresh.proxy.break_sends(SendFault("status", 502, {"errcode": "M_UNKNOWN", "error": "bad gateway"}))
    usage(81.0, 60.0)
    [first] = re.findall(r"alert \w+ (cmb-\S+)", fresh.run(5, code=1).stderr)
    assert fresh.pending() == ["threshold"]
    # B, behind it; A is now refused for good.
    fresh.proxy.break_sends(refusal)
    usage(81.5, 81.0)
    result = fresh.run(10)
    [second] = re.findall(r"alert \w+ (cmb-\S+)", result.stderr)
    assert re.search(rf"alert {first} \(threshold\) set aside: the homeserver refuses it for good", result.stderr)
    assert fresh.pending() == [], "nothing left to block the outbox"
    bodies = fresh.bodies()
    assert sum("passed 80%" in body for body in bodies) == 1, "B arrived, A did not"
    assert f"delivered alert {second}" in result.stderr
    status = fresh.status(11)
    assert status["matrix_identity"]["set_aside"]["total"] == 1
    assert first in status["matrix_identity"]["set_aside"]["last"][0]
    text = run_cli(fresh.env, "status", now=T0 + timedelta(minutes=11))
    fresh.outputs.extend([text.stdout, text.stderr])
    assert "1 alert(s) refused for good by the homeserver and set aside" in text.stdout
