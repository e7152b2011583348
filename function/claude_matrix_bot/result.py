"""What one cycle did: the summary both entry points translate (exit code, HTTP answer, JSON)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .errors import BotError, LeaseHeld

CycleStatus = Literal["ok", "failed", "busy", "too_soon"]
TOO_SOON_HTTP_STATUS = 429  # sooner than MIN_INTERVAL_SEC after the last poll


@dataclass(frozen=True, slots=True)
class CycleResult:
    status: CycleStatus
    new_alerts: int = 0
    delivered: int = 0
    pending: int = 0
    error: str | None = None
    # The error family of what failed: it says the failure word, the exit code and the
    # HTTP status itself (errors.py).
    family: type[BotError] | None = None
    retry_after: float | None = None
    # With several accounts (docs/design.md §6): each account's own summary, by name.
    accounts: tuple[tuple[str, dict[str, Any]], ...] = ()

    @classmethod
    def failed(cls, error: str, family: type[BotError], **counts: Any) -> CycleResult:
        return cls("failed", error=error, family=family, **counts)

    @property
    def failure(self) -> str | None:
        """Which part failed: "upstream", "delivery", "storage" or "config"."""
        return self.family.failure if self.family is not None else None

    @property
    def exit_code(self) -> int:
        """CLI contract (docs/design.md §3): 0 when the work is done or there was nothing to do
        (another cycle holding the lease included), non-zero when something failed."""
        if self.status != "failed" or self.family is None:
            return 0
        return self.family.exit_code

    @property
    def http_status(self) -> int:
        """The HTTP trigger's answer (the table in http.py)."""
        if self.status == "busy":
            return LeaseHeld.http_status
        if self.status == "too_soon":
            return TOO_SOON_HTTP_STATUS
        if self.status != "failed" or self.family is None:
            return 200
        return self.family.http_status

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "new_alerts": self.new_alerts,
            "delivered": self.delivered,
            "pending": self.pending,
        }
        if self.error:
            out["error"] = self.error
            out["failure"] = self.failure
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        if self.accounts:
            out["accounts"] = dict(self.accounts)
        return out
