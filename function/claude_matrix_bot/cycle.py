"""One watch cycle: lease → load state → tokens → fetch → decide → save → deliver → save.

The imperative shell around the pure core. It talks only to the `Ports` the
composition root built (compose.py) and knows no Settings; both entry points
(the HTTP function and the CLI) run it through `compose.run` and only translate
its `CycleResult`.

One path for one account and several (docs/design.md §6): one account is a list of one,
`SINGLE_ACCOUNT`, whose layout is today's (`state.json`, its tokens, alerts without a
name). Per account, in `ACCOUNTS` order: load its state → its tokens → one usage request
→ decide (or record the failure in *its* health counters) → label the new alerts with the
account (core.accounts; not for the single account) → save. An account that fails is
recorded and the next one runs. Then every account's outbox goes to one sink in one
delivery (none when every outbox is empty, so quiet cycles cost no Matrix request), and
each account's state drops what was delivered. The cycle fails if any account failed.

Ordering rules (docs/design.md §5):
- new alerts are saved in the state's outbox *before* the sink sees them, and
  leave it only once the sink reports them delivered;
- every write is compare-and-swap, and the lease keeps a second trigger out;
- an upstream failure is recorded in the health counters (so the room hears
  about a persistent one) and still lets the outbox drain.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .core.accounts import for_account
from .core.config import DecideConfig
from .core.decide import Decision, decide, drop_delivered, record_failure
from .errors import (
    BotError,
    ConfigError,
    DeliveryError,
    InternalError,
    LeaseHeld,
    RateLimited,
    StorageError,
    UpstreamError,
)
from .hints import explain
from .holding import ReaderSettings, outgoing
from .ports import SINGLE_ACCOUNT, Ports
from .result import CycleResult
from .sending import deliver
from .state import State
from .state_file import load_state, mark_attempted, save_state, state_key

log = logging.getLogger("claude_matrix_bot.cycle")

# Shorter than the five-minute schedule, so a crashed run never costs a second tick,
# and far longer than a healthy cycle (seconds).
LEASE_TTL_SEC = 240


@dataclass(frozen=True, slots=True)
class CycleConfig:
    decide: DecideConfig
    # `ACCOUNTS` (docs/design.md §6); empty: the single-account layout.
    accounts: tuple[str, ...] = ()
    # MIN_INTERVAL_SEC, enforced for the HTTP trigger; None: every run polls (the CLI).
    min_interval_sec: int | None = None


def run_cycle(ports: Ports, config: CycleConfig, now: datetime) -> CycleResult:
    from .store.lease import acquire_lease, release_lease

    store = ports.state
    try:
        lease = acquire_lease(store, holder=f"{os.getpid()}-{uuid.uuid4().hex[:12]}", now=now, ttl_sec=LEASE_TTL_SEC)
    except LeaseHeld as exc:
        log.info("another cycle is running (%s); nothing to do", exc)
        return CycleResult("busy")
    except StorageError as exc:
        log.error("state store unusable: %s", exc)
        return CycleResult.failed(ports.redactor(str(exc)), type(exc))

    try:
        return _locked_cycle(ports, config, now)
    except StorageError as exc:
        log.error("state store failed: %s", exc)
        return CycleResult.failed(ports.redactor(str(exc)), type(exc))
    except Exception as exc:  # outside every family: still a counted failure (issue 21)
        return _unexpected(ports, config, now, exc)
    finally:
        try:
            release_lease(store, lease)
        except StorageError as exc:  # expiry frees it anyway
            log.warning("could not release the lease: %s", exc)


def too_soon(config: CycleConfig, last_poll: datetime | None, now: datetime, pending: int) -> CycleResult | None:
    """The answer when MIN_INTERVAL_SEC has not passed since the last poll (the API is not called)."""
    if config.min_interval_sec is None or last_poll is None:
        return None
    elapsed = (now - last_poll).total_seconds()
    if not 0 <= elapsed < config.min_interval_sec:
        return None
    return CycleResult("too_soon", pending=pending, retry_after=config.min_interval_sec - elapsed)


@dataclass
class _Account:
    """One account's state through the cycle (mutable: the cycle advances it step by step)."""

    name: str  # SINGLE_ACCOUNT: the single-account layout
    state: State | None
    version: str | None
    new_alerts: int = 0
    delivered: int = 0
    error: str | None = None
    family: type[BotError] | None = None  # what failed, if anything
    retry_after: float | None = None

    @property
    def key(self) -> str:
        return state_key(self.name)

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


def _load(ports: Ports, config: CycleConfig, now: datetime) -> list[_Account]:
    several = bool(config.accounts)
    return [_load_account(ports, name, now, several=several) for name in config.accounts or (SINGLE_ACCOUNT,)]


def _locked_cycle(ports: Ports, config: CycleConfig, now: datetime) -> CycleResult:
    accounts = _load(ports, config, now)

    # MIN_INTERVAL_SEC: every account is polled in every cycle, so the latest poll counts.
    polls = [a.state.health.last_attempt_at for a in accounts if a.state and a.state.health.last_attempt_at]
    early = too_soon(config, max(polls) if polls else None, now, sum(a.pending for a in accounts))
    if early is not None:
        return early

    for account in accounts:
        if account.family is not None:  # its state could not be read: nothing to decide on
            continue
        decision = _decide_account(ports, account, now, config.decide)
        if decision is None:
            if not config.accounts:  # the single account cannot even run: nothing else to do
                assert account.error is not None
                assert account.family is not None
                return CycleResult.failed(account.error, account.family)
            continue
        _save_decision(ports, account, decision)

    delivery_error = _deliver(ports, accounts, now, config.decide)
    if delivery_error:
        pending = sum(a.pending for a in accounts)
        log.error("delivery failed, %d alert(s) kept for the next run: %s", pending, delivery_error)
        for account in accounts:
            if account.family is None and account.pending:
                account.error, account.family = delivery_error, DeliveryError
    return _result(accounts, several=bool(config.accounts))


def _load_account(ports: Ports, name: str, now: datetime, *, several: bool) -> _Account:
    """One account's state. With ACCOUNTS, a state file it cannot use (a future schema, a
    store error) fails that account alone, its file untouched (docs/design.md §4, §6)."""
    try:
        loaded = load_state(ports.state, now, state_key(name))
    except StorageError as exc:
        if not several:
            raise
        log.error("%s: state store failed: %s", name, exc)
        return _Account(name, None, None, error=ports.redactor(str(exc)), family=type(exc))
    return _Account(name, loaded.state, loaded.version)


def _unexpected(ports: Ports, config: CycleConfig, now: datetime, exc: Exception) -> CycleResult:
    """An exception outside every family (unexpected.py): recorded in the health of every
    account whose state could be read, as any failed cycle is, the degraded alert delivered
    when it is due (quiet hours kept), then a failed result."""
    from .unexpected import HINT, describe

    summary = describe(exc, ports.redactor)
    log.error("cycle failed: %s", summary, exc_info=exc)
    try:
        accounts = [a for a in _load(ports, config, now) if a.family is None]
        raised = False
        for account in accounts:
            decision = record_failure(account.state, summary, HINT, now, config.decide)
            raised = raised or bool(decision.alerts)
            _save_decision(ports, account, decision)
        error = _deliver(ports, accounts, now, config.decide) if raised else None
        if error:
            log.error("delivery failed, %d alert(s) kept for the next run: %s", sum(a.pending for a in accounts), error)
    except Exception as again:  # the store or the sink is what fails: nothing more to do here
        log.error("the failure could not be recorded in the state either: %s", describe(again, ports.redactor))
    return CycleResult.failed(summary, InternalError)


def _save_decision(ports: Ports, account: _Account, decision: Decision) -> None:
    if account.name != SINGLE_ACCOUNT:
        decision = for_account(decision, account.name)
    log_alerts(decision, account.name)
    account.new_alerts = len(decision.alerts)
    previous, account.state = account.state, decision.state
    account.version = save_state(ports.state, decision.state, account.version, account.key, since=previous)


def _result(accounts: list[_Account], *, several: bool) -> CycleResult:
    """The whole cycle's summary: failed if any account failed, with the family an
    operator must act on first (errors.BotError.precedence). Per account with ACCOUNTS."""
    failed = [a for a in accounts if a.family]
    counts: dict[str, Any] = {
        "new_alerts": sum(a.new_alerts for a in accounts),
        "delivered": sum(a.delivered for a in accounts),
        "pending": sum(a.pending for a in accounts),
    }
    if several:
        counts["accounts"] = tuple((a.name, a.summary()) for a in accounts)
    if not failed:
        return CycleResult("ok", **counts)
    worst = min(failed, key=lambda a: a.family.precedence if a.family else BotError.precedence)
    assert worst.family is not None
    retry_after = [a.retry_after for a in failed if a.retry_after is not None]
    return CycleResult.failed(
        "; ".join(f"{a.name}: {a.error}" if several else str(a.error) for a in failed),
        worst.family,
        retry_after=max(retry_after) if retry_after else None,
        **counts,
    )


def _decide_account(ports: Ports, account: _Account, now: datetime, config: DecideConfig) -> Decision | None:
    """This account's decision, or None when it could not even be recorded (configuration)."""
    prefix = f"{account.name}: " if account.name != SINGLE_ACCOUNT else ""
    try:
        reading = ports.usage.read(ports.tokens[account.name], now)
    except ConfigError as exc:
        account.error, account.family = ports.redactor(str(exc)), type(exc)
        log.error("%s%s", prefix, account.error)
        return None
    except (UpstreamError, StorageError) as exc:
        # Token-store trouble is recorded like an upstream failure: it is this account's
        # health that suffers, and its degraded alert says what to do; the result names the
        # error's own family (a token Secret refused by RBAC is "storage", not "upstream").
        summary, hint = explain(exc, ports.redactor)
        log.error("%susage check failed: %s", prefix, summary)
        account.error, account.family = summary, type(exc)
        if isinstance(exc, RateLimited):
            account.retry_after = exc.retry_after
        return record_failure(account.state, summary, hint, now, config)
    return decide(account.state, reading, now, config)


def log_alerts(decision: Decision, account: str | None = None) -> None:
    prefix = f"{account}: " if account else ""
    for alert in decision.alerts:
        log.info("%salert %s %s%s", prefix, alert.kind, alert.id, f" ({alert.bucket})" if alert.bucket else "")


def _deliver(ports: Ports, accounts: list[_Account], now: datetime, reader: ReaderSettings) -> str | None:
    """Every account's outbox through one sink, opened once and only when there is something
    to send (quiet hours let it go: holding.outgoing)."""
    outbox = [
        alert for account in accounts if account.state for alert in outgoing(account.state.outbox, now, reader).due
    ]
    if not outbox:
        return None
    # Marked and written before the send; the sink sees the marks as they were: an alert
    # never attempted cannot be in the room, so only the others cost it a look.
    only = frozenset(a.id for a in outbox)
    for account in accounts:
        if account.state is not None:
            account.state, marked = mark_attempted(
                ports.state, account.state, account.version, now, account.key, only=only
            )
            account.version = marked or account.version
    report, error = deliver(ports, outbox)
    done = set(report.settled)
    for account in accounts:
        state = account.state
        if state is None or not any(alert.id in done for alert in state.outbox):
            continue
        account.delivered = sum(1 for alert in state.outbox if alert.id in report.delivered)
        account.state = drop_delivered(state, report.settled)
        account.version = save_state(ports.state, account.state, account.version, account.key)
    return error
