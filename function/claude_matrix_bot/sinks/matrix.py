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
  lost key store is noticed instead of silently minting a second identity.

Cost of a warm delivery of n alerts: 1 sync (filtered to the alert room, full room state,
no timeline) + 1 to-device (a fresh Megolm room key: nio does not persist outbound
sessions) + n room sends; plus /keys/query when a member's devices changed, /keys/claim
for a device we have no Olm session with, and /keys/upload when one-time keys ran low.

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
import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..charts import Picture, picture_for
from ..model import Alert
from ..settings import TrustedDevice
from .base import DeliveryReport

if TYPE_CHECKING:
    from nio import AsyncClient

log = logging.getLogger(__name__)

DEVICE_MARKER = "device.json"
SYNC_STATE = "sync.json"
CREDENTIAL_FILES = ("homeserver_url", "user_id", "access_token", "device_id")
LOGIN_HINT = (
    "log in again to get a new device: curl -XPOST {hs}/_matrix/client/v3/login "
    '-d \'{{"type":"m.login.password","identifier":{{"type":"m.id.user","user":"{user}"}},'
    '"password":"…","initial_device_display_name":"claude-matrix-bot"}}\' '
    "and put the new access_token and device_id into MATRIX_CREDS_DIR (README: Matrix setup)"
)


class _Stopped(Exception):
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
    ) -> None:
        self.creds_dir = creds_dir
        self.room_id = room_id
        self.store_dir = store_dir
        self.trusted_devices = trusted_devices
        self._store_passphrase = store_passphrase
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"MatrixSink(room_id={self.room_id!r}, store_dir={str(self.store_dir)!r})"

    def deliver(self, alerts: Sequence[Alert]) -> DeliveryReport:
        if not alerts:
            return DeliveryReport(())
        return asyncio.run(_Delivery(self, list(alerts)).run())


class _Delivery:
    """One delivery: one nio client, opened and closed here."""

    def __init__(self, sink: MatrixSink, alerts: list[Alert]) -> None:
        self.sink = sink
        self.alerts = alerts
        self.delivered: list[str] = []
        self.requests = 0
        self.creds: MatrixCredentials | None = None

    # --- the frame: never raise, never leak the token -------------------------------

    async def run(self) -> DeliveryReport:
        error: str | None = None
        client: AsyncClient | None = None
        try:
            self.creds = MatrixCredentials.from_dir(self.sink.creds_dir)
            client = self._client(self.creds)
            # A whole delivery is bounded too: nio's own sync path can wait without limit.
            async with asyncio.timeout(self.sink.timeout * 6):
                await self._deliver(client, self.creds)
        except _Stopped as exc:
            error = str(exc)
        except Exception as exc:  # the contract: report, never raise
            error = self._describe_exception(exc)
        finally:
            if client is not None:
                await self._close(client)
        if error is not None:
            error = self._scrub(error)
            log.error("matrix delivery stopped after %d of %d alerts: %s", len(self.delivered), len(self.alerts), error)
        return DeliveryReport(tuple(self.delivered), error=error, requests=self.requests)

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

        device = f"{creds.user_id} {creds.device_id}"
        sync_state = _read_sync_state(store_dir / SYNC_STATE)
        if sync_state.device != device:  # written for another login: start over
            sync_state = _SyncState()
        # Users whose device lists we already know: from here on the sync's
        # device_lists.changed tells us about their new devices.
        client.olm.tracked_users = set(sync_state.tracked_users)

        if client.should_upload_keys:
            response = await client.keys_upload()
            if not isinstance(response, KeysUploadResponse):
                raise _Stopped("uploading the bot's encryption keys failed: " + _describe_error(response))
            if not marker_is_ours:
                _write_json(
                    store_dir / DEVICE_MARKER,
                    {"user_id": creds.user_id, "device_id": creds.device_id, **identity},
                )

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
            ),
        )

        recipients = self._apply_trust(client, room)
        await self._share_room_key(client, recipients)
        await self._send_alerts(client)

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

    async def _raw(self, client: AsyncClient, step: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """A plain JSON call with nio's session (no nio state change)."""
        assert self.creds is not None
        headers = {"Authorization": f"Bearer {self.creds.access_token}", "Content-Type": "application/json"}
        data = json.dumps(body) if body is not None else None
        response = await client.send(method, path, data, headers)
        try:
            payload = await response.json(content_type=None)
        except ValueError:
            payload = {}
        if not isinstance(payload, dict):
            payload = {}
        if response.status != 200:
            raise _Stopped(
                f"{step} failed: "
                + _describe_status(response.status, payload.get("errcode"), payload.get("error"), payload)
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
        from nio import KeysQueryResponse

        if not client.should_query_keys:
            return
        response = await client.keys_query()
        if not isinstance(response, KeysQueryResponse):
            raise _Stopped("querying the room members' device keys failed: " + _describe_error(response))

    def _apply_trust(self, client: AsyncClient, room: Any) -> set[tuple[str, str]]:
        """Decide, every delivery, which devices get the room key; returns them.

        Trust on first use when no device is pinned: every device nio learned (nio keeps
        the first ed25519 key of a device id and ignores later changes) is verified.
        Strict when MATRIX_TRUSTED_DEVICES is set: pinned devices with the pinned key
        only; everything else is blacklisted, so it never receives a room key.
        """
        olm = client.olm
        pinned = {(d.user_id, d.device_id): d.ed25519 for d in self.sink.trusted_devices}
        seen: set[tuple[str, str]] = set()
        recipients: set[tuple[str, str]] = set()
        for user_id in sorted(room.users):
            for device in client.device_store.active_user_devices(user_id):
                if user_id == client.user_id and device.id == client.device_id:
                    continue
                seen.add((user_id, device.id))
                if not pinned:
                    if not olm.is_device_verified(device):
                        log.info("trusting %s %s on first use (ed25519 %s)", user_id, device.id, device.ed25519)
                        client.verify_device(device)
                    recipients.add((user_id, device.id))
                    continue
                expected = pinned.get((user_id, device.id))
                if expected is None:
                    log.warning("not sending room keys to %s %s (not in MATRIX_TRUSTED_DEVICES)", user_id, device.id)
                    client.blacklist_device(device)
                elif expected != device.ed25519:
                    log.error(
                        "PINNED DEVICE KEY MISMATCH: %s %s presents ed25519 %s, MATRIX_TRUSTED_DEVICES pins %s; "
                        "not sending it room keys (possible impersonation, or a wrong pin)",
                        user_id,
                        device.id,
                        device.ed25519,
                        expected,
                    )
                    client.blacklist_device(device)
                else:
                    if not olm.is_device_verified(device):
                        client.verify_device(device)
                    recipients.add((user_id, device.id))
        for user_id, device_id in pinned.keys() - seen:
            log.warning("pinned device %s %s is not in room %s (or has no keys)", user_id, device_id, room.room_id)
        if pinned and not recipients:
            raise _Stopped(
                f"none of the MATRIX_TRUSTED_DEVICES is in room {room.room_id}: nobody could decrypt the alerts"
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

    async def _send_alerts(self, client: AsyncClient) -> None:
        from nio import RoomSendResponse

        for alert in self.alerts:
            # Drawn before the text goes out, so the picture follows it at once (DESIGN §7);
            # a chart that cannot be drawn is logged there and the text goes out alone.
            picture = picture_for(alert.details, alert_id=alert.id)
            content = {
                "msgtype": "m.text",
                "body": alert.plain,
                "format": "org.matrix.custom.html",
                "formatted_body": alert.html,
            }
            response = await client.room_send(
                self.sink.room_id, "m.room.message", content, tx_id=alert.id, ignore_unverified_devices=False
            )
            if not isinstance(response, RoomSendResponse):
                raise _Stopped(f"sending alert {alert.id} failed: " + _describe_error(response))
            if picture is not None:
                # Delivered only with its picture: a failed upload keeps the alert queued,
                # and the retry's text reuses its transaction id (no duplicate text).
                await send_picture(client, self.sink.room_id, picture, tx_id=picture_txn_id(alert.id))
            self.delivered.append(alert.id)
            log.info("delivered alert %s as %s", alert.id, response.event_id)

    def _login_hint(self, creds: MatrixCredentials) -> str:
        return LOGIN_HINT.format(hs=creds.homeserver_url, user=creds.user_id)


# --- pictures ---------------------------------------------------------------------------------


def picture_txn_id(alert_id: str) -> str:
    """The picture's transaction id, derived from its alert's: a retry never posts it twice."""
    return f"{alert_id}-chart"


async def send_picture(client: AsyncClient, room_id: str, picture: Picture, *, tx_id: str) -> str:
    """Upload `picture` encrypted and post it as an `m.image`; returns the event id.

    The homeserver sees only ciphertext: nio encrypts with AES-CTR and hands back the key,
    iv and ciphertext sha256, which travel inside the (Megolm-encrypted) event's `file`.
    """
    from nio import RoomSendResponse, UploadResponse

    png = picture.png
    uploaded, keys = await client.upload(
        lambda _got_429, _got_timeouts: png,
        content_type="image/png",
        encrypt=True,
        filesize=len(png),  # AES-CTR: the ciphertext is as long as the PNG
    )
    if not isinstance(uploaded, UploadResponse) or not keys:
        raise _Stopped(f"uploading the chart ({tx_id}) failed: " + _describe_error(uploaded))
    info = {"mimetype": "image/png", "size": len(png), "w": picture.width, "h": picture.height}
    content = {
        "msgtype": "m.image",
        "body": picture.body,
        "info": info,
        "file": {"url": uploaded.content_uri, "mimetype": "image/png", **keys},
    }
    response = await client.room_send(room_id, "m.room.message", content, tx_id=tx_id, ignore_unverified_devices=False)
    if not isinstance(response, RoomSendResponse):
        raise _Stopped(f"sending the chart ({tx_id}) failed: " + _describe_error(response))
    log.info("delivered chart %s as %s (%d bytes)", tx_id, response.event_id, len(png))
    event_id: str = response.event_id
    return event_id


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
    return _SyncState(
        next_batch=token,
        device=device if isinstance(device, str) else None,
        tracked_users=users("tracked_users"),
        room_id=room_id if isinstance(room_id, str) else None,
        joined=users("joined"),
        invited=users("invited"),
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
        },
    )
