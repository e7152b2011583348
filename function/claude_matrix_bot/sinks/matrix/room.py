"""The alert room as nio must see it before a send: synced (warm from sync.json, or
full), joined on invite, encrypted, every member's devices queried."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

from ..crosssigning import PublishedIdentity
from .credentials import MatrixCredentials, _Stopped
from .describe import _describe_error
from .identity import _IdentitySession
from .sync_state import SYNC_STATE, _read_sync_state, _SyncState, _write_sync_state

if TYPE_CHECKING:
    from nio import AsyncClient

log = logging.getLogger(__package__)  # one logger for the whole sink, as before the split


class _RoomSession(_IdentitySession):
    async def _prepare_room(self, client: AsyncClient, creds: MatrixCredentials) -> Any:
        """The alert room, synced, joined and encrypted, with every member's devices known;
        sync.json advanced only once all of that sync's device-list changes are queried."""
        device = f"{creds.user_id} {creds.device_id}"
        sync_state = self._load_sync_state(client, device)
        room = await self._sync_room(client, creds, sync_state)
        await self._save_sync_state(client, room, device)
        return room

    def _load_sync_state(self, client: AsyncClient, device: str) -> _SyncState:
        sync_state = _read_sync_state(self.sink.store_dir / SYNC_STATE)
        if sync_state.device != device:  # written for another login: start over
            sync_state = _SyncState()
        # Users whose device lists we already know: from here on the sync's
        # device_lists.changed tells us about their new devices.
        client.olm.tracked_users = set(sync_state.tracked_users)
        self.identities = dict(sync_state.identities or {})
        if sync_state.identities is None:
            # Written before identities were kept: learn them once, with one /keys/query.
            client.olm.users_for_key_query.update(sync_state.tracked_users)
        return sync_state

    async def _sync_room(self, client: AsyncClient, creds: MatrixCredentials, sync_state: _SyncState) -> Any:
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
        return room

    async def _save_sync_state(self, client: AsyncClient, room: Any, device: str) -> None:
        from nio import KeysUploadResponse

        if client.should_upload_keys:  # one-time keys were claimed by others: top up
            response = await client.keys_upload()
            if not isinstance(response, KeysUploadResponse):
                raise _Stopped("uploading one-time keys failed: " + _describe_error(response))
        await self._query_keys(client)
        # Only now are all device-list changes of this sync queried: advancing the token
        # earlier could skip a recipient's new device for good.
        _write_sync_state(
            self.sink.store_dir / SYNC_STATE,
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
