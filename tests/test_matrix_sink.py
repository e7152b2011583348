"""The Matrix sink against a real Synapse on 127.0.0.1, read back by a real nio recipient.

One homeserver for the module (~2 s to start); every test gets fresh users and a
fresh room, so tests do not see each other's messages. The recipient decrypts what
the bot sent: that, not an HTTP 200, is the proof that an alert was delivered.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from claude_matrix_bot.model import Alert
from claude_matrix_bot.settings import TrustedDevice
from claude_matrix_bot.sinks.base import DeliveryReport
from claude_matrix_bot.sinks.matrix import DEVICE_MARKER, MESSAGES_PAGES, MatrixSink
from devstack.matrix_recipient import Recipient
from devstack.synapse import Account, Homeserver

pytestmark = pytest.mark.synapse

SINK_LOGGER = "claude_matrix_bot.sinks.matrix"


@pytest.fixture(scope="module")
def admin(homeserver: Homeserver) -> Account:
    return homeserver.register("admin", admin=True)


def alert(alert_id: str, text: str | None = None) -> Alert:
    text = text or f"alert {alert_id}"
    return Alert(id=alert_id, kind="threshold", plain=text, html=f"<p><b>{text}</b></p>", bucket="seven_day")


@dataclass
class Scenario:
    """A bot invited (not yet joined) to alice's encrypted room; one store per bot device."""

    homeserver: Homeserver
    tmp: Path
    bot: Account
    alice: Account
    recipient: Recipient
    room_id: str
    secrets: list[str] = field(default_factory=list)
    recipients: list[Recipient] = field(default_factory=list)

    @property
    def creds_dir(self) -> Path:
        return self.tmp / "creds"

    @property
    def store_dir(self) -> Path:
        return self.tmp / "store"

    def sink(self, **overrides: object) -> MatrixSink:
        """A new sink, as a new process would build it (nothing shared in memory)."""
        kwargs: dict[str, object] = {
            "creds_dir": self.creds_dir,
            "room_id": self.room_id,
            "store_dir": self.store_dir,
            "timeout": 10.0,
        }
        kwargs.update(overrides)
        return MatrixSink(**kwargs)  # type: ignore[arg-type]

    def new_device(self, account: Account, name: str) -> Recipient:
        """Another logged-in device (of alice, or of a new member) with its own store."""
        device = self.homeserver.login(account)
        self.secrets.append(device.access_token)
        recipient = Recipient(self.homeserver.url, device, self.tmp / name)
        self.recipients.append(recipient)
        return recipient

    def bot_marker(self) -> dict[str, str]:
        data: dict[str, str] = json.loads((self.store_dir / DEVICE_MARKER).read_text())
        return data


@pytest.fixture
def scenario(homeserver: Homeserver, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[Scenario]:
    caplog.set_level(logging.DEBUG)
    # peewee echoes nio's SQL, pickled keys included: noise here (the app clamps it too).
    caplog.set_level(logging.INFO, logger="peewee")
    suffix = uuid.uuid4().hex[:8]
    bot = homeserver.register(f"bot-{suffix}")
    alice = homeserver.register(f"alice-{suffix}")
    bot.write_creds_dir(tmp_path / "creds", homeserver.url)
    recipient = Recipient(homeserver.url, alice, tmp_path / "alice")
    room_id = recipient.create_encrypted_room([bot.user_id])
    scene = Scenario(
        homeserver, tmp_path, bot, alice, recipient, room_id, [bot.access_token, alice.access_token], [recipient]
    )
    yield scene
    for device in scene.recipients:
        device.close()
    # Every test, whatever it does: no access token in any log record.
    for secret in scene.secrets:
        assert secret not in caplog.text


def assert_clean(report: DeliveryReport, scene: Scenario) -> None:
    for secret in scene.secrets:
        assert secret not in repr(report)
    assert "Traceback" not in (report.error or "")


# --- the happy path ---------------------------------------------------------------------


def test_invited_bot_joins_and_the_recipient_decrypts_text_and_html(scenario: Scenario) -> None:
    report = scenario.sink().deliver([alert("t-1", "seven_day crossed 50%")])

    assert report == DeliveryReport(("t-1",), error=None, requests=report.requests)
    history = scenario.recipient.history(scenario.room_id)
    assert history.undecryptable == ()
    [message] = history.decrypted
    assert message.sender == scenario.bot.user_id
    assert message.body == "seven_day crossed 50%"
    assert message.formatted_body == "<p><b>seven_day crossed 50%</b></p>"
    # Encrypted by the identity the bot published, nothing else.
    assert message.sender_key == scenario.bot_marker()["curve25519"]
    assert_clean(report, scenario)


def test_a_new_process_keeps_the_identity_and_a_warm_delivery_costs_three_requests(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    first = scenario.sink().deliver([alert("w-1")])
    marker = scenario.bot_marker()
    warm = scenario.sink().deliver([alert("w-2")])
    warm_two = scenario.sink().deliver([alert("w-3"), alert("w-4")])

    assert first.delivered == ("w-1",)
    assert warm.delivered == ("w-2",)
    assert warm_two.delivered == ("w-3", "w-4")
    assert scenario.bot_marker() == marker
    assert marker["device_id"] == scenario.bot.device_id
    # The homeserver still publishes the first identity: no second one was minted.
    assert scenario.recipient.device_keys_of(scenario.bot.user_id) == {scenario.bot.device_id: marker["ed25519"]}
    history = scenario.recipient.history(scenario.room_id)
    assert history.bodies() == ["alert w-1", "alert w-2", "alert w-3", "alert w-4"]
    assert {m.sender_key for m in history.decrypted} == {marker["curve25519"]}
    # Warm: sync + to-device (a new room key per process) + one send per alert.
    with capsys.disabled():
        print(
            f"\nmatrix requests: first delivery {first.requests}, warm 1 alert {warm.requests}, "
            f"warm 2 alerts {warm_two.requests}"
        )
    assert warm.requests == 3
    assert warm_two.requests == 4


def test_room_changes_between_deliveries_reach_the_warm_store(scenario: Scenario) -> None:
    """A recipient's new device and a new member both get the room key on the next warm
    delivery (trust on first use): device-list changes come from the incremental sync."""
    assert scenario.sink().deliver([alert("c-1")]).delivered == ("c-1",)
    phone = scenario.new_device(scenario.alice, "alice-phone")
    bob = scenario.homeserver.register(f"bob-{uuid.uuid4().hex[:6]}")
    scenario.secrets.append(bob.access_token)
    bob_device = Recipient(scenario.homeserver.url, bob, scenario.tmp / "bob")
    scenario.recipients.append(bob_device)
    scenario.recipient._run(scenario.recipient.client.room_invite(scenario.room_id, bob.user_id))
    bob_device.join(scenario.room_id)

    report = scenario.sink().deliver([alert("c-2")])

    assert report.delivered == ("c-2",)
    assert "alert c-2" in phone.history(scenario.room_id).bodies()
    assert "alert c-2" in bob_device.history(scenario.room_id).bodies()
    assert scenario.recipient.history(scenario.room_id).bodies() == ["alert c-1", "alert c-2"]


# --- failures: reported, never raised, never duplicated ---------------------------------------


def test_homeserver_outage_delays_alerts_and_the_retry_lands_exactly_once(scenario: Scenario) -> None:
    assert scenario.sink().deliver([alert("o-0")]).delivered == ("o-0",)
    batch = [alert("o-1"), alert("o-2")]

    scenario.homeserver.stop()
    try:
        down = scenario.sink().deliver(batch)
    finally:
        scenario.homeserver.start()

    assert down.delivered == ()
    assert down.error is not None
    assert "cannot reach the homeserver" in down.error
    assert down.requests >= 1
    assert_clean(down, scenario)

    again = scenario.sink().deliver(batch)
    assert again.delivered == ("o-1", "o-2")
    # A cycle that crashed before saving its outbox sends the same ids once more:
    # the transaction ids make the homeserver answer with the events it already has.
    replay = scenario.sink().deliver(batch)
    assert replay.delivered == ("o-1", "o-2")
    history = scenario.recipient.history(scenario.room_id)
    assert history.bodies() == ["alert o-0", "alert o-1", "alert o-2"]
    assert history.undecryptable == ()


def matrix_requests(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The requests the sink logged at DEBUG ("GET /_matrix/...", query strings cut off);
    the caller captures them with `caplog.at_level(logging.DEBUG, logger=SINK_LOGGER)`."""
    return [r.getMessage().split(": ", 1)[1] for r in caplog.records if r.getMessage().startswith("matrix request ")]


def test_an_attempted_alert_the_homeserver_forgot_is_found_in_the_room_and_not_sent_again(
    scenario: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    """docs/design.md §5, beyond the homeserver's memory: sent, not recorded, retried after the
    homeserver forgot the transaction id. The bot finds its own event and sends nothing."""
    sent = [alert("f-1"), alert("f-2")]
    assert scenario.sink().deliver(sent).delivered == ("f-1", "f-2")
    assert scenario.homeserver.forget_transaction_ids() >= 2
    caplog.clear()

    # f-1 as the outbox holds it after a crash between the send and saving: marked attempted.
    with caplog.at_level(logging.DEBUG, logger=SINK_LOGGER):
        retried = scenario.sink().deliver([replace(sent[0], attempted_at=1_700_000_000_000)])

    assert retried.delivered == ("f-1",) and retried.error is None
    requests = matrix_requests(caplog)
    assert sum("/messages" in r for r in requests) == 1
    assert not any(r.startswith("PUT") for r in requests), "no room key, no send"
    assert "f-1 is already in the room" in caplog.text
    # The control: f-2 unmarked (as no real outbox would hold it), so nobody looks, and
    # the homeserver that forgot posts it a second time. Without the look, so would f-1.
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger=SINK_LOGGER):
        assert scenario.sink().deliver([sent[1]]).delivered == ("f-2",)
    assert not any("/messages" in r for r in matrix_requests(caplog))
    history = scenario.recipient.history(scenario.room_id)
    assert history.bodies() == ["alert f-1", "alert f-2", "alert f-2"]
    assert history.undecryptable == ()


def test_an_attempted_alert_that_never_reached_the_room_is_sent_once(
    scenario: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    """A crash after the mark was written but before the send: looked for, not found, sent."""
    assert scenario.sink().deliver([alert("a-0")]).delivered == ("a-0",)
    caplog.clear()

    with caplog.at_level(logging.DEBUG, logger=SINK_LOGGER):
        report = scenario.sink().deliver([replace(alert("a-1"), attempted_at=1_700_000_000_000), alert("a-2")])

    assert report.delivered == ("a-1", "a-2")
    # Not found: the look goes back to the room's start (here) or MESSAGES_PAGES pages.
    looks = sum("/messages" in r for r in matrix_requests(caplog))
    assert 1 <= looks <= MESSAGES_PAGES
    assert report.requests == 4 + looks, "sync + the look + to-device + two sends"
    assert scenario.recipient.history(scenario.room_id).bodies() == ["alert a-0", "alert a-1", "alert a-2"]


def test_alerts_never_attempted_cost_no_look_in_the_room(scenario: Scenario, caplog: pytest.LogCaptureFixture) -> None:
    assert scenario.sink().deliver([alert("n-0")]).delivered == ("n-0",)
    caplog.clear()

    with caplog.at_level(logging.DEBUG, logger=SINK_LOGGER):
        warm = scenario.sink().deliver([alert("n-1"), alert("n-2")])

    assert warm.delivered == ("n-1", "n-2")
    assert not any("/messages" in r for r in matrix_requests(caplog))
    assert warm.requests == 4, "sync + to-device + two sends, as before"


def test_rate_limit_stops_at_the_first_refused_alert(scenario: Scenario, admin: Account) -> None:
    assert scenario.sink().deliver([alert("r-0")]).delivered == ("r-0",)
    batch = [alert(f"r-{n}") for n in range(1, 6)]
    scenario.homeserver.throttle_messages(admin, scenario.bot.user_id)
    try:
        limited = scenario.sink().deliver(batch)
    finally:
        scenario.homeserver.unthrottle_messages(admin, scenario.bot.user_id)

    assert limited.error is not None
    assert "rate limited" in limited.error
    assert "429 M_LIMIT_EXCEEDED" in limited.error
    # In order, stopped at the refused one: a prefix of the batch, never all of it.
    assert limited.delivered == tuple(a.id for a in batch[: len(limited.delivered)])
    assert len(limited.delivered) < len(batch)
    assert_clean(limited, scenario)
    retry = scenario.sink().deliver(batch)
    assert retry.delivered == tuple(a.id for a in batch)
    expected = ["alert r-0"] + [a.plain for a in batch]
    assert scenario.recipient.history(scenario.room_id).bodies() == expected


def test_a_kicked_bot_reports_forbidden(scenario: Scenario) -> None:
    assert scenario.sink().deliver([alert("k-0")]).delivered == ("k-0",)
    scenario.recipient.kick(scenario.room_id, scenario.bot.user_id)

    report = scenario.sink().deliver([alert("k-1")])

    assert report.delivered == ()
    assert report.error is not None
    assert "M_FORBIDDEN" in report.error
    assert "kicked" in report.error
    assert_clean(report, scenario)


def test_a_revoked_access_token_is_named_as_such(scenario: Scenario) -> None:
    assert scenario.sink().deliver([alert("u-0")]).delivered == ("u-0",)
    response = scenario.homeserver.admin_request(scenario.bot, "POST", "/_matrix/client/v3/logout", {})
    assert response.status_code == 200

    report = scenario.sink().deliver([alert("u-1")])

    assert report.delivered == ()
    assert report.error is not None
    assert "M_UNKNOWN_TOKEN" in report.error
    assert "log in again" in report.error
    assert_clean(report, scenario)


def test_bot_not_in_the_room(scenario: Scenario) -> None:
    other_room = scenario.recipient.create_encrypted_room([])

    report = scenario.sink(room_id=other_room).deliver([alert("n-1")])

    assert report.delivered == ()
    assert report.error is not None
    assert f"the bot is not in room {other_room}: invite {scenario.bot.user_id}" in report.error


def test_an_unencrypted_room_gets_nothing_in_clear_text(scenario: Scenario) -> None:
    plain_room = scenario.recipient.create_plain_room([scenario.bot.user_id])

    report = scenario.sink(room_id=plain_room).deliver([alert("p-1")])

    assert report.delivered == ()
    assert report.error is not None
    assert "not end-to-end encrypted" in report.error
    assert scenario.recipient.history(plain_room).decrypted == ()


# --- trust ------------------------------------------------------------------------------------


def test_strict_trust_sends_room_keys_to_pinned_devices_only(
    scenario: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    laptop = scenario.new_device(scenario.alice, "alice-laptop")
    pinned = TrustedDevice(scenario.alice.user_id, scenario.recipient.device_id, scenario.recipient.ed25519)

    report = scenario.sink(trusted_devices=(pinned,)).deliver([alert("s-1", "for the pinned device only")])

    assert report.delivered == ("s-1",)
    assert scenario.recipient.history(scenario.room_id).bodies() == ["for the pinned device only"]
    unpinned_view = laptop.history(scenario.room_id)
    assert unpinned_view.decrypted == ()
    assert len(unpinned_view.undecryptable) == 1
    warnings = [r.getMessage() for r in caplog.records if r.name == SINK_LOGGER and r.levelno == logging.WARNING]
    assert (
        f"not sending room keys to {scenario.alice.user_id} {laptop.device_id} (not in MATRIX_TRUSTED_DEVICES)"
        in warnings
    )


def test_a_pinned_device_with_another_key_is_refused_loudly(
    scenario: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = TrustedDevice(scenario.alice.user_id, scenario.recipient.device_id, "A" * 43)

    report = scenario.sink(trusted_devices=(wrong,)).deliver([alert("m-1")])

    assert report.delivered == ()
    assert report.error is not None
    assert "none of the MATRIX_TRUSTED_DEVICES" in report.error
    errors = [r.getMessage() for r in caplog.records if r.name == SINK_LOGGER and r.levelno == logging.ERROR]
    assert any("PINNED DEVICE KEY MISMATCH" in m and scenario.recipient.device_id in m for m in errors)
    assert scenario.recipient.history(scenario.room_id).decrypted == ()


# --- the E2EE trap: a device id without its key store -----------------------------------------------


def _store_files(store_dir: Path, account: Account) -> list[Path]:
    return sorted(store_dir.glob(f"{account.user_id}_{account.device_id}*"))


def test_a_lost_key_store_is_refused_without_minting_a_new_identity(scenario: Scenario) -> None:
    assert scenario.sink().deliver([alert("g-0")]).delivered == ("g-0",)
    published = scenario.recipient.device_keys_of(scenario.bot.user_id)
    for path in _store_files(scenario.store_dir, scenario.bot):
        path.unlink()

    report = scenario.sink().deliver([alert("g-1")])

    assert report.delivered == ()
    assert report.error is not None
    assert f"the key store for Matrix device {scenario.bot.device_id} is missing" in report.error
    assert "unable to decrypt" in report.error
    assert "claude-matrix-bot matrix-login" in report.error
    assert report.requests == 0
    assert _store_files(scenario.store_dir, scenario.bot) == []
    assert scenario.recipient.device_keys_of(scenario.bot.user_id) == published


def test_a_device_that_published_keys_elsewhere_is_refused_on_an_empty_store(scenario: Scenario) -> None:
    assert scenario.sink().deliver([alert("e-0")]).delivered == ("e-0",)
    published = scenario.recipient.device_keys_of(scenario.bot.user_id)

    # Everything gone, device.json included (say, a new bucket): the server remembers.
    report = scenario.sink(store_dir=scenario.tmp / "empty-store").deliver([alert("e-1")])

    assert report.delivered == ()
    assert report.error is not None
    assert f"Matrix device {scenario.bot.device_id} already published encryption keys" in report.error
    assert "unable to decrypt" in report.error
    assert _store_files(scenario.tmp / "empty-store", scenario.bot) == []
    assert scenario.recipient.device_keys_of(scenario.bot.user_id) == published


def test_a_new_login_after_losing_the_store_works_again(scenario: Scenario) -> None:
    assert scenario.sink().deliver([alert("l-0")]).delivered == ("l-0",)
    for path in _store_files(scenario.store_dir, scenario.bot):
        path.unlink()
    fresh = scenario.homeserver.login(scenario.bot)
    scenario.secrets.append(fresh.access_token)
    fresh.write_creds_dir(scenario.creds_dir, scenario.homeserver.url)

    report = scenario.sink().deliver([alert("l-1")])

    assert report.delivered == ("l-1",)
    assert scenario.bot_marker()["device_id"] == fresh.device_id
    assert scenario.recipient.history(scenario.room_id).bodies() == ["alert l-0", "alert l-1"]


def test_the_store_passphrase_is_required_to_open_the_store(scenario: Scenario) -> None:
    assert scenario.sink(store_passphrase="correct horse").deliver([alert("k-0")]).delivered == ("k-0",)

    report = scenario.sink(store_passphrase="wrong").deliver([alert("k-1")])

    assert report.delivered == ()
    assert report.error is not None
    assert "MATRIX_STORE_PASSPHRASE" in report.error
    assert scenario.sink(store_passphrase="correct horse").deliver([alert("k-1")]).delivered == ("k-1",)


def test_every_file_of_the_key_store_is_readable_by_the_bot_alone(scenario: Scenario) -> None:
    # Issue 21 item 5: nio created its database 0644 under the usual umask.
    previous = os.umask(0o022)
    try:
        assert scenario.sink(store_passphrase="correct horse").deliver([alert("p-0")]).delivered == ("p-0",)
    finally:
        os.umask(previous)
    files = {path.name: stat.S_IMODE(path.stat().st_mode) for path in scenario.store_dir.iterdir() if path.is_file()}
    database = f"{scenario.bot.user_id}_{scenario.bot_marker()['device_id']}.db"
    assert database in files
    assert {name: mode for name, mode in files.items() if mode & 0o077} == {}


# --- no homeserver needed ---------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["access_token", "device_id"])
def test_incomplete_credentials_are_reported_by_name(tmp_path: Path, missing: str) -> None:
    creds = Account("@bot:localhost", "DEVICE", "secret-token-value", "pw").write_creds_dir(
        tmp_path / "creds", "http://127.0.0.1:9"
    )
    (creds / missing).unlink()

    report = MatrixSink(creds, "!room:localhost", tmp_path / "store").deliver([alert("x-1")])

    assert report.delivered == ()
    assert report.error is not None
    assert missing in report.error
    assert report.requests == 0
    assert "secret-token-value" not in repr(report)


def test_nothing_to_deliver_costs_nothing(tmp_path: Path) -> None:
    report = MatrixSink(tmp_path / "no-creds", "!room:localhost", tmp_path / "store").deliver([])
    assert report == DeliveryReport(())
    assert not (tmp_path / "store").exists()


def test_importing_the_sink_does_not_import_nio() -> None:
    code = "import sys, claude_matrix_bot.sinks.matrix; print('nio' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


class _BrokenHomeserver(BaseHTTPRequestHandler):
    """A proxy in front of a dead Synapse: 502 with an HTML page, or no answer at all."""

    mode = "502"

    def _answer(self) -> None:
        if self.mode == "hang":
            time.sleep(3)
            return
        body = b"<html><body>502 Bad Gateway</body></html>"
        self.send_response(502)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("502", "the homeserver failed (HTTP 502)"), ("hang", "did not answer in time")],
)
def test_a_broken_homeserver_is_reported_in_words(tmp_path: Path, mode: str, expected: str) -> None:
    handler = type("Handler", (_BrokenHomeserver,), {"mode": mode})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        creds = Account("@bot:localhost", "DEVICE", "secret-token-value", "pw").write_creds_dir(tmp_path / "c", url)
        # Short only where nothing will answer: a 502 slower than 0.5 s on a loaded machine
        # would have read as a timeout.
        sink = MatrixSink(creds, "!room:localhost", tmp_path / "store", timeout=0.5 if mode == "hang" else 10.0)

        report = sink.deliver([alert("b-1")])
    finally:
        server.shutdown()
        server.server_close()

    assert report.delivered == ()
    assert report.error is not None
    assert expected in report.error
    assert report.requests >= 1
    assert "secret-token-value" not in repr(report)
    assert "secret-token-value" not in repr(sink)
