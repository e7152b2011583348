"""The human side of the Matrix tests: a real nio client that owns the alert room.

It logs in as a person's device with its own key store, creates an encrypted room,
invites the bot, and later reads the room's history back, decrypting what the bot
sent. The class is synchronous for the tests: it runs its own event loop, which is
idle whenever the bot's `deliver()` runs its `asyncio.run` in the same thread.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from Crypto.Cipher import AES
from Crypto.Util import Counter
from nio import (
    AsyncClient,
    AsyncClientConfig,
    DownloadError,
    KeysQueryResponse,
    KeysUploadResponse,
    MegolmEvent,
    RoomCreateResponse,
    RoomEncryptedImage,
    RoomMessagesResponse,
    RoomMessageText,
    SyncResponse,
)

from devstack.synapse import Account

T = TypeVar("T")

MEGOLM = "m.megolm.v1.aes-sha2"


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    event_id: str
    sender: str
    body: str
    formatted_body: str | None
    sender_key: str  # the curve25519 identity key of the device that encrypted it
    mentions: dict[str, Any] | None = None  # the decrypted content's `m.mentions` (None: absent)


@dataclass(frozen=True, slots=True)
class ReceivedImage:
    """A decrypted `m.image` whose file is encrypted media (its `content` as sent)."""

    event_id: str
    sender: str
    content: dict[str, Any]

    @property
    def body(self) -> str:
        return str(self.content.get("body", ""))

    @property
    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = self.content.get("info", {})
        return info

    @property
    def mentions(self) -> dict[str, Any] | None:
        mentions: dict[str, Any] | None = self.content.get("m.mentions")
        return mentions

    @property
    def file(self) -> dict[str, Any]:
        file: dict[str, Any] = self.content.get("file", {})
        return file


@dataclass(frozen=True, slots=True)
class RoomHistory:
    """The room's messages as this device sees them: decrypted, and those it cannot."""

    decrypted: tuple[ReceivedMessage, ...]
    undecryptable: tuple[str, ...]  # event ids of Megolm events without a key
    images: tuple[ReceivedImage, ...] = ()
    order: tuple[str, ...] = ()  # event ids of texts and images, oldest first

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
            images: list[ReceivedImage] = []
            order: list[str] = []
            for event in reversed(response.chunk):  # oldest first
                if isinstance(event, RoomEncryptedImage):
                    images.append(ReceivedImage(event.event_id, event.sender, dict(event.source.get("content", {}))))
                    order.append(event.event_id)
                elif isinstance(event, RoomMessageText):
                    order.append(event.event_id)
                    content = event.source.get("content", {})
                    decrypted.append(
                        ReceivedMessage(
                            event_id=event.event_id,
                            sender=event.sender,
                            body=event.body,
                            formatted_body=content.get("formatted_body"),
                            sender_key=getattr(event, "sender_key", "") or "",
                            mentions=content.get("m.mentions"),
                        )
                    )
                elif isinstance(event, MegolmEvent):
                    undecryptable.append(event.event_id)
            return RoomHistory(tuple(decrypted), tuple(undecryptable), tuple(images), tuple(order))

        return self._run(read())

    def download_image(self, image: ReceivedImage) -> bytes:
        """Fetch the encrypted media through the homeserver's (authenticated) media API and
        decrypt it as the spec says, without nio's helper: check the ciphertext's sha256
        against `file.hashes`, then AES-256-CTR with `file.key.k` and the 16-byte `file.iv`
        as the initial counter block."""

        async def fetch() -> bytes:
            response = await self.client.download(mxc=image.file["url"])
            assert not isinstance(response, DownloadError), response
            body: bytes = response.body
            return body

        ciphertext = self._run(fetch())
        file = image.file
        assert file.get("v") == "v2", file.get("v")
        assert file["key"]["alg"] == "A256CTR" and file["key"]["kty"] == "oct"
        digest = base64.b64encode(hashlib.sha256(ciphertext).digest()).decode().rstrip("=")
        assert digest == file["hashes"]["sha256"].rstrip("="), "ciphertext sha256 does not match file.hashes"
        key = _unpadded_b64(file["key"]["k"], urlsafe=True)
        iv = _unpadded_b64(file["iv"])
        assert len(key) == 32 and len(iv) == 16
        counter = Counter.new(128, initial_value=int.from_bytes(iv, "big"))
        plaintext: bytes = AES.new(key, AES.MODE_CTR, counter=counter).decrypt(ciphertext)
        return plaintext

    def close(self) -> None:
        self._run(self.client.close())
        store = getattr(self.client, "store", None)
        if store is not None:
            store.database.close()
        self._loop.close()


def _unpadded_b64(text: str, *, urlsafe: bool = False) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded) if urlsafe else base64.b64decode(padded)
