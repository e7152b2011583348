"""The delivery proper: the device ready, the room ready, the trust decided, the alerts
found in the room or sent (text, then its picture)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ...charts import Picture, picture_for
from ...model import Alert
from ..identity_record import read_identity, record_set_aside, write_identity
from .credentials import MatrixCredentials, _Stopped
from .describe import _describe_error
from .fit import fit_message, refused_for_good
from .mentions import mention
from .pictures import MEDIA_MEMORY, MediaMemory, picture_txn_id, send_picture
from .room import _RoomSession
from .trust import Device, TrustPolicy, decide_trust

if TYPE_CHECKING:
    from nio import AsyncClient

log = logging.getLogger(__package__)  # one logger for the whole sink, as before the split

# How far back the bot looks for an attempted alert (docs/design.md §5): its own events only.
# Attempted alerts head the outbox and are retried first, so they are among the last few.
MESSAGES_PAGE = 50
MESSAGES_PAGES = 3


class _Delivery(_RoomSession):
    """One delivery: one nio client, opened and closed by the session frame."""

    async def _deliver(self, client: AsyncClient, creds: MatrixCredentials) -> None:
        await self._open_device(client, creds)
        # Before anything is sent: a recipient judges the sender device as it is when the
        # room key arrives.
        await self._ensure_cross_signed(client, creds)
        room = await self._prepare_room(client, creds)
        recipients = self._apply_trust(client, room)
        found = await self._find_in_room(client, creds)
        await self._send_alerts(client, recipients, found)

    def _apply_trust(self, client: AsyncClient, room: Any) -> set[tuple[str, str]]:
        """Decide, every delivery, which devices get the room key (trust.decide_trust);
        returns them. The refused are blacklisted, so they never receive a room key; the
        admitted are verified (on first use when nothing is pinned: nio keeps the first
        ed25519 key of a device id and ignores later changes)."""
        policy = TrustPolicy.from_settings(self.sink.trusted_devices, self.sink.exclude_insecure_devices)
        own = (client.user_id, client.device_id)
        devices = {
            user_id: [
                Device(user_id, d.id, d.ed25519)
                for d in client.device_store.active_user_devices(user_id)
                if (user_id, d.id) != own
            ]
            for user_id in room.users
        }
        decision = decide_trust(policy, room.room_id, list(room.users), devices, self.identities)
        for level, note in decision.notes:
            log.log(level, "%s", note)
        for device in decision.refused:
            client.blacklist_device(client.device_store[device.user_id][device.device_id])
        for device in decision.recipients:
            known = client.device_store[device.user_id][device.device_id]
            if not client.olm.is_device_verified(known):
                if not policy.strict:
                    log.info(
                        "trusting %s %s on first use (ed25519 %s)", device.user_id, device.device_id, device.ed25519
                    )
                client.verify_device(known)
        record = read_identity(self.sink.store_dir)
        write_identity(self.sink.store_dir, replace(record, withheld=decision.withheld))
        if decision.problem:
            raise _Stopped(decision.problem)
        return {(d.user_id, d.device_id) for d in decision.recipients}

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
            why = self.last_refusal or "homeserver unreachable or refusing"
            raise _Stopped(f"sending the room key to {names} failed ({why}); the alerts wait for a new room key")

    async def _find_in_room(self, client: AsyncClient, creds: MatrixCredentials) -> frozenset[str]:
        """The transaction ids of the attempted alerts (text and picture) that are already
        in the room, read from the bot's own recent events (docs/design.md §5).

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
            if send_text and not await self._send_text(client, alert):
                continue  # set aside: refused for good, the rest still goes out
            if picture is not None and send_picture_too:
                # Delivered only with its picture: a failed upload keeps the alert queued,
                # and the retry's text reuses its transaction id (no duplicate text).
                await self._send_picture(client, picture, alert.id)
            self.delivered.append(alert.id)

    def _picture(self, alert: Alert) -> Picture | None:
        """The alert's chart, drawn once per delivery and before its text goes out, so the
        picture follows the text at once (docs/design.md §7); one that cannot be drawn is logged
        there and the text goes out alone."""
        if alert.id not in self.pictures:
            self.pictures[alert.id] = picture_for(alert.details, alert_id=alert.id)
        return self.pictures[alert.id]

    def _txn_ids(self, alert: Alert) -> tuple[str, ...]:
        """The transaction ids an alert can have put in the room: its text's and its picture's."""
        return (alert.id, picture_txn_id(alert.id)) if self._picture(alert) is not None else (alert.id,)

    async def _send_text(self, client: AsyncClient, alert: Alert) -> bool:
        """Sent (True), or set aside (False) when the homeserver refuses it for good."""
        from nio import RoomSendResponse

        plain, html = alert.plain, alert.html
        notice = self.signature_notice or (self.identity_notice if alert.kind == "armed" else None)
        if notice:
            # Said once, where the person setting the bot up looks first: in the first
            # armed message only (with ACCOUNTS, several accounts arm together).
            plain += f"\n\n⚠️ {notice}"
            html += f"<p>⚠️ {escape(notice)}</p>"
        plain, html = fit_message(plain, html)  # well under the homeserver's event limit
        # Urgent alerts ring the MATRIX_MENTION users; every other message pings no one.
        said = mention(plain, html, self.sink.mention if alert.urgent else ())
        content = {
            "msgtype": "m.text",
            "body": said.plain,
            "format": "org.matrix.custom.html",
            "formatted_body": said.html,
            "m.mentions": said.mentions,
        }
        response = await client.room_send(
            self.sink.room_id, "m.room.message", content, tx_id=alert.id, ignore_unverified_devices=False
        )
        if not isinstance(response, RoomSendResponse):
            status = getattr(getattr(response, "transport_response", None), "status", None)
            if refused_for_good(status, getattr(response, "status_code", None)):
                self._set_aside(alert, _describe_error(response))
                return False
            raise _Stopped(f"sending alert {alert.id} failed: " + _describe_error(response))
        if notice:
            self.identity_notice = self.signature_notice = None
        log.info("delivered alert %s as %s", alert.id, response.event_id)
        return True

    def _set_aside(self, alert: Alert, why: str) -> None:
        """Retried first forever, it would hold back every alert behind it: out of the
        outbox, logged, and kept in identity.json for `status` (issue 21 item 2)."""
        log.error("alert %s (%s) set aside: the homeserver refuses it for good (%s)", alert.id, alert.kind, why)
        self.set_aside.append(alert.id)
        record_set_aside(self.sink.store_dir, f"{alert.id} ({alert.kind}): {why}")

    async def _send_picture(self, client: AsyncClient, picture: Picture, alert_id: str) -> None:
        media = MediaMemory(self.sink.store_dir / MEDIA_MEMORY)
        await send_picture(client, self.sink.room_id, picture, tx_id=picture_txn_id(alert_id), media=media)
