"""One development stack: a bot invited to a user's encrypted room on a real Synapse, its
usage served by the loopback fake, its files under one folder.

The demo, the Matrix tests and the fault scenes all start here: `Stack.build()` registers
the bot and the user, writes the bot's `MATRIX_CREDS_DIR` and token files (one directory
per account with `ACCOUNTS`), has the user create the encrypted room and invite the bot,
and `env()` is the bot's environment for either entry point. Files, as `bot_env` lays
them out: `state/`, `tokens/` (`tokens/<name>/` per account), `matrix-bot/`, and the
user's device store `<user>-store/`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .bot import bot_env
from .fakes.anthropic import FakeAnthropic
from .matrix_recipient import Recipient
from .synapse import Account, Homeserver

RecipientFactory = Callable[[str, Account, Path], Recipient]


@dataclass
class Stack:
    workdir: Path
    homeserver: Homeserver
    anthropic: FakeAnthropic
    bot: Account
    user: Account
    recipient: Recipient
    room_id: str
    accounts: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        workdir: Path,
        homeserver: Homeserver,
        anthropic: FakeAnthropic,
        *,
        accounts: tuple[str, ...] = (),
        bot_name: str = "claude-bot",
        user_name: str = "alice",
        unique: bool = False,
        matrix_url: str | None = None,
        recipient: RecipientFactory = Recipient,
    ) -> Stack:
        """`unique` suffixes both user names (many stacks on one homeserver); `matrix_url` is
        where the bot reaches the homeserver (a proxy in front of it, say)."""
        suffix = f"-{uuid.uuid4().hex[:8]}" if unique else ""
        bot = homeserver.register(f"{bot_name}{suffix}")
        user = homeserver.register(f"{user_name}{suffix}")
        creds = bot.write_creds_dir(workdir / "matrix-bot", matrix_url or homeserver.url)
        for path in creds.iterdir():
            path.chmod(0o600)  # as matrix-login leaves them
        device = recipient(homeserver.url, user, workdir / f"{user_name}-store")
        room_id = device.create_encrypted_room([bot.user_id])
        stack = cls(workdir, homeserver, anthropic, bot, user, device, room_id, accounts)
        for name in accounts or (None,):
            anthropic.write_tokens_dir(stack.tokens_dir(name), account=name)
        return stack

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    @property
    def creds_dir(self) -> Path:
        return self.workdir / "matrix-bot"

    def tokens_dir(self, account: str | None = None) -> Path:
        """`OAUTH_TOKENS_DIR`, or one account's directory in it (docs/design.md §6)."""
        root = self.workdir / "tokens"
        return root / account if account else root

    def env(self, **extra: str) -> dict[str, str]:
        """The bot's environment: LOCAL_MODE, the Matrix sink into this room, these files."""
        matrix = {"ALERT_SINK": "matrix", "MATRIX_ROOM_ID": self.room_id, "MATRIX_CREDS_DIR": str(self.creds_dir)}
        if self.accounts:
            matrix["ACCOUNTS"] = ",".join(self.accounts)
        return bot_env(self.workdir, self.anthropic.base_url, self.anthropic.token_url, **{**matrix, **extra})

    def close(self) -> None:
        """Close the user's device; the servers belong to whoever started them."""
        self.recipient.close()
