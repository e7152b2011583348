"""The human side of the Matrix tests: a real nio client that owns the alert room.

It logs in as a person's device with its own key store, creates an encrypted room,
invites the bot, and later reads the room's history back, decrypting what the bot
sent. The class is synchronous for the tests: it runs its own event loop, which is
idle whenever the bot's `deliver()` runs its `asyncio.run` in the same thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from nio import (
    AsyncClient,
    AsyncClientConfig,
    KeysQueryResponse,
    KeysUploadResponse,
    MegolmEvent,
    RoomCreateResponse,
    RoomMessagesResponse,
    RoomMessageText,
    SyncResponse,
)

from tests.synapse import Account

T = TypeVar("T")

MEGOLM = "m.megolm.v1.aes-sha2"


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    event_id: str
    sender: str
    body: str
    formatted_body: str | None
    sender_key: str  # the curve25519 identity key of the device that encrypted it


@dataclass(frozen=True, slots=True)
class RoomHistory:
    """The room's messages as this device sees them: decrypted, and those it cannot."""

    decrypted: tuple[ReceivedMessage, ...]
    undecryptable: tuple[str, ...]  # event ids of Megolm events without a key

    def bodies(self) -> list[str]:
        return [m.body for m in self.decrypted]


class Recipient:
    """One device of a human user, with its own nio store under `store_dir`."""

    def __init__(self, homeserver_url: str, account: Account, store_dir: Path) -> None:
        self.account = account
        store_dir.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.new_event_loop()
        self.client = AsyncClient(
            homeserver_url,
            account.user_id,
            device_id=account.device_id,
            store_path=str(store_dir),
            config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True, max_timeouts=2),
        )
        self.client.restore_login(account.user_id, account.device_id, account.access_token)
        self._run(self._upload_keys())

    @property
    def device_id(self) -> str:
        return self.account.device_id

    @property
    def ed25519(self) -> str:
        key: str = self.client.olm.account.identity_keys["ed25519"]
        return key

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coro)

    async def _upload_keys(self) -> None:
        if self.client.should_upload_keys:
            response = await self.client.keys_upload()
            assert isinstance(response, KeysUploadResponse), response

    def create_encrypted_room(self, invite: list[str]) -> str:
        async def create() -> str:
            response = await self.client.room_create(
                name="claude alerts",
                invite=invite,
                initial_state=[
                    {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}},
                ],
            )
            assert isinstance(response, RoomCreateResponse), response
            room_id: str = response.room_id
            return room_id

        return self._run(create())

    def create_plain_room(self, invite: list[str]) -> str:
        async def create() -> str:
            response = await self.client.room_create(name="not encrypted", invite=invite)
            assert isinstance(response, RoomCreateResponse), response
            room_id: str = response.room_id
            return room_id

        return self._run(create())

    def join(self, room_id: str) -> None:
        async def join() -> None:
            await self.client.join(room_id)
            await self._sync()

        self._run(join())

    def kick(self, room_id: str, user_id: str) -> None:
        async def kick() -> None:
            await self.client.room_kick(room_id, user_id, reason="test")

        self._run(kick())

    async def _sync(self) -> SyncResponse:
        response = await self.client.sync(timeout=0, full_state=True)
        assert isinstance(response, SyncResponse), response
        if self.client.should_upload_keys:
            await self._upload_keys()
        return response

    def sync(self) -> None:
        self._run(self._sync())

    def device_keys_of(self, user_id: str) -> dict[str, str]:
        """device id → ed25519 of `user_id`'s devices, as the homeserver publishes them."""

        async def query() -> dict[str, str]:
            self.client.olm.users_for_key_query.add(user_id)
            response = await self.client.keys_query()
            assert isinstance(response, KeysQueryResponse), response
            return {
                device_id: payload["keys"][f"ed25519:{device_id}"]
                for device_id, payload in response.device_keys.get(user_id, {}).items()
            }

        return self._run(query())

    def trust_devices_of(self, user_id: str) -> None:
        """Verify `user_id`'s devices here (what a person would do after checking them)."""
        self.device_keys_of(user_id)
        for device in self.client.device_store.active_user_devices(user_id):
            self.client.verify_device(device)

    def history(self, room_id: str) -> RoomHistory:
        """Sync (to receive room keys sent to this device), then read the whole room."""

        async def read() -> RoomHistory:
            await self._sync()
            response = await self.client.room_messages(room_id, limit=200)
            assert isinstance(response, RoomMessagesResponse), response
            decrypted: list[ReceivedMessage] = []
            undecryptable: list[str] = []
            for event in reversed(response.chunk):  # oldest first
                if isinstance(event, RoomMessageText):
                    content = event.source.get("content", {})
                    decrypted.append(
                        ReceivedMessage(
                            event_id=event.event_id,
                            sender=event.sender,
                            body=event.body,
                            formatted_body=content.get("formatted_body"),
                            sender_key=getattr(event, "sender_key", "") or "",
                        )
                    )
                elif isinstance(event, MegolmEvent):
                    undecryptable.append(event.event_id)
            return RoomHistory(tuple(decrypted), tuple(undecryptable))

        return self._run(read())

    def close(self) -> None:
        self._run(self.client.close())
        store = getattr(self.client, "store", None)
        if store is not None:
            store.database.close()
        self._loop.close()
