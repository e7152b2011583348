"""`MatrixSink`: the sink contract (base.AlertSink) and `prime` for matrix-login."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ...logs import Redactor
from ...model import Alert
from ...settings import TrustedDevice
from ..base import DeliveryReport
from .credentials import MatrixCredentials
from .delivery import _Delivery
from .session import CrossSigningOutcome

if TYPE_CHECKING:
    from nio import AsyncClient

log = logging.getLogger(__package__)  # one logger for the whole sink, as before the split


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
        mention: tuple[str, ...] = (),
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
        # MATRIX_MENTION: who an urgent alert mentions (docs/design.md §9).
        self.mention = mention

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
        return DeliveryReport(
            tuple(delivery.delivered), error=error, requests=delivery.requests, set_aside=tuple(delivery.set_aside)
        )

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
