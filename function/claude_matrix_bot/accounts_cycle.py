"""One watch cycle over several accounts (DESIGN §6), under the one lease `run_cycle` holds.

Per account, in `ACCOUNTS` order: load `<name>/state.json` → its tokens → one
usage request → decide (or record the failure in *its* health counters) →
label the new alerts with the account (core.accounts) → save. An account that
fails is recorded and the next one runs: one account's failure never silences
another. Then every account's outbox goes to one sink in one delivery (one
Matrix session for the whole cycle, none when every outbox is empty, so quiet
cycles cost no Matrix request), and each account's state drops what was
delivered. The cycle fails if any account failed.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .core.accounts import for_account
from .core.decide import DecideConfig, Decision, decide, drop_delivered, record_failure
from .cycle import CycleResult, build_token_stores, explain, fetch_reading, load_state, open_sink, save_state
from .errors import BotError, ConfigError, DeliveryError, RateLimited, StorageError, UpstreamError
from .logs import redact
from .settings import Settings
from .sinks.base import AlertSink
from .state import State
from .store import BlobStore
from .tokens.base import TokenStore

log = logging.getLogger("claude_matrix_bot.cycle")


def state_key(account: str) -> str:
    """Where an account's state lives under STATE_URL (DESIGN §6)."""
    return f"{account}/state.json"


@dataclass
class _Account:
    """One account's state through the cycle (mutable: the cycle advances it step by step)."""

    name: str
    state: State | None
    version: str | None
    new_alerts: int = 0
    delivered: int = 0
    error: str | None = None
    family: type[BotError] | None = None  # what failed, if anything
    retry_after: float | None = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": "failed" if self.family else "ok",
            "new_alerts": self.new_alerts,
            "delivered": self.delivered,
            "pending": len(self.state.outbox) if self.state else 0,
        }
        if self.family:
            out["error"] = self.error
            out["failure"] = self.family.failure
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        return out


def accounts_cycle(
    settings: Settings,
    store: BlobStore,
    now: datetime,
    token_stores: dict[str, TokenStore] | None,
    sink: AlertSink | None,
    enforce_min_interval: bool,
) -> CycleResult:
    accounts: list[_Account] = []
    for name in settings.accounts:
        loaded = load_state(store, now, state_key(name))
        accounts.append(_Account(name, loaded.state, loaded.version))

    # MIN_INTERVAL_SEC: every account is polled in every cycle, so the latest poll counts.
    polls = [a.state.health.last_attempt_at for a in accounts if a.state and a.state.health.last_attempt_at]
    if enforce_min_interval and polls:
        elapsed = (now - max(polls)).total_seconds()
        if 0 <= elapsed < settings.min_interval_sec:
            return CycleResult(
                "too_soon",
                pending=sum(len(a.state.outbox) for a in accounts if a.state),
                retry_after=settings.min_interval_sec - elapsed,
            )

    try:
        stores = token_stores if token_stores is not None else build_token_stores(settings)
    except ConfigError as exc:
        return CycleResult.failed(str(exc), type(exc))
    config = DecideConfig.from_settings(settings)

    for account in accounts:
        decision = _decide_account(settings, account, stores[account.name], now, config)
        if decision is None:
            continue
        decision = for_account(decision, account.name)
        for alert in decision.alerts:
            log.info(
                "%s: alert %s %s%s", account.name, alert.kind, alert.id, f" ({alert.bucket})" if alert.bucket else ""
            )
        account.new_alerts = len(decision.alerts)
        account.state = decision.state
        account.version = save_state(store, decision.state, account.version, state_key(account.name))

    delivery_error = _deliver(settings, store, accounts, sink)
    if delivery_error:
        pending = sum(len(a.state.outbox) for a in accounts if a.state)
        log.error("delivery failed, %d alert(s) kept for the next run: %s", pending, delivery_error)
        for account in accounts:
            if account.family is None and account.state is not None and account.state.outbox:
                account.error, account.family = delivery_error, DeliveryError

    failed = [a for a in accounts if a.family]
    result = CycleResult(
        "failed" if failed else "ok",
        new_alerts=sum(a.new_alerts for a in accounts),
        delivered=sum(a.delivered for a in accounts),
        pending=sum(len(a.state.outbox) for a in accounts if a.state),
        accounts=tuple((a.name, a.summary()) for a in accounts),
    )
    if not failed:
        return result
    # The family an operator must act on first (errors.BotError.precedence).
    worst = min(failed, key=lambda a: a.family.precedence if a.family else BotError.precedence)
    retry_after = [a.retry_after for a in failed if a.retry_after is not None]
    return CycleResult(
        "failed",
        new_alerts=result.new_alerts,
        delivered=result.delivered,
        pending=result.pending,
        error="; ".join(f"{a.name}: {a.error}" for a in failed),
        family=worst.family,
        retry_after=max(retry_after) if retry_after else None,
        accounts=result.accounts,
    )


def _decide_account(
    settings: Settings,
    account: _Account,
    token_store: TokenStore,
    now: datetime,
    config: DecideConfig,
) -> Decision | None:
    """This account's decision, or None when it could not even be recorded (configuration)."""
    try:
        reading = fetch_reading(settings, now, token_store)
    except ConfigError as exc:
        account.error, account.family = str(exc), type(exc)
        log.error("%s: %s", account.name, exc)
        return None
    except (UpstreamError, StorageError) as exc:
        # Token-store trouble counts like an upstream failure, as with one account: it is
        # this account's health that suffers, and its degraded alert says what to do.
        summary, hint = explain(exc)
        log.error("%s: usage check failed: %s", account.name, summary)
        account.error, account.family = summary, UpstreamError
        if isinstance(exc, RateLimited):
            account.retry_after = exc.retry_after
        return record_failure(account.state, summary, hint, now, config)
    return decide(account.state, reading, now, config)


def _deliver(settings: Settings, store: BlobStore, accounts: list[_Account], sink: AlertSink | None) -> str | None:
    """Every account's outbox through one sink, opened once and only when there is something to send."""
    outbox = [alert for account in accounts if account.state for alert in account.state.outbox]
    if not outbox:
        return None
    try:
        with contextlib.ExitStack() as stack:
            target = sink if sink is not None else stack.enter_context(open_sink(settings, store))
            report = target.deliver(outbox)
    except DeliveryError as exc:
        return redact(str(exc))
    done = set(report.delivered)
    for account in accounts:
        state = account.state
        if state is None or not any(alert.id in done for alert in state.outbox):
            continue
        account.delivered = sum(1 for alert in state.outbox if alert.id in done)
        account.state = drop_delivered(state, report.delivered)
        account.version = save_state(store, account.state, account.version, state_key(account.name))
    return redact(report.error) if report.error else None
