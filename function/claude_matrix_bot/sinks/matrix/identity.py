"""The bot's own cross-signing identity: the device signed by it, the identity created
when the account has none (see crosssigning.py for the keys and records)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..crosssigning import CrossSigningError, CrossSigningKeys, PublishedIdentity, load_keys, save_keys, single_key
from ..identity_record import (
    IdentityRecord,
    foreign_identity_notice,
    read_identity,
    signature_notice,
    write_identity,
)
from .credentials import MatrixCredentials, _Stopped
from .describe import _describe_status
from .device import _DeviceSession
from .session import CrossSigningOutcome

if TYPE_CHECKING:
    from nio import AsyncClient

log = logging.getLogger(__package__)  # one logger for the whole sink, as before the split


class _IdentitySession(_DeviceSession):
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
        return await self._sign_device(client, creds, keys, query, created=created)

    async def _sign_device(
        self,
        client: AsyncClient,
        creds: MatrixCredentials,
        keys: CrossSigningKeys,
        query: dict[str, Any],
        *,
        created: bool,
    ) -> CrossSigningOutcome:
        """Sign this device (its keys as `query` publishes them) with the bot's identity,
        then check that recipients can see the signature (issue 25): a homeserver may drop
        the upload, or report rejected signatures inside a 200 (`failures`)."""
        user_id, device_id = creds.user_id, creds.device_id
        device_keys = query.get("device_keys", {}).get(user_id, {}).get(device_id)
        if not isinstance(device_keys, dict):
            raise _Stopped(f"the homeserver does not publish the keys of the bot's device {device_id}; cannot sign it")
        body = {user_id: {device_id: keys.sign_device(device_keys)}}
        answer = await self._raw(
            client, "signing the bot's device", "POST", "/_matrix/client/v3/keys/signatures/upload", body
        )
        failures = answer.get("failures")
        why: str | None
        if failures:
            why = "the homeserver answered the upload with failures: " + json.dumps(failures, sort_keys=True)[:300]
        else:
            why = await self._signature_hidden(client, creds, keys, device_keys)
        notice = signature_notice(device_id, why) if why else None
        self._record_signing(creds, keys, created=created, notice=notice)
        if notice:
            # Never a silent pass: the log, `status` and the next message in the room say it.
            log.error("%s", notice)
            self.signature_notice = notice
            return CrossSigningOutcome(master=keys.master.public, created=created, signature_problem=notice)
        log.info("signed the bot's device %s with its cross-signing identity", device_id)
        return CrossSigningOutcome(master=keys.master.public, created=created)

    async def _signature_hidden(
        self, client: AsyncClient, creds: MatrixCredentials, keys: CrossSigningKeys, device_keys: dict[str, Any]
    ) -> str | None:
        """Why recipients would not see this device signed by the bot's identity (None: they do),
        from the homeserver's own /keys/query answer, every signature checked."""
        answer = await self._raw(
            client,
            "checking the bot's published signature",
            "POST",
            "/_matrix/client/v3/keys/query",
            {"device_keys": {creds.user_id: [creds.device_id]}},
        )
        published = PublishedIdentity.from_keys_query(answer, creds.user_id)
        ed25519 = device_keys.get("keys", {}).get(f"ed25519:{creds.device_id}")
        if published.master != keys.master.public:
            return f"the homeserver publishes master key {published.master}, not the bot's {keys.master.public}"
        if not isinstance(ed25519, str) or not published.signs(creds.device_id, ed25519):
            return "the homeserver accepted the signature but does not publish it"
        return None

    def _record_signing(
        self, creds: MatrixCredentials, keys: CrossSigningKeys, *, created: bool, notice: str | None
    ) -> None:
        """identity.json after signing: the device listed as signed only once it is seen so
        (an unseen one is signed again on the next delivery)."""
        store_dir, device_id = self.sink.store_dir, creds.device_id
        previous = read_identity(store_dir)
        signed = previous.signed_devices if previous.master == keys.master.public and not created else ()
        signed = tuple(d for d in signed if d != device_id) + (() if notice else (device_id,))
        record = IdentityRecord(
            user_id=creds.user_id,
            master=keys.master.public,
            self_signing=keys.self_signing.public,
            signed_devices=signed,
            withheld=previous.withheld,
            signature_problem=notice,
        )
        write_identity(
            store_dir, replace(record, set_aside=previous.set_aside, set_aside_total=previous.set_aside_total)
        )

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
