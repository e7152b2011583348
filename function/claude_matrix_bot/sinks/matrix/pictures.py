"""Charts as encrypted `m.image` events (docs/design.md §7), each upload remembered until posted."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...charts import Picture
from .credentials import _Stopped
from .describe import _describe_error
from .sync_state import _read_json, _write_json

if TYPE_CHECKING:
    from nio import AsyncClient

log = logging.getLogger(__package__)  # one logger for the whole sink, as before the split

MEDIA_MEMORY = "media.json"
MEDIA_MEMORY_SIZE = 32


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
    # Pings no one (docs/design.md §9: every message carries m.mentions).
    content = {"msgtype": "m.image", "body": picture.body, "info": info, "file": file, "m.mentions": {}}
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
