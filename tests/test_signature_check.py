"""The signature self-check (issue 25): after signing its device the bot asks the homeserver
for its own keys and checks that the self-signing signature is visible, and reads
`failures` in the upload's answer. A homeserver that drops the upload (answers
`{"failures": {}}` and keeps nothing) or reports failures inside a 200 makes Element hide
the alerts: that is a degraded condition named in `status` and in the room, never a
silent pass. Against a real Synapse, through the fault proxy (devstack.matrix_proxy).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from claude_matrix_bot.cli import main as cli_main
from claude_matrix_bot.model import Alert
from claude_matrix_bot.settings import load_settings
from claude_matrix_bot.sinks.identity_record import IDENTITY_FILE, identity_report
from claude_matrix_bot.sinks.matrix import MatrixSink
from claude_matrix_bot.status import collect, format_status
from devstack.crosssigning_check import assert_chain, keys_query
from devstack.matrix_proxy import MatrixProxy, SendFault
from devstack.matrix_recipient import Recipient
from devstack.synapse import Account, Homeserver

pytestmark = pytest.mark.synapse

SIGNATURE_UPLOAD = "/_matrix/client/v3/keys/signatures/upload"
HIDDEN = "Element may hide these alerts"
SINK_LOGGER = "claude_matrix_bot.sinks.matrix"


def alert(alert_id: str, kind: str = "threshold") -> Alert:
    return Alert(id=alert_id, kind=kind, plain=f"alert {alert_id}", html=f"<p>alert {alert_id}</p>")  # type: ignore[arg-type]


def dropped() -> SendFault:
    """The upload answered as a success and never forwarded: the homeserver keeps nothing."""
    return SendFault("status", 200, {"failures": {}}, mark=SIGNATURE_UPLOAD, method="POST")


@dataclass
class Room:
    homeserver: Homeserver
    proxy: MatrixProxy
    bot: Account
    alice: Account
    recipient: Recipient
    room_id: str
    tmp: Path

    def sink(self) -> MatrixSink:
        return MatrixSink(self.tmp / "creds", self.room_id, self.tmp / "store", timeout=10)

    def report(self) -> dict[str, Any]:
        report = identity_report((self.tmp / "store" / IDENTITY_FILE).read_bytes())
        assert report is not None
        return report


@pytest.fixture
def room(homeserver: Homeserver, tmp_path: Path) -> Iterator[Room]:
    """alice's encrypted room with the bot invited; the bot reaches Synapse through a proxy."""
    suffix = uuid.uuid4().hex[:8]
    bot = homeserver.register(f"bot-{suffix}")
    alice = homeserver.register(f"alice-{suffix}")
    proxy = MatrixProxy(homeserver.url).start()
    bot.write_creds_dir(tmp_path / "creds", proxy.url)
    recipient = Recipient(homeserver.url, alice, tmp_path / "alice")
    room_id = recipient.create_encrypted_room([bot.user_id])
    try:
        yield Room(homeserver, proxy, bot, alice, recipient, room_id, tmp_path)
    finally:
        proxy.stop()
        recipient.close()


def test_a_dropped_signature_upload_is_named_in_status_and_the_room_then_repaired(
    room: Room, caplog: pytest.LogCaptureFixture
) -> None:
    room.proxy.break_sends(dropped())

    first = room.sink().deliver([alert("s-1", "armed")])

    assert first.delivered == ("s-1",) and first.error is None, "the alerts still go out"
    assert room.proxy.faulted == [f"POST {SIGNATURE_UPLOAD}"]
    report = room.report()
    assert HIDDEN in report["signature_problem"] and "does not publish it" in report["signature_problem"]
    assert report["signed_devices"] == [], "not signed as far as anyone can see"
    [body] = room.recipient.history(room.room_id).bodies()
    assert body.startswith("alert s-1") and HIDDEN in body
    errors = [r.getMessage() for r in caplog.records if r.name == SINK_LOGGER and r.levelno == logging.ERROR]
    assert any(HIDDEN in message for message in errors)

    second = room.sink().deliver([alert("s-2")])  # the next delivery signs again: it lands now

    assert second.delivered == ("s-2",)
    assert "signature_problem" not in room.report()
    assert room.report()["signed_devices"] == [room.bot.device_id]
    assert_chain(keys_query(room.homeserver, room.alice, room.bot.user_id), room.bot.user_id, room.bot.device_id)
    assert room.recipient.history(room.room_id).bodies()[1] == "alert s-2"


def test_failures_inside_a_200_answer_are_read_and_named(room: Room) -> None:
    refused = {"status": 400, "errcode": "M_INVALID_SIGNATURE", "message": "Invalid signature"}
    room.proxy.break_sends(
        SendFault(
            "status",
            200,
            {"failures": {room.bot.user_id: {room.bot.device_id: refused}}},
            mark=SIGNATURE_UPLOAD,
            method="POST",
        )
    )

    report = room.sink().deliver([alert("f-1")])

    assert report.delivered == ("f-1",) and report.error is None
    problem = room.report()["signature_problem"]
    assert "M_INVALID_SIGNATURE" in problem and HIDDEN in problem
    [body] = room.recipient.history(room.room_id).bodies()
    assert HIDDEN in body and "M_INVALID_SIGNATURE" in body


def test_matrix_login_checks_the_signature_and_status_names_a_missing_one(
    room: Room, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    localpart = f"login-{uuid.uuid4().hex[:8]}"
    bot = room.homeserver.register(localpart)
    (room.tmp / "password").write_text(bot.password + "\n")
    creds, state = room.tmp / "login-creds", room.tmp / "state"
    monkeypatch.setenv("MATRIX_CREDS_DIR", str(creds))
    monkeypatch.setenv("STATE_URL", f"file://{state}")
    monkeypatch.setenv("MATRIX_PASSWORD_FILE", str(room.tmp / "password"))
    argv = ["matrix-login", "--homeserver", room.proxy.url, "--user", localpart]
    room.proxy.break_sends(dropped())

    assert cli_main(argv) == 1
    failed = capsys.readouterr()
    assert HIDDEN in failed.err
    snapshot = collect(load_settings({"LOCAL_MODE": "1", "ALERT_SINK": "stdout", "STATE_URL": f"file://{state}"}))
    assert HIDDEN in snapshot.to_json()["matrix_identity"]["signature_problem"]
    assert HIDDEN in format_status(snapshot)

    assert cli_main(argv) == 0  # the same device, signed again: visible this time
    device_id = (creds / "device_id").read_text().strip()
    assert_chain(keys_query(room.homeserver, bot, bot.user_id), bot.user_id, device_id)
    snapshot = collect(load_settings({"LOCAL_MODE": "1", "ALERT_SINK": "stdout", "STATE_URL": f"file://{state}"}))
    assert "signature_problem" not in snapshot.to_json()["matrix_identity"]
    assert HIDDEN not in format_status(snapshot)
