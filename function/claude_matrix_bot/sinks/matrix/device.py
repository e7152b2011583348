"""The bot's one stable device: its key store opened (never a second identity minted)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .credentials import MatrixCredentials, _Stopped
from .describe import _describe_error
from .session import _Session, keep_private
from .sync_state import DEVICE_MARKER, _read_json, _write_json

if TYPE_CHECKING:
    from nio import AsyncClient


class _DeviceSession(_Session):
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
        keep_private(store_dir)  # the database nio just created or opened
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
