"""The Matrix fault scene: a bot in alice's encrypted room, reaching Synapse through a
`MatrixProxy` that can break room sends. Shared by the fault, process and no-secrets tests;
the `scene` fixture (tests/conftest.py) hands out an armed one.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devstack.fakes.anthropic import FakeAnthropic
from devstack.matrix_proxy import MatrixProxy
from devstack.matrix_recipient import Recipient
from devstack.stack import Stack
from devstack.synapse import Account, Homeserver
from tests.helpers import CliResult, assert_no_secrets, issued_secrets, payload, run_cli

T0 = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
RESET = T0 + timedelta(days=3)
FIVE = (10.0, T0 + timedelta(hours=4))


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
    proxy = MatrixProxy(homeserver.url).start()
    stack = Stack.build(tmp_path, homeserver, anthropic, bot_name="faultbot", unique=True, matrix_url=proxy.url)
    return MatrixScene(
        homeserver,
        proxy,
        anthropic,
        tmp_path,
        stack.bot,
        stack.user,
        stack.recipient,
        stack.room_id,
        stack.env(**extra_env),
    )


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
