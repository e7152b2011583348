"""The human side of the Matrix tests on Element's own crypto.

Element (Web, Desktop, and through the same Rust core, the mobile apps) judges a
message by cross-signing: matrix-nio, the other recipient of the suite, does not. This
module drives `tests/js/recipient.mjs`, one Node.js process per device, running
matrix-js-sdk with its Rust crypto (`@matrix-org/matrix-sdk-crypto-wasm`) against the
test homeserver. The versions are pinned by `tests/js/package-lock.json`, Node.js
included: the registry's `node-linux-<arch>` package (an optional dependency, installed
for the machine's platform only) puts a pinned Node 22 in `node_modules/.bin/node`,
beside whatever Node the machine has (the system npm only installs). `npm ci` runs by
itself when `node_modules` is missing or was installed from another lock file, and the
installed tree stays as the cache until the lock changes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JS_DIR = Path(__file__).resolve().parent / "js"
LOCK = JS_DIR / "package-lock.json"
# What `npm ci` was run from: a lock file change means a reinstall.
INSTALLED_FROM = JS_DIR / "node_modules" / ".installed-from-lock"
# The pinned Node (tests/js/package.json's optionalDependencies), never the system one.
NODE = JS_DIR / "node_modules" / ".bin" / "node"
ANSWER_TIMEOUT = 120.0


class ElementError(RuntimeError):
    """The JS side answered a command with an error."""


def _lock_digest() -> str:
    return hashlib.sha256(LOCK.read_bytes()).hexdigest()


def ensure_installed() -> None:
    """`npm ci` when node_modules is missing or stale (a fresh clone, a new lock file)."""
    if INSTALLED_FROM.exists() and INSTALLED_FROM.read_text().strip() == _lock_digest() and NODE.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to install the Element recipient tests (any Node.js with npm)")
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"npm ci in {JS_DIR} failed:\n{result.stdout}\n{result.stderr}")
    if not NODE.exists():
        raise RuntimeError(f"npm ci installed no pinned Node for this platform ({NODE} missing): tests/js/package.json")
    INSTALLED_FROM.write_text(_lock_digest() + "\n")


def versions() -> dict[str, str]:
    """The versions the tests actually run against (for reports)."""
    out = {}
    for package in ("matrix-js-sdk", "@matrix-org/matrix-sdk-crypto-wasm"):
        manifest = JS_DIR / "node_modules" / package / "package.json"
        out[package] = json.loads(manifest.read_text())["version"]
    node = subprocess.run([str(NODE), "--version"], capture_output=True, text=True, check=True)
    out["node"] = node.stdout.strip()
    return out


@dataclass(frozen=True, slots=True)
class ElementMessage:
    event_id: str
    decrypted: bool
    sender_device: str | None = None
    body: str | None = None
    formatted_body: str | None = None
    # Element's shield: "NONE", "GREY" or "RED", and why (EventShieldReason), for decrypted events.
    shield: str | None = None
    shield_reason: str | None = None
    # Why not (DecryptionFailureCode), for the others.
    failure: str | None = None
    msgtype: str | None = None
    # An m.image's encrypted media (`file`: url, key, iv, hashes), its `info`, and a plain
    # `url` (which encrypted media must not have).
    file: dict[str, Any] | None = None
    info: dict[str, Any] | None = None
    url: str | None = None
    # The decrypted content's `m.mentions` (None: the event carries none).
    mentions: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ElementImage:
    """An encrypted image as Element fetched and decrypted it."""

    data: bytes = field(repr=False)
    sha256: str  # of the decrypted bytes, hex
    ciphertext_sha256: str  # of what the homeserver served, unpadded base64 (as in `file.hashes`)


@dataclass
class ElementDevice:
    """One logged-in Element device of a user (its own process, its own Rust crypto)."""

    homeserver_url: str
    user_id: str
    password: str = field(repr=False)
    isolation: str = "all"
    device_id: str = ""
    ed25519: str = ""
    access_token: str = field(default="", repr=False)
    _process: subprocess.Popen[str] | None = field(default=None, repr=False)
    _next_id: int = 0
    _stderr: list[str] = field(default_factory=list, repr=False)

    def start(self) -> ElementDevice:
        ensure_installed()
        self._process = subprocess.Popen(
            [str(NODE), str(JS_DIR / "recipient.mjs")],
            cwd=JS_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        # Drain stderr continuously so the SDK's warnings never block the process.
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        answer = self.call(
            "login",
            homeserver=self.homeserver_url,
            user_id=self.user_id,
            password=self.password,
            isolation=self.isolation,
        )
        self.device_id = answer["device_id"]
        self.ed25519 = answer["ed25519"]
        self.access_token = answer["access_token"]
        return self

    def _drain_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        for line in self._process.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        """Everything the JS side logged (the tests check it for secrets)."""
        return "".join(self._stderr)

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        process = self._process
        assert process is not None and process.stdin is not None and process.stdout is not None
        self._next_id += 1
        process.stdin.write(json.dumps({"id": self._next_id, "op": op, **args}) + "\n")
        process.stdin.flush()
        line = _readline(process, ANSWER_TIMEOUT)
        if not line:
            raise ElementError(f"the Element device exited during {op}:\n{self.stderr[-4000:]}")
        answer = json.loads(line)
        assert answer["id"] == self._next_id, answer
        if not answer["ok"]:
            raise ElementError(f"{op}: {answer['error']}")
        result: dict[str, Any] = answer["result"]
        return result

    # --- what a person does in Element ------------------------------------------------

    def bootstrap_cross_signing(self) -> str:
        """Set up cross-signing for this user from this device; returns the master key."""
        master: str = self.call("bootstrap_cross_signing")["master"]
        return master

    def cross_sign_device(self, device_id: str) -> None:
        self.call("cross_sign_device", device_id=device_id)

    def set_isolation(self, isolation: str) -> None:
        self.call("set_isolation", isolation=isolation)
        self.isolation = isolation

    def create_encrypted_room(self, invite: list[str]) -> str:
        room_id: str = self.call("create_room", invite=invite)["room_id"]
        return room_id

    def invite(self, room_id: str, user_id: str) -> None:
        self.call("invite", room_id=room_id, user_id=user_id)

    def join(self, room_id: str) -> None:
        self.call("join", room_id=room_id)

    def device_status(self, user_id: str, device_id: str) -> dict[str, Any]:
        return self.call("device_status", user_id=user_id, device_id=device_id)

    def messages(self, room_id: str, sender: str, count: int) -> list[ElementMessage]:
        """The room's encrypted events from `sender` (at least `count`), as Element shows them."""
        answer = self.call("messages", room_id=room_id, sender=sender, count=count)
        return [ElementMessage(**event) for event in answer["events"]]

    def download_image(self, message: ElementMessage) -> ElementImage:
        """Download, check and decrypt an m.image's media, as Element does to show it."""
        assert message.file is not None, f"{message.event_id} carries no encrypted file"
        answer = self.call("download_image", file=message.file)
        data = base64.b64decode(answer["data"])
        assert len(data) == answer["bytes"]
        return ElementImage(data=data, sha256=answer["sha256"], ciphertext_sha256=answer["ciphertext_sha256"])

    def close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.poll() is None and process.stdin is not None:
                process.stdin.write(json.dumps({"id": 0, "op": "stop"}) + "\n")
                process.stdin.flush()
            process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait(timeout=10)


def _readline(process: subprocess.Popen[str], timeout: float) -> str:
    """One answer line, or "" if the process died; bounded so a hang fails the test."""
    assert process.stdout is not None
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        process.kill()
        raise ElementError(f"the Element device did not answer within {timeout:g}s")
    return result[0] if result else ""
