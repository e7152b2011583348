"""Fault catalogue, Matrix rows (issue 7): the whole cycle (`python -m claude_matrix_bot run`
with ALERT_SINK=matrix, a subprocess) against a real Synapse, with a loopback proxy in
front of it that breaks room sends on demand (devstack.matrix_proxy). A recipient device
decrypts the room's history: a message that decrypts once, and only once, is the proof.

The scene (tests/matrix_scene.py) and its `scene` fixture (tests/conftest.py) are shared
with test_faults_process.py and test_no_secrets.py.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from devstack.fakes.anthropic import FakeAnthropic
from devstack.matrix_proxy import SendFault
from devstack.matrix_recipient import Recipient
from devstack.synapse import Homeserver
from tests.helpers import assert_no_secrets, run_cli
from tests.matrix_scene import T0, MatrixScene, make_scene

pytestmark = pytest.mark.synapse


# --- delivery faults: the alert waits in the outbox and arrives exactly once ------------------


def test_homeserver_down_delays_the_alert_and_status_shows_it(scene: MatrixScene) -> None:
    scene.proxy.stop()
    failed = scene.run(5, 81.0, code=1)
    assert "cannot reach the homeserver" in failed.stderr
    assert scene.pending() == ["threshold"]
    status = scene.status(6)
    assert [p["kind"] for p in status["outbox"]] == ["threshold"]
    scene.proxy.start()  # the same port again
    scene.run(10, 81.5)
    scene.run(15, 82.0)
    assert scene.count("passed 80%") == 1
    assert scene.pending() == []


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        (SendFault("status", 502, {"errcode": "M_UNKNOWN", "error": "bad gateway"}), "HTTP 502"),
        (SendFault("status", 500, {}), "HTTP 500"),
        (
            SendFault("status", 429, {"errcode": "M_LIMIT_EXCEEDED", "error": "Too many", "retry_after_ms": 2000}),
            "429 M_LIMIT_EXCEEDED, retry after 2s",
        ),
    ],
    ids=["502", "500", "429-M_LIMIT_EXCEEDED"],
)
def test_send_refused_keeps_the_alert_and_the_retry_lands_once(scene: MatrixScene, fault: SendFault, says: str) -> None:
    scene.proxy.break_sends(fault)
    failed = scene.run(5, 81.0, code=1)
    assert says in failed.stderr
    assert scene.pending() == ["threshold"]
    assert scene.count("passed 80%") == 0
    scene.run(10, 81.5)
    assert scene.count("passed 80%") == 1
    assert scene.pending() == []


# What nginx or a load balancer answers while Synapse restarts: not JSON.
HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
ROOM_KEY_SEND = "/sendToDevice/m.room.encrypted/"


def test_room_key_refused_with_an_html_502_keeps_the_alert_and_the_retry_decrypts(scene: MatrixScene) -> None:
    """nio reads any body that is not JSON as `{}`, a valid to-device success: only the
    HTTP status tells the room key never reached anyone (issue 21 item 9)."""
    scene.proxy.break_sends(SendFault("status", 502, HTML_502, mark=ROOM_KEY_SEND))
    failed = scene.run(5, 81.0, code=1)
    assert [f.split(" ")[0] for f in scene.proxy.faulted] == ["PUT"], "the room key was refused once"
    assert "room key" in failed.stderr and "HTTP 502" in failed.stderr
    assert scene.pending() == ["threshold"], "nothing nobody can read was counted as delivered"
    assert scene.count("passed 80%") == 0  # bodies(): nothing undecryptable in the room either
    scene.run(10, 81.5)
    assert scene.count("passed 80%") == 1, "the retry went out under a new room key that arrived"
    assert scene.pending() == []


def test_connection_lost_after_the_server_accepted_is_retried_with_the_same_txn_id(scene: MatrixScene) -> None:
    """The answer to a send never arrives (what a timeout mid-send looks like to the client):
    nio retries once with the same transaction id, Synapse recognises it, the room shows one."""
    scene.proxy.break_sends(SendFault("drop_after"))
    scene.run(5, 81.0)
    assert scene.count("passed 80%") == 1
    assert scene.pending() == []
    sent = scene.proxy.forwarded_sends
    assert len(sent) == 3 and sent[-1] == sent[-2], "the same txn id twice"


def test_every_answer_lost_then_the_next_run_finds_it_in_the_room(scene: MatrixScene) -> None:
    # More than nio's one retry (and aiohttp's own retry on a reused connection) absorb.
    scene.proxy.break_sends(SendFault("drop_after", times=10))
    failed = scene.run(5, 81.0, code=1)
    assert "homeserver" in failed.stderr
    assert scene.pending() == ["threshold"], "not known to be delivered: kept"
    tried = len(scene.proxy.forwarded_sends)
    scene.proxy.heal()
    scene.run(10, 81.5)
    sent = scene.proxy.forwarded_sends[1:]
    assert len(sent) >= 3 and len(set(sent)) == 1, "Synapse got the one txn id several times"
    # Attempted, so the next run looked among the bot's events first (docs/design.md §5): found.
    assert len(scene.proxy.forwarded_sends) == tried, "not sent again"
    assert scene.count("passed 80%") == 1, "the room shows it once"
    assert scene.pending() == []


def test_kicked_bot_says_so_keeps_the_alert_and_rejoins_on_invite(scene: MatrixScene) -> None:
    scene.recipient.kick(scene.room_id, scene.bot.user_id)
    failed = scene.run(5, 81.0, code=1)
    assert "kicked" in failed.stderr or "not in room" in failed.stderr
    assert scene.pending() == ["threshold"]
    scene.recipient._run(scene.recipient.client.room_invite(scene.room_id, scene.bot.user_id))
    scene.run(10, 81.5)
    assert scene.count("passed 80%") == 1


def test_a_members_new_device_decrypts_the_next_alert(scene: MatrixScene) -> None:
    phone = Recipient(scene.homeserver.url, scene.homeserver.login(scene.alice), scene.tmp / "alice-phone")
    scene.devices.append(phone)
    scene.run(5, 81.0)
    seen = phone.history(scene.room_id)
    # The baseline predates the phone (Matrix gives no device the keys to its past); the alert does not.
    assert [m.body for m in seen.decrypted if "passed 80%" in m.body] != []
    assert len(seen.undecryptable) == 1
    assert scene.count("passed 80%") == 1


@pytest.mark.parametrize("damage", ["deleted", "corrupt"])
def test_damaged_key_store_is_refused_without_minting_a_new_identity(scene: MatrixScene, damage: str) -> None:
    published = scene.published_bot_keys()
    marker = (scene.state_dir / "nio" / "device.json").read_text()
    if damage == "deleted":
        scene.nio_db.unlink()
    else:
        scene.nio_db.write_bytes(b"this is not a SQLite database" * 100)
    failed = scene.run(5, 81.0, code=1)
    says = "is missing" if damage == "deleted" else "cannot open the Matrix key store"
    assert says in failed.stderr
    assert "log in again" in failed.stderr or "MATRIX_STORE_PASSPHRASE" in failed.stderr
    assert scene.published_bot_keys() == published, "no new identity was published"
    assert (scene.state_dir / "nio" / "device.json").read_text() == marker
    assert scene.pending() == ["threshold"], "the alert waits for a repaired store"
    assert scene.count("passed 80%") == 0


def test_corrupt_state_is_moved_aside_and_the_room_hears_the_rearm(scene: MatrixScene) -> None:
    (scene.state_dir / "state.json").write_bytes(b'{"schema": 2, "buckets": [oops')
    scene.run(5, 40.0)
    rearmed = [b for b in scene.bodies() if "re-armed" in b]
    assert len(rearmed) == 1 and "moved aside" in rearmed[0]
    assert len(list(scene.state_dir.glob("state.json.corrupt-*"))) == 1


# --- health signals ---------------------------------------------------------------------


def test_degraded_then_recovered_in_the_room(homeserver: Homeserver, anthropic: FakeAnthropic, tmp_path: Path) -> None:
    scene = make_scene(homeserver, anthropic, tmp_path, HEALTH_FAILURES="2")
    try:
        scene.run(0, 30.0)
        # The access token is revoked and the refresh token refused: only a person can fix that.
        anthropic.revoke()
        anthropic.fail_next("token", 400, body={"error": "invalid_grant"}, times=3)
        scene.run(5, code=1)
        assert scene.count("failing") == 0, "one failure is not an episode"
        scene.run(10, code=1)
        scene.run(15, code=1)
        degraded = [b for b in scene.bodies() if "is failing" in b]
        assert len(degraded) == 1, "once per episode"
        assert "invalid_grant" in degraded[0] and "What to do: re-bootstrap" in degraded[0]
        status = run_cli(scene.env, "status", now=T0 + timedelta(minutes=16))
        assert "FAILING: 3 run(s) in a row (degraded alert sent)" in status.stdout
        scene.run(20, 31.0)  # the next refresh works again
        recovered = [b for b in scene.bodies() if "recovered" in b]
        assert len(recovered) == 1 and "3 failed runs" in recovered[0]
        assert_no_secrets(scene.secrets(), *scene.outputs, status.stdout)
    finally:
        scene.proxy.stop()
        scene.recipient.close()


def test_failures_that_cannot_reach_the_room_show_in_status_and_exit_code(
    homeserver: Homeserver, anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    scene = make_scene(homeserver, anthropic, tmp_path, HEALTH_FAILURES="2")
    try:
        scene.run(0, 30.0)
        scene.proxy.stop()  # the homeserver is gone too
        anthropic.fail_next("usage", 503, times=3)
        for minutes in (5, 10, 15):
            scene.run(minutes, code=1)
        status = scene.status(16)
        assert status["health"]["consecutive_failures"] == 3 and status["health"]["degraded"]
        assert "503" in status["health"]["last_error"]
        assert [p["kind"] for p in status["outbox"]] == ["degraded"], "waiting for the room"
        scene.proxy.start()
        scene.run(20, 31.0)
        bodies = scene.bodies()
        assert sum("is failing" in b for b in bodies) == 1 and sum("recovered" in b for b in bodies) == 1
        assert scene.pending() == []
    finally:
        scene.proxy.stop()
        scene.recipient.close()
