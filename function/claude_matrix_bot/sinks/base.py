"""The sink contract."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..model import Alert


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """Which alerts the sink's far side accepted. Only these leave the outbox.

    `error` is set when the sink stopped early; the remaining alerts stay queued
    and the cycle reports failure.
    """

    delivered: tuple[str, ...]
    error: str | None = None
    requests: int = 0  # network requests spent, for the benchmark and the summary
    # Refused for good by the far side (too large, malformed): logged and recorded by the
    # sink, out of the outbox so they never hold back the alerts behind them.
    set_aside: tuple[str, ...] = ()

    @property
    def settled(self) -> tuple[str, ...]:
        """The alerts that leave the outbox: delivered or set aside."""
        return self.delivered + self.set_aside


class AlertSink(Protocol):
    def deliver(self, alerts: Sequence[Alert]) -> DeliveryReport:
        """Deliver in order; stop at the first failure. Never raise for an expected
        delivery failure: report it. Each alert's `id` is its idempotency key."""
        ...
