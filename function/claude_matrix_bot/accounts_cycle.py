"""One watch cycle over several accounts (docs/design.md §6), under the one lease `run_cycle` holds.

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

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .core.accounts import for_account
from .core.config import DecideConfig
from .core.decide import Decision, decide, drop_delivered, record_failure
from .cycle import CycleConfig, deliver, log_alerts, too_soon
from .errors import BotError, ConfigError, DeliveryError, RateLimited, StorageError, UpstreamError
from .hints import explain
from .holding import ReaderSettings, outgoing
from .ports import Ports
from .result import CycleResult
from .state import State
from .state_file import load_state, mark_attempted, save_state, state_key

log = logging.getLogger("claude_matrix_bot.cycle")


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

    @property
    def pending(self) -> int:
        return len(self.state.outbox) if self.state else 0

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": "failed" if self.family else "ok",
            "new_alerts": self.new_alerts,
            "delivered": self.delivered,
            "pending": self.pending,
        }
        if self.family:
            out["error"] = self.error
            out["failure"] = self.family.failure
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        return out


def accounts_cycle(ports: Ports, config: CycleConfig, now: datetime) -> CycleResult:
    accounts: list[_Account] = []
    for name in config.accounts:
        loaded = load_state(ports.state, now, state_key(name))
        accounts.append(_Account(name, loaded.state, loaded.version))

    # MIN_INTERVAL_SEC: every account is polled in every cycle, so the latest poll counts.
    polls = [a.state.health.last_attempt_at for a in accounts if a.state and a.state.health.last_attempt_at]
    early = too_soon(config, max(polls) if polls else None, now, sum(a.pending for a in accounts))
    if early is not None:
        return early

    for account in accounts:
        decision = _decide_account(ports, account, now, config.decide)
        if decision is None:
            continue
        decision = for_account(decision, account.name)
        log_alerts(decision, account.name)
        account.new_alerts = len(decision.alerts)
        previous, account.state = account.state, decision.state
        account.version = save_state(
            ports.state, decision.state, account.version, state_key(account.name), since=previous
        )

    delivery_error = _deliver(ports, accounts, now, config.decide)
    if delivery_error:
        pending = sum(a.pending for a in accounts)
        log.error("delivery failed, %d alert(s) kept for the next run: %s", pending, delivery_error)
        for account in accounts:
            if account.family is None and account.pending:
                account.error, account.family = delivery_error, DeliveryError
    return _result(accounts)


def _result(accounts: list[_Account]) -> CycleResult:
    """The whole cycle's summary: failed if any account failed, with the family an
    operator must act on first (errors.BotError.precedence)."""
    failed = [a for a in accounts if a.family]
    counts: dict[str, Any] = {
        "new_alerts": sum(a.new_alerts for a in accounts),
        "delivered": sum(a.delivered for a in accounts),
        "pending": sum(a.pending for a in accounts),
        "accounts": tuple((a.name, a.summary()) for a in accounts),
    }
    if not failed:
        return CycleResult("ok", **counts)
    worst = min(failed, key=lambda a: a.family.precedence if a.family else BotError.precedence)
    assert worst.family is not None
    retry_after = [a.retry_after for a in failed if a.retry_after is not None]
    return CycleResult.failed(
        "; ".join(f"{a.name}: {a.error}" for a in failed),
        worst.family,
        retry_after=max(retry_after) if retry_after else None,
        **counts,
    )


def _decide_account(ports: Ports, account: _Account, now: datetime, config: DecideConfig) -> Decision | None:
    """This account's decision, or None when it could not even be recorded (configuration)."""
    try:
        reading = ports.usage.read(ports.tokens[account.name], now)
    except ConfigError as exc:
        account.error, account.family = str(exc), type(exc)
        log.error("%s: %s", account.name, exc)
        return None
    except (UpstreamError, StorageError) as exc:
        # Token-store trouble counts like an upstream failure: it is this account's
        # health that suffers, and its degraded alert says what to do.
        summary, hint = explain(exc, ports.redactor)
        log.error("%s: usage check failed: %s", account.name, summary)
        account.error, account.family = summary, UpstreamError
        if isinstance(exc, RateLimited):
            account.retry_after = exc.retry_after
        return record_failure(account.state, summary, hint, now, config)
    return decide(account.state, reading, now, config)


def _deliver(ports: Ports, accounts: list[_Account], now: datetime, reader: ReaderSettings) -> str | None:
    """Every account's outbox through one sink, opened once and only when there is something
    to send (quiet hours let it go: holding.outgoing)."""
    outbox = [
        alert for account in accounts if account.state for alert in outgoing(account.state.outbox, now, reader).due
    ]
    if not outbox:
        return None
    # As in flush_outbox: marked and written before the send, seen by the sink unmarked.
    only = frozenset(a.id for a in outbox)
    for account in accounts:
        if account.state is not None:
            key = state_key(account.name)
            account.state, account.version = mark_attempted(
                ports.state, account.state, account.version, now, key, only=only
            )
    report, error = deliver(ports, outbox)
    done = set(report.settled)
    for account in accounts:
        state = account.state
        if state is None or not any(alert.id in done for alert in state.outbox):
            continue
        account.delivered = sum(1 for alert in state.outbox if alert.id in report.delivered)
        account.state = drop_delivered(state, report.settled)
        account.version = save_state(ports.state, account.state, account.version, state_key(account.name))
    return error
