"""Fault catalogue, Matrix rows (issue 7): the whole cycle (`python -m claude_matrix_bot run`
with ALERT_SINK=matrix, a subprocess) against a real Synapse, with a loopback proxy in
front of it that breaks room sends on demand. A recipient device decrypts the room's
history: a message that decrypts once, and only once, is the proof.

`MatrixProxy` and the `MatrixScene` fixture are reused by test_faults_process.py and
test_no_secrets.py.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.anthropic import FakeAnthropic
from tests.helpers import CliResult, assert_no_secrets, bot_env, issued_secrets, payload, run_cli
from tests.matrix_recipient import Recipient
from tests.synapse import Account, Homeserver

pytestmark = pytest.mark.synapse

T0 = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
RESET = T0 + timedelta(days=3)
FIVE = (10.0, T0 + timedelta(hours=4))
SEND_MARK = "/send/"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}


# --- a proxy that breaks room sends ------------------------------------------------------


@dataclass
class SendFault:
    """What the proxy does with the next `times` room sends.

    mode: "status" answers `status`/`body` without forwarding; "drop_after" forwards to
    Synapse (which stores the event) and closes the connection without an answer, as a
    timeout after the server accepted would; "hold_before" parks the request without
    forwarding; "hold_after" forwards, then parks the answer. Parked requests wait for
    `MatrixProxy.release()` and then close without an answer.
    """

    mode: str
    status: int = 502
    body: dict[str, Any] = field(default_factory=dict)
    times: int = 1


class MatrixProxy:
    """HTTP on 127.0.0.1 forwarding to a homeserver; room sends can be broken."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = 0
        self._lock = threading.Lock()
        self._faults: list[SendFault] = []
        self._released = threading.Event()
        self.parked = threading.Event()  # set when a send is parked
        self.forwarded_sends: list[str] = []  # txn ids Synapse received through us
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MatrixProxy:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _proxy_handler(self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Close the port: the homeserver is down as far as the bot can tell."""
        server, self._server = self._server, None
        if server is not None:
            self.release()
            server.shutdown()
            server.server_close()

    def break_sends(self, fault: SendFault) -> None:
        with self._lock:
            self._released.clear()
            self.parked.clear()
            self._faults.append(fault)

    def release(self) -> None:
        self._released.set()

    def heal(self) -> None:
        """Forget the faults not used yet."""
        with self._lock:
            self._faults.clear()

    def _take(self) -> SendFault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.times -= 1
            if fault.times <= 0:
                self._faults.pop(0)
            return fault


def _proxy_handler(proxy: MatrixProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _forward(self, body: bytes) -> httpx.Response:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            return httpx.request(self.command, proxy.upstream + self.path, headers=headers, content=body, timeout=30)

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for key, value in headers.items():
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _park(self) -> None:
            proxy.parked.set()
            proxy._released.wait(60)
            self.close_connection = True

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fault = proxy._take() if SEND_MARK in self.path and self.command == "PUT" else None
            if fault is not None and fault.mode == "status":
                self._answer(fault.status, {"Content-Type": "application/json"}, json.dumps(fault.body).encode())
                return
            if fault is not None and fault.mode == "hold_before":
                self._park()
                return
            try:
                response = self._forward(body)
            except httpx.HTTPError:
                self.close_connection = True
                return
            if SEND_MARK in self.path and response.status_code == 200:
                proxy.forwarded_sends.append(self.path.rsplit("/", 1)[-1].split("?")[0])
            if fault is not None and fault.mode == "drop_after":
                self.close_connection = True
                return
            if fault is not None and fault.mode == "hold_after":
                self._park()
                return
            self._answer(response.status_code, dict(response.headers), response.content)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def homeserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Homeserver]:
    server = Homeserver(tmp_path_factory.mktemp("synapse-faults"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class MatrixScene:
    """A bot already armed in alice's encrypted room, reaching Synapse through `proxy`."""

    homeserver: Homeserver
    proxy: MatrixProxy
    anthropic: FakeAnthropic
    tmp: Path
    bot: Account
    alice: Account
    recipient: Recipient
    room_id: str
    env: dict[str, str]
    outputs: list[str] = field(default_factory=list)
    devices: list[Recipient] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        return self.tmp / "state"

    @property
    def nio_db(self) -> Path:
        return self.state_dir / "nio" / f"{self.bot.user_id}_{self.bot.device_id}.db"

    def set_usage(self, weekly: float) -> None:
        self.anthropic.set_usage(payload(five_hour=FIVE, weekly={"seven_day": (weekly, RESET)}), jitter=True)

    def run(self, minutes: int, weekly: float | None = None, *, code: int = 0) -> CliResult:
        if weekly is not None:
            self.set_usage(weekly)
        result = run_cli(self.env, "run", now=T0 + timedelta(minutes=minutes))
        self.outputs.extend([result.stdout, result.stderr])
        assert result.code == code, result.stderr
        assert "Traceback" not in result.stderr
        return result

    def status(self, minutes: int) -> dict[str, Any]:
        result = run_cli(self.env, "status", "--json", now=T0 + timedelta(minutes=minutes))
        self.outputs.extend([result.stdout, result.stderr])
        doc: dict[str, Any] = json.loads(result.stdout)
        return doc

    def pending(self) -> list[str]:
        doc = json.loads((self.state_dir / "state.json").read_text())
        return [a["kind"] for a in doc["outbox"]]

    def bodies(self, reader: Recipient | None = None) -> list[str]:
        history = (reader or self.recipient).history(self.room_id)
        assert history.undecryptable == (), "every alert decrypts"
        return [m.body for m in history.decrypted]

    def count(self, needle: str, reader: Recipient | None = None) -> int:
        return sum(needle in body for body in self.bodies(reader))

    def published_bot_keys(self) -> dict[str, str]:
        return self.recipient.device_keys_of(self.bot.user_id)

    def secrets(self) -> set[str]:
        return issued_secrets(self.anthropic) | {self.bot.access_token, self.alice.access_token}


def make_scene(homeserver: Homeserver, anthropic: FakeAnthropic, tmp_path: Path, **extra_env: str) -> MatrixScene:
    suffix = uuid.uuid4().hex[:8]
    bot = homeserver.register(f"faultbot-{suffix}")
    alice = homeserver.register(f"alice-{suffix}")
    proxy = MatrixProxy(homeserver.url).start()
    creds = bot.write_creds_dir(tmp_path / "matrix-bot", proxy.url)
    recipient = Recipient(homeserver.url, alice, tmp_path / "alice-store")
    room = recipient.create_encrypted_room([bot.user_id])
    anthropic.write_tokens_dir(tmp_path / "tokens")
    env = bot_env(
        tmp_path,
        anthropic.base_url,
        anthropic.token_url,
        ALERT_SINK="matrix",
        MATRIX_ROOM_ID=room,
        MATRIX_CREDS_DIR=str(creds),
        **extra_env,
    )
    return MatrixScene(homeserver, proxy, anthropic, tmp_path, bot, alice, recipient, room, env)


@contextlib.contextmanager
def armed_scene(homeserver: Homeserver, anthropic: FakeAnthropic, tmp_path: Path) -> Iterator[MatrixScene]:
    """A scene whose first run joined the room and posted the baseline (50% already past)."""
    s = make_scene(homeserver, anthropic, tmp_path)
    try:
        s.run(0, 60.0)
        assert s.count("armed") == 1
        yield s
        assert_no_secrets(s.secrets(), *s.outputs)
    finally:
        s.proxy.stop()
        for device in (s.recipient, *s.devices):
            device.close()


@pytest.fixture
def scene(homeserver: Homeserver, anthropic: FakeAnthropic, tmp_path: Path) -> Iterator[MatrixScene]:
    with armed_scene(homeserver, anthropic, tmp_path) as s:
        yield s


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


def test_connection_lost_after_the_server_accepted_is_retried_with_the_same_txn_id(scene: MatrixScene) -> None:
    """The answer to a send never arrives (what a timeout mid-send looks like to the client):
    nio retries once with the same transaction id, Synapse recognises it, the room shows one."""
    scene.proxy.break_sends(SendFault("drop_after"))
    scene.run(5, 81.0)
    assert scene.count("passed 80%") == 1
    assert scene.pending() == []
    sent = scene.proxy.forwarded_sends
    assert len(sent) == 3 and sent[-1] == sent[-2], "the same txn id twice"


def test_every_answer_lost_then_the_next_run_resends_once(scene: MatrixScene) -> None:
    # More than nio's one retry (and aiohttp's own retry on a reused connection) absorb.
    scene.proxy.break_sends(SendFault("drop_after", times=10))
    failed = scene.run(5, 81.0, code=1)
    assert "homeserver" in failed.stderr
    assert scene.pending() == ["threshold"], "not known to be delivered: kept"
    scene.proxy.heal()
    scene.run(10, 81.5)
    sent = scene.proxy.forwarded_sends[1:]
    assert len(sent) >= 3 and len(set(sent)) == 1, "Synapse got the one txn id several times"
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
