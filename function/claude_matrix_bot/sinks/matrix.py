"""`ALERT_SINK=matrix`: alerts as end-to-end-encrypted messages, through matrix-nio.

One delivery is one short-lived nio client (the bot is a 5-minute batch job, not a
long-running client), so the things a resident client keeps in memory live in
`store_dir` instead:

- nio's SQLite store `{user_id}_{device_id}.db` and trust files: the Olm account (the
  device's identity), Olm sessions, known devices, our own Megolm inbound sessions;
- `sync.json` (ours): the sync token and the users whose device lists we track, written
  together only once every device-list change of that sync has been queried. nio keeps
  neither the tracked users nor (usefully) the token, and without them every process
  would pay a `/keys/query`; with them a warm delivery is sync + to-device + send;
- `device.json` (ours, public values only): the identity this device published, so a
  lost key store is noticed instead of silently minting a second identity;
- `cross_signing_keys.json` and `identity.json` (ours, see crosssigning.py): the
  account's cross-signing identity (private keys, encrypted with the store passphrase
  when set) and what the bot knows about it (public values, for `status`).

Cross-signing (Element shows an unsigned sender with a red shield and, excluding insecure
devices, does not decrypt it): the first delivery by a device the bot has not signed yet
creates the account's identity if it has none and signs the device (+2 or 3 requests,
once per device). Other people's identities come with the /keys/query answers nio asks
for anyway and are kept in `sync.json`, so trust decisions cost no request.

Cost of a warm delivery of n alerts: 1 sync (filtered to the alert room, full room state,
no timeline) + 1 to-device (a fresh Megolm room key: nio does not persist outbound
sessions) + n room sends; plus /keys/query when a member's devices changed, /keys/claim
for a device we have no Olm session with, and /keys/upload when one-time keys ran low.
Alerts marked attempted (perhaps already in the room) add one /messages request (up to
MESSAGES_PAGES when not found) and drop the sends that are found; new alerts add none.

One message per alert, not one batch: each alert's id is its Matrix transaction id, so a
retried alert is deduplicated by the homeserver individually and a failure in the middle
leaves exactly the undelivered alerts in the outbox. Batching would save a request per
extra alert but would make a half-delivered batch either duplicate or drop alerts.

nio is imported inside the methods: the package must import without it (cold start, and
cycles with nothing to send never touch Matrix).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..charts import Picture, picture_for
from ..errors import DeliveryError
from ..logs import Redactor
from ..model import Alert
from ..settings import TrustedDevice
from .base import DeliveryReport
from .crosssigning import (
    CrossSigningError,
    CrossSigningKeys,
    IdentityRecord,
    PublishedIdentity,
    foreign_identity_notice,
    load_keys,
    read_identity,
    save_keys,
    single_key,
    write_identity,
)

if TYPE_CHECKING:
    from nio import AsyncClient

log = logging.getLogger(__name__)

DEVICE_MARKER = "device.json"
SYNC_STATE = "sync.json"
MEDIA_MEMORY = "media.json"
MEDIA_MEMORY_SIZE = 32
# How far back the bot looks for an attempted alert (DESIGN §5): its own events only.
# Attempted alerts head the outbox and are retried first, so they are among the last few.
MESSAGES_PAGE = 50
MESSAGES_PAGES = 3
CREDENTIAL_FILES = ("homeserver_url", "user_id", "access_token", "device_id")
LOGIN_HINT = (
    "log in again to get a new device: claude-matrix-bot matrix-login --homeserver {hs} --user {user} "
    "--new-device (README: Matrix setup)"
)


class _Stopped(DeliveryError):
    """Ends a delivery early with a message meant for a person (never a secret)."""


@dataclass(frozen=True, slots=True)
class MatrixCredentials:
    """The files of `MATRIX_CREDS_DIR`. The token is kept out of repr."""

    homeserver_url: str
    user_id: str
    device_id: str
    access_token: str = field(repr=False)

    @classmethod
    def from_dir(cls, directory: Path) -> MatrixCredentials:
        values: dict[str, str] = {}
        problems: list[str] = []
        for name in CREDENTIAL_FILES:
            try:
                values[name] = (directory / name).read_text().strip()
            except OSError as exc:
                problems.append(f"{name} ({exc.strerror or type(exc).__name__})")
                continue
            if not values[name]:
                problems.append(f"{name} (empty)")
        if problems:
            raise _Stopped(f"cannot read the Matrix credentials in {directory}: {', '.join(problems)}")
        return cls(
            homeserver_url=values["homeserver_url"].rstrip("/"),
            user_id=values["user_id"],
            device_id=values["device_id"],
            access_token=values["access_token"],
        )


@dataclass(frozen=True, slots=True)
class _SyncState:
    """What a resident client would keep in memory between syncs, for the alert room."""

    next_batch: str | None = None
    device: str | None = None  # "user_id device_id": the state is only valid for that device
    tracked_users: frozenset[str] = frozenset()
    room_id: str | None = None
    joined: frozenset[str] = frozenset()
    invited: frozenset[str] = frozenset()
    # Cross-signing identities of the tracked users, from the last /keys/query of each.
    # None: written by a release that did not keep them (all tracked users are queried once).
    identities: dict[str, PublishedIdentity] | None = None


@dataclass(frozen=True, slots=True)
class CrossSigningOutcome:
    """What signing the bot's device came to (public values only)."""

    master: str | None = None  # the identity the device is now signed by
    created: bool = False  # a new identity was published
    foreign_master: str | None = None  # the account's identity is not the bot's: left alone
    needs_password: bool = False  # the homeserver asked for the password to publish one


class MatrixSink:
    """Delivers alerts into one encrypted room as the bot's one stable device."""

    def __init__(
        self,
        creds_dir: Path,
        room_id: str,
        store_dir: Path,
        trusted_devices: tuple[TrustedDevice, ...] = (),
        store_passphrase: str | None = None,
        timeout: float = 30.0,
        exclude_insecure_devices: bool = False,
        redactor: Redactor | None = None,
    ) -> None:
        self.creds_dir = creds_dir
        self.room_id = room_id
        self.store_dir = store_dir
        self.trusted_devices = trusted_devices
        self._store_passphrase = store_passphrase
        self.timeout = timeout
        self.exclude_insecure_devices = exclude_insecure_devices
        # Learns the access token when the sink reads it, so the logs never show it.
        self.redactor = redactor

    def __repr__(self) -> str:
        return f"MatrixSink(room_id={self.room_id!r}, store_dir={str(self.store_dir)!r})"

    def deliver(self, alerts: Sequence[Alert]) -> DeliveryReport:
        if not alerts:
            return DeliveryReport(())
        delivery = _Delivery(self, list(alerts))
        # Pictures first, before nio, aiohttp and the event loop are loaded: the drawing
        # child and this process then never peak together (charts.picture_for).
        for alert in delivery.alerts:
            delivery._picture(alert)
        error = asyncio.run(delivery.run(delivery._deliver))
        if error is not None:
            log.error("matrix delivery stopped after %d of %d alerts: %s", len(delivery.delivered), len(alerts), error)
        return DeliveryReport(tuple(delivery.delivered), error=error, requests=delivery.requests)

    def prime(self, *, password: str | None = None, reset_cross_signing: bool = False) -> PrimeReport:
        """For `matrix-login`: open (or create) this device's key store, publish its keys,
        and sign it with the account's cross-signing identity, creating that identity
        when there is none, or replacing it when `reset_cross_signing` (with the password
        for the homeserver's user-interactive auth). Reports, never raises."""
        delivery = _Delivery(self, [])

        async def prime(client: AsyncClient, creds: MatrixCredentials) -> None:
            await delivery._open_device(client, creds)
            delivery.device_ed25519 = client.olm.account.identity_keys["ed25519"]
            delivery.outcome = await delivery._cross_sign(client, creds, password=password, reset=reset_cross_signing)

        error = asyncio.run(delivery.run(prime, secrets=(password,)))
        creds = delivery.creds
        return PrimeReport(
            user_id=creds.user_id if creds else None,
            device_id=creds.device_id if creds else None,
            device_ed25519=delivery.device_ed25519,
            outcome=delivery.outcome,
            error=error,
            requests=delivery.requests,
        )


@dataclass(frozen=True, slots=True)
class PrimeReport:
    """What `MatrixSink.prime` did (public values only)."""

    user_id: str | None
    device_id: str | None
    device_ed25519: str | None
    outcome: CrossSigningOutcome | None
    error: str | None
    requests: int


class _Delivery:
    """One delivery: one nio client, opened and closed here."""

    def __init__(self, sink: MatrixSink, alerts: list[Alert]) -> None:
        self.sink = sink
        self.alerts = alerts
        self.delivered: list[str] = []
        self.requests = 0
        self.creds: MatrixCredentials | None = None
        # Said in the armed message when the account's identity is not the bot's.
        self.identity_notice: str | None = None
        self.identities: dict[str, PublishedIdentity] = {}
        self.pictures: dict[str, Picture | None] = {}
        # Filled by MatrixSink.prime.
        self.device_ed25519: str | None = None
        self.outcome: CrossSigningOutcome | None = None

    # --- the frame: never raise, never leak the token -------------------------------

    async def run(
        self,
        work: Callable[[AsyncClient, MatrixCredentials], Awaitable[None]],
        secrets: tuple[str | None, ...] = (),
    ) -> str | None:
        """Run `work` with one nio client; the error in words (scrubbed), or None."""
        error: str | None = None
        client: AsyncClient | None = None
        try:
            self.creds = MatrixCredentials.from_dir(self.sink.creds_dir)
            if self.sink.redactor is not None:
                self.sink.redactor.add(self.creds.access_token)
            client = self._client(self.creds)
            # A whole delivery is bounded too: nio's own sync path can wait without limit.
            async with asyncio.timeout(self.sink.timeout * 6):
                await work(client, self.creds)
        except _Stopped as exc:
            error = str(exc)
        except CrossSigningError as exc:
            error = str(exc)
        except Exception as exc:  # the contract: report, never raise
            error = self._describe_exception(exc)
        finally:
            if client is not None:
                await self._close(client)
        if error is not None:
            error = self._scrub(error)
            for secret in secrets:
                if secret:
                    error = error.replace(secret, "<password>")
        return error

    def _scrub(self, text: str) -> str:
        if self.creds is not None and self.creds.access_token:
            text = text.replace(self.creds.access_token, "<access token>")
        return text

    def _describe_exception(self, exc: BaseException) -> str:
        import aiohttp

        url = self.creds.homeserver_url if self.creds else "the homeserver"
        if isinstance(exc, TimeoutError):
            return f"the homeserver {url} did not answer in time (timeout {self.sink.timeout:g}s)"
        if isinstance(exc, aiohttp.ClientConnectorError):
            return f"cannot reach the homeserver {url}: {exc.strerror or exc.os_error or 'connection failed'}"
        if isinstance(exc, aiohttp.ClientError):
            return f"connection to the homeserver {url} failed: {type(exc).__name__}: {exc}"
        # A bug or a library surprise: name it, no traceback in the cycle's output.
        log.debug("unexpected matrix failure", exc_info=True)
        return f"unexpected failure while delivering to Matrix: {type(exc).__name__}: {exc}"

    def _client(self, creds: MatrixCredentials) -> AsyncClient:
        from nio import AsyncClient, AsyncClientConfig

        config = AsyncClientConfig(
            encryption_enabled=True,
            # We persist the token ourselves (sync.json), in step with the tracked users.
            store_sync_tokens=False,
            pickle_key=self.sink._store_passphrase or "DEFAULT_KEY",
            request_timeout=self.sink.timeout,
            # Never sleep on a 429 or loop on a dead server: the next cycle retries.
            max_limit_exceeded=0,
            max_timeouts=1,
            backoff_factor=0.0,
        )
        self.sink.store_dir.mkdir(parents=True, exist_ok=True)
        client = AsyncClient(
            creds.homeserver_url,
            creds.user_id,
            device_id=creds.device_id,
            store_path=str(self.sink.store_dir),
            config=config,
        )
        original_send: Callable[..., Awaitable[Any]] = client.send

        async def counted_send(*args: Any, **kwargs: Any) -> Any:
            # Every HTTP attempt goes through AsyncClient.send, retries included.
            self.requests += 1
            method, path = [*args, kwargs.get("method"), kwargs.get("path")][:2]
            # The path only: nio moves the token into a header, but never log a query string.
            log.debug("matrix request %d: %s %s", self.requests, method, str(path).split("?", 1)[0])
            return await original_send(*args, **kwargs)

        client.send = counted_send
        return client

    async def _close(self, client: AsyncClient) -> None:
        # Closing must not turn a report into an exception: the contract is "never raise".
        with contextlib.suppress(Exception):
            await client.close()
        store = getattr(client, "store", None)
        database = getattr(store, "database", None)
        if database is not None:
            with contextlib.suppress(Exception):
                database.close()

    # --- the delivery proper ------------------------------------------------------------

    async def _deliver(self, client: AsyncClient, creds: MatrixCredentials) -> None:
        from nio import KeysUploadResponse

        store_dir = self.sink.store_dir
        await self._open_device(client, creds)
        # Before anything is sent: a recipient judges the sender device as it is when the
        # room key arrives.
        await self._ensure_cross_signed(client, creds)

        device = f"{creds.user_id} {creds.device_id}"
        sync_state = _read_sync_state(store_dir / SYNC_STATE)
        if sync_state.device != device:  # written for another login: start over
            sync_state = _SyncState()
        # Users whose device lists we already know: from here on the sync's
        # device_lists.changed tells us about their new devices.
        client.olm.tracked_users = set(sync_state.tracked_users)
        self.identities = dict(sync_state.identities or {})
        if sync_state.identities is None:
            # Written before identities were kept: learn them once, with one /keys/query.
            client.olm.users_for_key_query.update(sync_state.tracked_users)

        if (
            sync_state.room_id == self.sink.room_id
            and creds.user_id in sync_state.joined
            and self.sink.room_id in client.encrypted_rooms
        ):
            # Warm: rebuild the room from the last sync and ask only for what changed since.
            # A full-state sync would be as cheap in requests, but Synapse then reports
            # every member's device list as changed, which costs a /keys/query each time.
            self._restore_room(client, sync_state)
            await self._sync(client, sync_state.next_batch, full_state=False)
        else:
            await self._sync(client, sync_state.next_batch, full_state=True)
        if self.sink.room_id in client.invited_rooms:
            await self._join(client)
            client.rooms.pop(self.sink.room_id, None)  # a stale copy must not survive the rejoin
            await self._sync(client, client.next_batch, full_state=True)
        room = client.rooms.get(self.sink.room_id)
        if room is None:
            raise _Stopped(
                f"the bot is not in room {self.sink.room_id}: invite {creds.user_id} from your Matrix client "
                "(it joins by itself on the next delivery)"
            )
        if not room.encrypted:
            raise _Stopped(
                f"room {self.sink.room_id} is not end-to-end encrypted: refusing to send alerts in clear text "
                "(enable encryption in the room settings)"
            )
        # Members are never lazy-loaded (see the filter) and the restored room plus the
        # sync's state delta is the whole list: no /joined_members round trip is needed.
        room.members_synced = True

        if client.should_upload_keys:  # one-time keys were claimed by others: top up
            response = await client.keys_upload()
            if not isinstance(response, KeysUploadResponse):
                raise _Stopped("uploading one-time keys failed: " + _describe_error(response))
        await self._query_keys(client)
        # Only now are all device-list changes of this sync queried: advancing the token
        # earlier could skip a recipient's new device for good.
        _write_sync_state(
            store_dir / SYNC_STATE,
            _SyncState(
                next_batch=client.next_batch,
                device=device,
                tracked_users=frozenset(client.olm.tracked_users),
                room_id=room.room_id,
                joined=frozenset(set(room.users) - set(room.invited_users)),
                invited=frozenset(room.invited_users),
                identities={u: i for u, i in self.identities.items() if u in client.olm.tracked_users},
            ),
        )

        recipients = self._apply_trust(client, room)
        found = await self._find_in_room(client, creds)
        await self._send_alerts(client, recipients, found)

    async def _cross_sign(
        self, client: AsyncClient, creds: MatrixCredentials, *, password: str | None, reset: bool
    ) -> CrossSigningOutcome:
        """Make the account's identity the bot's (creating it if there is none, replacing
        it only when `reset`) and sign this device with it.

        Requests: /keys/query (our own user), /keys/device_signing/upload when creating
        (twice when the homeserver asks for the password), /keys/signatures/upload.
        """
        store_dir = self.sink.store_dir
        user_id, device_id = creds.user_id, creds.device_id
        query = await self._raw(
            client,
            "looking up the bot's cross-signing keys",
            "POST",
            "/_matrix/client/v3/keys/query",
            {"device_keys": {user_id: []}},
        )
        published_master = single_key(query.get("master_keys", {}).get(user_id), user_id, "master")
        published_ssk = single_key(query.get("self_signing_keys", {}).get(user_id), user_id, "self_signing")
        keys = load_keys(store_dir, user_id, self.sink._store_passphrase)
        ours = keys is not None and (published_master, published_ssk) == (keys.master.public, keys.self_signing.public)
        created = False
        if reset or published_master is None:
            if reset or keys is None:
                keys = CrossSigningKeys.generate(user_id)
            if published_master is None:
                # Kept before it is published: a crash in between must not lose the identity.
                save_keys(store_dir, keys, self.sink._store_passphrase)
            if not await self._upload_signing_keys(client, creds, keys, password):
                return CrossSigningOutcome(needs_password=True)
            save_keys(store_dir, keys, self.sink._store_passphrase)
            created = True
            log.info("published the bot's cross-signing identity (master key %s)", keys.master.public)
        elif not ours:
            record = IdentityRecord(user_id=user_id, foreign_master=published_master, foreign_checked_device=device_id)
            write_identity(store_dir, record)
            return CrossSigningOutcome(foreign_master=published_master)
        assert keys is not None

        device_keys = query.get("device_keys", {}).get(user_id, {}).get(device_id)
        if not isinstance(device_keys, dict):
            raise _Stopped(f"the homeserver does not publish the keys of the bot's device {device_id}; cannot sign it")
        body = {user_id: {device_id: keys.sign_device(device_keys)}}
        answer = await self._raw(
            client, "signing the bot's device", "POST", "/_matrix/client/v3/keys/signatures/upload", body
        )
        failure = answer.get("failures", {}).get(user_id, {}).get(device_id)
        if failure:
            raise _Stopped(f"the homeserver refused the signature of the bot's device {device_id}: {failure}")
        previous = read_identity(store_dir)
        signed = previous.signed_devices if previous.master == keys.master.public and not created else ()
        write_identity(
            store_dir,
            IdentityRecord(
                user_id=user_id,
                master=keys.master.public,
                self_signing=keys.self_signing.public,
                signed_devices=(*[d for d in signed if d != device_id], device_id),
                withheld=previous.withheld,
            ),
        )
        log.info("signed the bot's device %s with its cross-signing identity", device_id)
        return CrossSigningOutcome(master=keys.master.public, created=created)

    async def _upload_signing_keys(
        self, client: AsyncClient, creds: MatrixCredentials, keys: CrossSigningKeys, password: str | None
    ) -> bool:
        """POST /keys/device_signing/upload; False when the homeserver wants a password
        we do not have. The first upload needs none (spec v1.11); a replacement does."""
        path = "/_matrix/client/v3/keys/device_signing/upload"
        body = keys.upload_body()
        status, answer = await self._request(client, "POST", path, body)
        if status == 401 and "flows" in answer:
            if password is None:
                return False
            auth = {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": creds.user_id},
                "password": password,
                "session": answer.get("session"),
            }
            status, answer = await self._request(client, "POST", path, {**body, "auth": auth})
            if status == 401:
                raise _Stopped("the homeserver did not accept the password for replacing the cross-signing identity")
        if status != 200:
            raise _Stopped(
                "publishing the bot's cross-signing identity failed: "
                + _describe_status(status, answer.get("errcode"), answer.get("error"), answer)
            )
        return True

    async def _open_device(self, client: AsyncClient, creds: MatrixCredentials) -> None:
        """Open this device's key store (refusing one that would mint a second identity)
        and publish its keys if the homeserver does not have them yet."""
        from nio import KeysUploadResponse

        store_dir = self.sink.store_dir
        database = store_dir / f"{creds.user_id}_{creds.device_id}.db"
        marker = _read_json(store_dir / DEVICE_MARKER)
        marker_is_ours = marker.get("user_id") == creds.user_id and marker.get("device_id") == creds.device_id

        if not database.exists():
            if marker_is_ours:
                raise _Stopped(
                    f"the key store for Matrix device {creds.device_id} is missing from {store_dir}, but this "
                    "device has run before: reusing its device_id would mint a new identity and recipients "
                    f"would see 'unable to decrypt'. Restore the store, or {self._login_hint(creds)}"
                )
            await self._check_fresh_device(client, creds)

        try:
            client.restore_login(creds.user_id, creds.device_id, creds.access_token)
        except Exception as exc:
            raise _Stopped(
                f"cannot open the Matrix key store in {store_dir} ({type(exc).__name__}): "
                "is MATRIX_STORE_PASSPHRASE the one it was written with?"
            ) from None
        identity = client.olm.account.identity_keys
        if marker_is_ours and marker.get("ed25519") != identity["ed25519"]:
            raise _Stopped(
                f"the key store in {store_dir} holds a different identity for device {creds.device_id} than the "
                f"one it published (ed25519 {marker.get('ed25519')}); refusing to send with it. "
                f"Restore the right store, or {self._login_hint(creds)}"
            )

        if client.should_upload_keys:
            response = await client.keys_upload()
            if not isinstance(response, KeysUploadResponse):
                raise _Stopped("uploading the bot's encryption keys failed: " + _describe_error(response))
            if not marker_is_ours:
                _write_json(
                    store_dir / DEVICE_MARKER,
                    {"user_id": creds.user_id, "device_id": creds.device_id, **identity},
                )

    async def _check_fresh_device(self, client: AsyncClient, creds: MatrixCredentials) -> None:
        """First run with this device: make sure the token is this device's and that no
        other store already published keys for it (a store lost before device.json)."""
        whoami = await self._raw(client, "checking the access token", "GET", "/_matrix/client/v3/account/whoami")
        if whoami.get("user_id") != creds.user_id or whoami.get("device_id") not in (None, creds.device_id):
            raise _Stopped(
                f"the access token belongs to {whoami.get('user_id')} device {whoami.get('device_id')}, not to "
                f"{creds.user_id} device {creds.device_id}: fix user_id/device_id in MATRIX_CREDS_DIR"
            )
        query = await self._raw(
            client,
            "looking up the device's published keys",
            "POST",
            "/_matrix/client/v3/keys/query",
            {"device_keys": {creds.user_id: [creds.device_id]}},
        )
        published = query.get("device_keys", {}).get(creds.user_id, {}).get(creds.device_id)
        if published:
            ed25519 = published.get("keys", {}).get(f"ed25519:{creds.device_id}")
            raise _Stopped(
                f"Matrix device {creds.device_id} already published encryption keys (ed25519 {ed25519}) but "
                f"there is no key store for it in {self.sink.store_dir}: reusing this device_id would mint a "
                f"new identity and recipients would see 'unable to decrypt'. {self._login_hint(creds)}"
            )

    async def _request(
        self, client: AsyncClient, method: str, path: str, body: Any = None
    ) -> tuple[int, dict[str, Any]]:
        """A plain JSON call with nio's session (no nio state change): (status, body)."""
        assert self.creds is not None
        headers = {"Authorization": f"Bearer {self.creds.access_token}", "Content-Type": "application/json"}
        data = json.dumps(body) if body is not None else None
        response = await client.send(method, path, data, headers)
        try:
            payload = await response.json(content_type=None)
        except ValueError:
            payload = {}
        return response.status, payload if isinstance(payload, dict) else {}

    async def _raw(self, client: AsyncClient, step: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """`_request` that stops the delivery on anything but 200."""
        status, payload = await self._request(client, method, path, body)
        if status != 200:
            raise _Stopped(
                f"{step} failed: " + _describe_status(status, payload.get("errcode"), payload.get("error"), payload)
            )
        return payload

    def _restore_room(self, client: AsyncClient, state: _SyncState) -> None:
        from nio import MatrixRoom

        room = MatrixRoom(self.sink.room_id, client.user_id, self.sink.room_id in client.encrypted_rooms)
        for user_id in sorted(state.joined):
            room.add_member(user_id, None, None)
        for user_id in sorted(state.invited):
            room.add_member(user_id, None, None, invited=True)
        client.rooms[self.sink.room_id] = room

    async def _sync(self, client: AsyncClient, since: str | None, *, full_state: bool) -> None:
        from nio import Api, SyncResponse

        sync_filter = {
            "presence": {"not_types": ["*"]},
            "account_data": {"not_types": ["*"]},
            "room": {
                "rooms": [self.sink.room_id],
                "include_leave": False,
                "timeline": {"limit": 0},
                "state": {"lazy_load_members": False},
                "ephemeral": {"not_types": ["*"]},
                "account_data": {"not_types": ["*"]},
            },
        }
        method, path = Api.sync(
            client.access_token, since=since, timeout=None, filter=sync_filter, full_state=full_state
        )
        # nio's sync() turns full_state into "no request timeout"; go one level down instead.
        response = await client._send(SyncResponse, method, path, timeout=self.sink.timeout)
        if not isinstance(response, SyncResponse):
            raise _Stopped("sync with the homeserver failed: " + _describe_error(response))

    async def _join(self, client: AsyncClient) -> None:
        from nio import JoinResponse

        response = await client.join(self.sink.room_id)
        if not isinstance(response, JoinResponse):
            raise _Stopped(f"joining room {self.sink.room_id} failed: " + _describe_error(response))
        log.info("joined room %s (the bot had been invited)", self.sink.room_id)

    async def _query_keys(self, client: AsyncClient) -> None:
        """nio's /keys/query, keeping the cross-signing keys nio drops from the answer."""
        from nio import Api, KeysQueryResponse

        if not client.should_query_keys:
            return
        users = set(client.users_for_key_query)
        method, path, data = Api.keys_query(client.access_token, users)
        response = await client._send(_keys_query_response_class(), method, path, data)
        if not isinstance(response, KeysQueryResponse):
            raise _Stopped("querying the room members' device keys failed: " + _describe_error(response))
        answer: dict[str, Any] = getattr(response, "answer", {})
        for user_id in users:
            identity = PublishedIdentity.from_keys_query(answer, user_id)
            known = self.identities.get(user_id)
            if known is not None and known.master and identity.master != known.master:
                log.warning(
                    "%s has a new cross-signing identity (master key %s, was %s)",
                    user_id,
                    identity.master,
                    known.master,
                )
            self.identities[user_id] = identity

    # --- the bot's own cross-signing identity ---------------------------------------------

    async def _ensure_cross_signed(self, client: AsyncClient, creds: MatrixCredentials) -> None:
        """Sign this device with the account's self-signing key, creating the identity
        when the account has none. Free once done: `identity.json` remembers the device."""
        store_dir = self.sink.store_dir
        record = read_identity(store_dir)
        if record.user_id == creds.user_id and creds.device_id in record.signed_devices:
            return
        if (
            record.user_id == creds.user_id
            and record.foreign_master
            and record.foreign_checked_device == creds.device_id
        ):
            self.identity_notice = foreign_identity_notice(creds.user_id, record.foreign_master)
            return  # said once already; `status` keeps saying it
        try:
            outcome = await self._cross_sign(client, creds, password=None, reset=False)
        except CrossSigningError as exc:
            # The alerts matter more than the shield: deliver, and say what is wrong.
            log.error("cannot use the bot's cross-signing keys: %s", exc)
            return
        if outcome.foreign_master:
            self.identity_notice = foreign_identity_notice(creds.user_id, outcome.foreign_master)
            log.warning("%s", self.identity_notice)
        elif outcome.needs_password:
            log.warning(
                "the homeserver wants the bot's password to publish its cross-signing identity; run "
                "`claude-matrix-bot matrix-login` once (alerts are delivered meanwhile, with a red shield in Element)"
            )

    def _apply_trust(self, client: AsyncClient, room: Any) -> set[tuple[str, str]]:
        """Decide, every delivery, which devices get the room key; returns them.

        Trust on first use when nothing is pinned: every device nio learned (nio keeps
        the first ed25519 key of a device id and ignores later changes) is verified.
        Strict when MATRIX_TRUSTED_DEVICES is set: a device pin admits that device with
        that key; an identity pin (`user:master:key`) admits every device that identity
        signed, and none at all once the user's identity is another. Everything else is
        blacklisted, so it never receives a room key. MATRIX_EXCLUDE_INSECURE_DEVICES
        then also drops every device its owner's identity did not sign (MSC4153).
        """
        olm = client.olm
        device_pins = {(d.user_id, d.device_id): d.ed25519 for d in self.sink.trusted_devices if not d.is_identity}
        identity_pins = {d.user_id: d.ed25519 for d in self.sink.trusted_devices if d.is_identity}
        strict = bool(device_pins or identity_pins)
        seen: set[tuple[str, str]] = set()
        recipients: set[tuple[str, str]] = set()
        withheld: list[tuple[str, str]] = []
        for user_id in sorted(room.users):
            identity = self.identities.get(user_id) or PublishedIdentity(user_id)
            pinned_master = identity_pins.get(user_id)
            identity_changed = pinned_master is not None and identity.master != pinned_master
            if identity_changed:
                found = f"master key {identity.master}" if identity.master else "no cross-signing identity"
                log.error(
                    "PINNED IDENTITY MISMATCH: %s now has %s, MATRIX_TRUSTED_DEVICES pins master key %s; not "
                    "sending room keys to any of its devices (they reset their identity, or someone impersonates "
                    "them: check with them, then update the pin)",
                    user_id,
                    found,
                    pinned_master,
                )
                withheld.append((user_id, f"cross-signing identity changed ({found}, pinned {pinned_master})"))
            for device in client.device_store.active_user_devices(user_id):
                if user_id == client.user_id and device.id == client.device_id:
                    continue
                seen.add((user_id, device.id))
                signed = identity.signs(device.id, device.ed25519)
                refused = False
                if strict:
                    expected = device_pins.get((user_id, device.id))
                    if expected is not None:
                        if expected != device.ed25519:
                            log.error(
                                "PINNED DEVICE KEY MISMATCH: %s %s presents ed25519 %s, MATRIX_TRUSTED_DEVICES pins "
                                "%s; not sending it room keys (possible impersonation, or a wrong pin)",
                                user_id,
                                device.id,
                                device.ed25519,
                                expected,
                            )
                            refused = True
                    elif pinned_master is not None:
                        if identity_changed:
                            refused = True
                        elif not signed:
                            log.warning(
                                "not sending room keys to %s %s (not signed by the pinned cross-signing identity)",
                                user_id,
                                device.id,
                            )
                            refused = True
                    else:
                        log.warning(
                            "not sending room keys to %s %s (not in MATRIX_TRUSTED_DEVICES)", user_id, device.id
                        )
                        refused = True
                if not refused and self.sink.exclude_insecure_devices and not signed:
                    log.warning(
                        "not sending room keys to %s %s (not signed by its owner's cross-signing identity; "
                        "MATRIX_EXCLUDE_INSECURE_DEVICES)",
                        user_id,
                        device.id,
                    )
                    withheld.append((f"{user_id} {device.id}", "not signed by its owner's cross-signing identity"))
                    refused = True
                if refused:
                    client.blacklist_device(device)
                    continue
                if not olm.is_device_verified(device):
                    if not strict:
                        log.info("trusting %s %s on first use (ed25519 %s)", user_id, device.id, device.ed25519)
                    client.verify_device(device)
                recipients.add((user_id, device.id))
        for user_id, device_id in device_pins.keys() - seen:
            log.warning("pinned device %s %s is not in room %s (or has no keys)", user_id, device_id, room.room_id)
        for user_id in identity_pins.keys() - set(room.users):
            log.warning("pinned identity of %s: the user is not in room %s", user_id, room.room_id)
        record = read_identity(self.sink.store_dir)
        write_identity(self.sink.store_dir, replace(record, withheld=tuple(withheld)))
        if not recipients and strict:
            raise _Stopped(
                f"none of the MATRIX_TRUSTED_DEVICES is in room {room.room_id}: nobody could decrypt the alerts"
            )
        if not recipients and self.sink.exclude_insecure_devices:
            raise _Stopped(
                f"no device in room {room.room_id} is signed by its owner's cross-signing identity "
                "(MATRIX_EXCLUDE_INSECURE_DEVICES): nobody could decrypt the alerts"
            )
        return recipients

    async def _share_room_key(self, client: AsyncClient, recipients: set[tuple[str, str]]) -> None:
        from nio import KeysClaimResponse

        olm = client.olm
        missing = client.get_missing_sessions(self.sink.room_id)
        wanted = {user: [d for d in devices if (user, d) in recipients] for user, devices in missing.items()}
        wanted = {user: devices for user, devices in wanted.items() if devices}
        if wanted:
            response = await client.keys_claim(wanted)
            if not isinstance(response, KeysClaimResponse):
                raise _Stopped("claiming one-time keys failed: " + _describe_error(response))
        reachable: set[tuple[str, str]] = set()
        for user_id, device_id in recipients:
            device = client.device_store[user_id][device_id]
            if olm.session_store.get(device.curve25519):
                reachable.add((user_id, device_id))
            else:
                log.warning("no Olm session with %s %s (no one-time key left): it cannot decrypt", user_id, device_id)
        if not olm.should_share_group_session(self.sink.room_id):
            return
        shared = await client.share_group_session(self.sink.room_id, ignore_unverified_devices=False)
        # nio swallows failed to-device requests and still marks the key as shared:
        # sending now would put messages in the room that nobody can decrypt.
        not_reached = reachable - set(getattr(shared, "users_shared_with", set()))
        if not_reached:
            olm.outbound_group_sessions.pop(self.sink.room_id, None)
            names = ", ".join(f"{u} {d}" for u, d in sorted(not_reached))
            raise _Stopped(f"sending the room key to {names} failed (homeserver unreachable or refusing)")

    async def _find_in_room(self, client: AsyncClient, creds: MatrixCredentials) -> frozenset[str]:
        """The transaction ids of the attempted alerts (text and picture) that are already
        in the room, read from the bot's own recent events (DESIGN §5).

        Only alerts marked attempted can be there (the mark is written before the send),
        so a delivery of new alerts costs nothing here. The homeserver's own dedup forgets
        transaction ids (Synapse after a day, others sooner or at a restart); the event
        keeps `unsigned.transaction_id` for the device that sent it, encrypted or not (an
        event sent by another device of the bot's account is not recognised: sent again).
        """
        wanted = {txn for alert in self.alerts if alert.attempted_at is not None for txn in self._txn_ids(alert)}
        if not wanted:
            return frozenset()
        room = quote(self.sink.room_id, safe="")
        # Lazy-loaded members keep the answer small; the senders filter makes every page ours.
        event_filter = quote(json.dumps({"senders": [creds.user_id], "lazy_load_members": True}, separators=(",", ":")))
        found: set[str] = set()
        since: str | None = None
        for _page in range(MESSAGES_PAGES):
            query = f"dir=b&limit={MESSAGES_PAGE}&filter={event_filter}" + (f"&from={quote(since)}" if since else "")
            page = await self._raw(
                client,
                "looking for alerts already in the room",
                "GET",
                f"/_matrix/client/v3/rooms/{room}/messages?{query}",
            )
            chunk = page.get("chunk")
            events = [e for e in chunk if isinstance(e, dict)] if isinstance(chunk, list) else []
            for event in events:
                unsigned = event.get("unsigned")
                txn = unsigned.get("transaction_id") if isinstance(unsigned, dict) else None
                if isinstance(txn, str) and txn in wanted:
                    found.add(txn)
                    log.info("%s is already in the room as %s: not sent again", txn, event.get("event_id"))
            end = page.get("end")
            if found == wanted or not events or not isinstance(end, str):
                break
            since = end
        return frozenset(found)

    async def _send_alerts(
        self, client: AsyncClient, recipients: set[tuple[str, str]], found: frozenset[str] = frozenset()
    ) -> None:
        keyed = False
        for alert in self.alerts:
            picture = self._picture(alert)
            send_text = alert.id not in found
            # A found text's picture may be missing: it follows the text, and may not have.
            send_picture_too = picture is not None and picture_txn_id(alert.id) not in found
            if (send_text or send_picture_too) and not keyed:
                # Before the first event that goes out; none when every alert is found.
                await self._share_room_key(client, recipients)
                keyed = True
            if send_text:
                await self._send_text(client, alert)
            if picture is not None and send_picture_too:
                # Delivered only with its picture: a failed upload keeps the alert queued,
                # and the retry's text reuses its transaction id (no duplicate text).
                await self._send_picture(client, picture, alert.id)
            self.delivered.append(alert.id)

    def _picture(self, alert: Alert) -> Picture | None:
        """The alert's chart, drawn once per delivery and before its text goes out, so the
        picture follows the text at once (DESIGN §7); one that cannot be drawn is logged
        there and the text goes out alone."""
        if alert.id not in self.pictures:
            self.pictures[alert.id] = picture_for(alert.details, alert_id=alert.id)
        return self.pictures[alert.id]

    def _txn_ids(self, alert: Alert) -> tuple[str, ...]:
        """The transaction ids an alert can have put in the room: its text's and its picture's."""
        return (alert.id, picture_txn_id(alert.id)) if self._picture(alert) is not None else (alert.id,)

    async def _send_text(self, client: AsyncClient, alert: Alert) -> None:
        from nio import RoomSendResponse

        plain, html = alert.plain, alert.html
        notice = self.identity_notice if alert.kind == "armed" else None
        if notice:
            # Said once, where the person setting the bot up looks first: in the first
            # armed message only (with ACCOUNTS, several accounts arm together).
            plain += f"\n\n⚠️ {notice}"
            html += f"<p>⚠️ {escape(notice)}</p>"
        content = {
            "msgtype": "m.text",
            "body": plain,
            "format": "org.matrix.custom.html",
            "formatted_body": html,
        }
        response = await client.room_send(
            self.sink.room_id, "m.room.message", content, tx_id=alert.id, ignore_unverified_devices=False
        )
        if not isinstance(response, RoomSendResponse):
            raise _Stopped(f"sending alert {alert.id} failed: " + _describe_error(response))
        if notice:
            self.identity_notice = None
        log.info("delivered alert %s as %s", alert.id, response.event_id)

    async def _send_picture(self, client: AsyncClient, picture: Picture, alert_id: str) -> None:
        media = MediaMemory(self.sink.store_dir / MEDIA_MEMORY)
        await send_picture(client, self.sink.room_id, picture, tx_id=picture_txn_id(alert_id), media=media)

    def _login_hint(self, creds: MatrixCredentials) -> str:
        return LOGIN_HINT.format(hs=creds.homeserver_url, user=creds.user_id)


# --- pictures ---------------------------------------------------------------------------------


def picture_txn_id(alert_id: str) -> str:
    """The picture's transaction id, derived from its alert's: a retry never posts it twice."""
    return f"{alert_id}-chart"


class MediaMemory:
    """Uploads not yet known to be posted, by transaction id (`media.json` in store_dir).

    A retried picture reuses its upload instead of leaving an orphan on the homeserver.
    The file key is kept in the clear beside the key store: it unlocks only a chart whose
    numbers state.json already holds in the clear, and a picture's entry goes once posted.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def recall(self, tx_id: str, png: bytes) -> dict[str, Any] | None:
        entry = _read_json(self.path).get(tx_id)
        # Only for the very same picture: a redrawn chart is a new upload.
        if isinstance(entry, dict) and entry.get("sha256") == _sha256(png) and isinstance(entry.get("file"), dict):
            file: dict[str, Any] = entry["file"]
            return file
        return None

    def remember(self, tx_id: str, png: bytes, file: dict[str, Any]) -> None:
        entries = _read_json(self.path)
        entries[tx_id] = {"sha256": _sha256(png), "file": file}
        _write_json(self.path, dict(list(entries.items())[-MEDIA_MEMORY_SIZE:]))

    def forget(self, tx_id: str) -> None:
        entries = _read_json(self.path)
        if entries.pop(tx_id, None) is not None:
            _write_json(self.path, entries)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def send_picture(
    client: AsyncClient, room_id: str, picture: Picture, *, tx_id: str, media: MediaMemory | None = None
) -> str:
    """Upload `picture` encrypted and post it as an `m.image`; returns the event id.

    The homeserver sees only ciphertext: nio encrypts with AES-CTR and hands back the key,
    iv and ciphertext sha256, which travel inside the (Megolm-encrypted) event's `file`.
    With `media`, an upload is remembered until its event is posted and reused by a retry.
    """
    from nio import RoomSendResponse

    png = picture.png
    file = media.recall(tx_id, png) if media is not None else None
    if file is None:
        file = await _upload_picture(client, png, tx_id)
        if media is not None:
            media.remember(tx_id, png, file)
    else:
        log.info("reusing the upload of chart %s (%s)", tx_id, file.get("url"))
    info = {"mimetype": "image/png", "size": len(png), "w": picture.width, "h": picture.height}
    content = {"msgtype": "m.image", "body": picture.body, "info": info, "file": file}
    response = await client.room_send(room_id, "m.room.message", content, tx_id=tx_id, ignore_unverified_devices=False)
    if not isinstance(response, RoomSendResponse):
        raise _Stopped(f"sending the chart ({tx_id}) failed: " + _describe_error(response))
    if media is not None:
        media.forget(tx_id)
    log.info("delivered chart %s as %s (%d bytes)", tx_id, response.event_id, len(png))
    event_id: str = response.event_id
    return event_id


async def _upload_picture(client: AsyncClient, png: bytes, tx_id: str) -> dict[str, Any]:
    """The encrypted upload; returns the event's `file` (mxc URL, key, iv, hashes)."""
    from nio import UploadResponse

    uploaded, keys = await client.upload(
        lambda _got_429, _got_timeouts: png,
        content_type="image/png",
        encrypt=True,
        filesize=len(png),  # AES-CTR: the ciphertext is as long as the PNG
    )
    if not isinstance(uploaded, UploadResponse) or not keys:
        raise _Stopped(f"uploading the chart ({tx_id}) failed: " + _describe_error(uploaded))
    return {"url": uploaded.content_uri, "mimetype": "image/png", **keys}


@functools.cache
def _keys_query_response_class() -> type:
    """nio's KeysQueryResponse, keeping the whole answer (nio drops the cross-signing keys)."""
    from nio import KeysQueryResponse

    class KeysQueryWithIdentities(KeysQueryResponse):  # type: ignore[misc]  # nio is untyped
        @classmethod
        def from_dict(cls, parsed_dict: dict[str, Any]) -> Any:
            response = super().from_dict(parsed_dict)
            if isinstance(response, KeysQueryResponse):
                response.answer = parsed_dict
            return response

    return KeysQueryWithIdentities


# --- nio error values → sentences ------------------------------------------------------------


def _describe_error(response: Any) -> str:
    transport = getattr(response, "transport_response", None)
    status = getattr(transport, "status", None)
    errcode = getattr(response, "status_code", None)
    message = getattr(response, "message", None)
    retry_after_ms = getattr(response, "retry_after_ms", None)
    return _describe_status(status, errcode, message, {"retry_after_ms": retry_after_ms})


def _describe_status(status: int | None, errcode: Any, message: Any, payload: dict[str, Any]) -> str:
    code = str(errcode) if errcode else ""
    text = str(message) if message else ""
    if code == "M_UNKNOWN_TOKEN" or status == 401:
        return (
            "the homeserver no longer accepts the bot's access token (M_UNKNOWN_TOKEN: logged out or revoked); "
            "log in again and update MATRIX_CREDS_DIR"
        )
    if code == "M_LIMIT_EXCEEDED" or status == 429:
        retry = payload.get("retry_after_ms")
        hint = f", retry after {int(retry) / 1000:g}s" if isinstance(retry, int | float) and retry else ""
        return f"rate limited by the homeserver (429 M_LIMIT_EXCEEDED{hint}); the next cycle retries"
    if code == "M_FORBIDDEN" or status == 403:
        return f"the homeserver refused (M_FORBIDDEN: {text or 'forbidden'}): was the bot kicked or banned?"
    if status is not None and status >= 500:
        return f"the homeserver failed (HTTP {status}{': ' + text if text else ''}); the next cycle retries"
    parts = [p for p in (f"HTTP {status}" if status else "", code, text) if p]
    return ": ".join(parts) or "no usable answer from the homeserver"


# --- small files in store_dir ----------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_sync_state(path: Path) -> _SyncState:
    data = _read_json(path)
    token = data.get("next_batch")
    if not isinstance(token, str):
        return _SyncState()

    def users(key: str) -> frozenset[str]:
        value = data.get(key)
        return frozenset(u for u in value if isinstance(u, str)) if isinstance(value, list) else frozenset()

    room_id = data.get("room_id")
    device = data.get("device")
    identities_data = data.get("identities")
    identities = (
        {u: PublishedIdentity.from_json(u, i) for u, i in identities_data.items() if isinstance(u, str)}
        if isinstance(identities_data, dict)
        else None
    )
    return _SyncState(
        next_batch=token,
        device=device if isinstance(device, str) else None,
        tracked_users=users("tracked_users"),
        room_id=room_id if isinstance(room_id, str) else None,
        joined=users("joined"),
        invited=users("invited"),
        identities=identities,
    )


def _write_sync_state(path: Path, state: _SyncState) -> None:
    _write_json(
        path,
        {
            "next_batch": state.next_batch,
            "device": state.device,
            "tracked_users": sorted(state.tracked_users),
            "room_id": state.room_id,
            "joined": sorted(state.joined),
            "invited": sorted(state.invited),
            "identities": {u: i.to_json() for u, i in sorted((state.identities or {}).items())},
        },
    )
