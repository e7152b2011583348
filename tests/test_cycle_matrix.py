"""The production path end to end: `python -m claude_matrix_bot run` with the Matrix
sink, a real Synapse, the fake Anthropic API, and a recipient that decrypts (issue 3).

Proves: the invited bot joins and its alerts decrypt; later processes reuse the same
device; a quiet cycle needs no homeserver at all; an outage delays an alert, which
then arrives once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devstack.fakes.anthropic import FakeAnthropic
from devstack.stack import Stack
from devstack.synapse import Homeserver
from tests.helpers import assert_no_secrets, issued_secrets, payload, run_cli

pytestmark = pytest.mark.synapse

T0 = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
RESET = T0 + timedelta(days=3)
FIVE = (10.0, T0 + timedelta(hours=4))


def test_alerts_reach_the_encrypted_room_once(homeserver: Homeserver, tmp_path: Path, anthropic: FakeAnthropic) -> None:
    stack = Stack.build(tmp_path, homeserver, anthropic, bot_name="watchbot", unique=True)
    bot, recipient, room = stack.bot, stack.recipient, stack.room_id
    try:
        env = stack.env()
        outputs: list[str] = []

        def run(minutes: int, weekly: float, code: int = 0) -> None:
            anthropic.set_usage(payload(five_hour=FIVE, weekly={"seven_day": (weekly, RESET)}), jitter=True)
            result = run_cli(env, "run", now=T0 + timedelta(minutes=minutes))
            outputs.extend([result.stdout, result.stderr])
            assert result.code == code, result.stderr
            assert "Traceback" not in result.stderr

        # First run: the bot was only invited; it joins and posts the baseline.
        run(0, 30.0)
        history = recipient.history(room)
        assert history.undecryptable == ()
        assert len(history.decrypted) == 1
        armed = history.decrypted[0]
        assert armed.sender == bot.user_id
        assert "Claude usage watch armed" in armed.body
        assert armed.formatted_body and "<b>" in armed.formatted_body
        device_file = tmp_path / "state" / "nio" / "device.json"
        identity = json.loads(device_file.read_text()) if device_file.exists() else None

        # A quiet cycle does not talk to Matrix at all: it succeeds with the homeserver down.
        homeserver.stop()
        try:
            run(5, 31.0)
        finally:
            homeserver.start()

        # A new process later: same device, still decryptable.
        run(10, 52.0)
        history = recipient.history(room)
        assert history.undecryptable == ()
        assert [m.body.splitlines()[0] for m in history.decrypted][1:] == ["🟠 Weekly (all models) usage passed 50%"]
        assert history.decrypted[1].sender_key == armed.sender_key, "the bot kept its device identity"
        if identity is not None:
            assert json.loads(device_file.read_text()) == identity

        # Outage: the 80% alert is kept, the run fails without a traceback...
        homeserver.stop()
        try:
            run(15, 81.0, code=1)
            status = run_cli(env, "status", "--json", now=T0 + timedelta(minutes=16))
            pending = json.loads(status.stdout)["outbox"]
            assert [p["kind"] for p in pending] == ["threshold"]
        finally:
            homeserver.start()

        # ...and the next run delivers it, once.
        run(20, 81.5)
        run(25, 82.0)
        history = recipient.history(room)
        assert history.undecryptable == ()
        eighty = [m for m in history.decrypted if "passed 80%" in m.body]
        assert len(eighty) == 1
        assert len(history.decrypted) == 3

        assert_no_secrets(issued_secrets(anthropic) | {bot.access_token}, *outputs)
    finally:
        recipient.close()
