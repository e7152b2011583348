"""Quiet hours and the reader's zone through the real CLI (docs/design.md §9): each step one
`python -m claude_matrix_bot run` (stdout sink, NOW_OVERRIDE, a new process each time, so
every step is also a restart) against the loopback fake Anthropic API.

A note raised during quiet hours waits in state.json's outbox while an urgent alert goes at
once, `status` says what waits and until when, and the first cycle after the end sends it,
saying when it was raised.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from devstack.fakes.anthropic import FakeAnthropic
from tests.helpers import bot_env, payload, run_cli

BERLIN = ZoneInfo("Europe/Berlin")
HOUR = timedelta(hours=1)


def test_a_note_waits_through_quiet_hours_and_a_restart(
    tmp_path: Path, anthropic: FakeAnthropic, tokens_dir: Path
) -> None:
    # Quiet from an hour after the start to four hours after, on Berlin's clock: 23:00-02:00,
    # across midnight. A fixed winter night, so no change of the clock can move the span.
    start = datetime(2026, 1, 8, 21, 0, tzinfo=UTC)
    quiet_start, quiet_end = start + HOUR, start + 4 * HOUR
    span = f"{quiet_start.astimezone(BERLIN):%H:%M}-{quiet_end.astimezone(BERLIN):%H:%M}"
    env = bot_env(tmp_path, anthropic.base_url, anthropic.token_url, TIMEZONE="Europe/Berlin", QUIET_HOURS=span)
    reset = start + timedelta(days=3)

    def run(at: datetime, weekly: float) -> list[dict[str, Any]]:
        anthropic.set_usage(payload(five_hour=(10.0, start + 3 * HOUR), weekly={"seven_day": (weekly, reset)}))
        result = run_cli(env, "run", now=at)
        assert result.code == 0, result.stderr
        assert "Traceback" not in result.stderr
        return result.alerts

    def status(at: datetime) -> tuple[dict[str, Any], str]:
        as_json = run_cli(env, "status", "--json", now=at)
        as_text = run_cli(env, "status", now=at)
        assert as_json.code == 0 and as_text.code == 0, as_json.stderr + as_text.stderr
        doc: dict[str, Any] = json.loads(as_json.stdout)
        return doc, as_text.stdout

    local_reset = reset.astimezone(BERLIN)
    abbreviation = local_reset.tzname()
    [armed] = run(start, 30.0)
    assert armed["kind"] == "armed" and armed["urgent"] is False
    assert f"resets {local_reset:%a} {local_reset.day} {local_reset:%b %H:%M} {abbreviation}" in armed["plain"]

    # 50% crossed in quiet hours: a note, not urgent, so nothing is sent.
    raised = start + 90 * timedelta(minutes=1)
    assert run(raised, 55.0) == []
    doc, text = status(raised + 5 * timedelta(minutes=1))
    [waiting] = doc["outbox"]
    assert (waiting["kind"], waiting["urgent"]) == ("threshold", False)
    assert datetime.fromisoformat(waiting["held_until"]) == quiet_end
    assert span == "23:00-02:00"
    assert doc["quiet_hours"] == {
        "span": span,
        "timezone": "Europe/Berlin",
        "quiet_now": True,
        "until": doc["quiet_hours"]["until"],
        "waiting": 1,
    }
    assert datetime.fromisoformat(doc["quiet_hours"]["until"]) == quiet_end
    local_end = quiet_end.astimezone(BERLIN)
    assert f"quiet hours {span} Europe/Berlin: until {local_end:%a} {local_end.day} {local_end:%b %H:%M}" in text
    assert "1 alert(s) waiting" in text
    local_raised = raised.astimezone(BERLIN)
    raised_words = f"{local_raised:%a} {local_raised.day} {local_raised:%b %H:%M} {local_raised.tzname()}"
    assert f"waiting: threshold (seven_day), raised {raised_words}" in text

    # 80%, the highest threshold, is urgent: it goes at once, in quiet hours too; the note waits.
    [urgent] = run(start + 2 * HOUR, 85.0)
    assert (urgent["kind"], urgent["threshold"], urgent["urgent"]) == ("threshold", 80, True)
    assert "held through quiet hours" not in urgent["plain"]
    assert "CET" in urgent["plain"] and "UTC" not in urgent["plain"]

    # Later in quiet hours, another process: still waiting, nothing new said.
    assert run(start + 3 * HOUR, 86.0) == []
    saved = json.loads((tmp_path / "state" / "state.json").read_text())
    assert [a["kind"] for a in saved["outbox"]] == ["threshold"]
    assert "attempted_at" not in saved["outbox"][0], "never sent, so never marked as maybe in the room"

    # The first cycle after quiet hours: the note goes out, saying when it was raised.
    [note] = run(quiet_end + 2 * timedelta(minutes=1), 87.0)
    assert (note["kind"], note["threshold"], note["urgent"]) == ("threshold", 50, False)
    assert note["id"] == waiting["id"]
    assert note["plain"].endswith(f"\nRaised {raised_words}, held through quiet hours.")
    assert datetime.fromisoformat(note["created_at"]) == raised  # machine fields stay UTC
    doc, text = status(quiet_end + 3 * timedelta(minutes=1))
    assert doc["outbox"] == [] and doc["quiet_hours"]["quiet_now"] is False
    assert f"quiet hours {span} Europe/Berlin: not now" in text
