"""One watch cycle: lease → load state → tokens → fetch → decide → save → deliver → save.

The imperative shell around the pure core. It talks only to the `Ports` the
composition root built (compose.py) and knows no Settings; both entry points
(the HTTP function and the CLI) run it through `compose.run` and only translate
its `CycleResult`.

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
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from .core.config import DecideConfig
from .core.decide import Decision, decide, drop_delivered, record_failure
from .errors import BotError, ConfigError, DeliveryError, LeaseHeld, RateLimited, StorageError, UpstreamError
from .hints import explain
from .holding import ReaderSettings, outgoing
from .model import Alert
from .ports import SINGLE_ACCOUNT, Ports
from .result import CycleResult
from .sinks.base import DeliveryReport
from .state import State
from .state_file import load_state, mark_attempted, save_state

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
        if config.accounts:
            from .accounts_cycle import accounts_cycle

            return accounts_cycle(ports, config, now)
        return _locked_cycle(ports, config, now)
    except StorageError as exc:
        log.error("state store failed: %s", exc)
        return CycleResult.failed(ports.redactor(str(exc)), type(exc))
    except Exception as exc:  # outside every family: still a counted failure (issue 21)
        from .unexpected import unexpected_failure

        return unexpected_failure(ports, config, now, exc)
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


def _locked_cycle(ports: Ports, config: CycleConfig, now: datetime) -> CycleResult:
    store = ports.state
    loaded = load_state(store, now)
    previous = loaded.state
    early = too_soon(
        config, previous.health.last_attempt_at if previous else None, now, len(previous.outbox) if previous else 0
    )
    if early is not None:
        return early

    upstream_error: BotError | None = None
    try:
        reading = ports.usage.read(ports.tokens[SINGLE_ACCOUNT], now)
    except ConfigError as exc:
        return CycleResult.failed(ports.redactor(str(exc)), type(exc))
    except (UpstreamError, StorageError) as exc:
        upstream_error = exc
        summary, hint = explain(exc, ports.redactor)
        log.error("usage check failed: %s", summary)
        decision = record_failure(previous, summary, hint, now, config.decide)
    else:
        decision = decide(previous, reading, now, config.decide)

    log_alerts(decision)
    state = decision.state
    version = save_state(store, state, loaded.version, since=previous)
    state, version, delivered, delivery_error = flush_outbox(ports, state, version, now, config.decide)
    if delivery_error:
        log.error("delivery failed, %d alert(s) kept for the next run: %s", len(state.outbox), delivery_error)

    result = CycleResult("ok", new_alerts=len(decision.alerts), delivered=delivered, pending=len(state.outbox))
    if upstream_error is not None:
        return replace(
            result,
            status="failed",
            error=explain(upstream_error, ports.redactor)[0],
            # the error's own family: a token Secret refused by RBAC is "storage", not "upstream"
            family=type(upstream_error),
            retry_after=upstream_error.retry_after if isinstance(upstream_error, RateLimited) else None,
        )
    if delivery_error:
        return replace(result, status="failed", error=delivery_error, family=DeliveryError)
    return result


def log_alerts(decision: Decision, account: str | None = None) -> None:
    prefix = f"{account}: " if account else ""
    for alert in decision.alerts:
        log.info("%salert %s %s%s", prefix, alert.kind, alert.id, f" ({alert.bucket})" if alert.bucket else "")


def deliver(ports: Ports, outbox: Sequence[Alert]) -> tuple[DeliveryReport, str | None]:
    """`outbox` through the sink, opened only now: (what was delivered, the error in words, redacted).
    Charts are drawn before the sink is opened (`drawn_ahead`), so the drawing child never
    runs beside a loaded sink."""
    from .charts import drawn_ahead

    try:
        with drawn_ahead(outbox), ports.open_sink() as sink:
            report = sink.deliver(outbox)
    except DeliveryError as exc:
        return DeliveryReport(()), ports.redactor(str(exc))
    return report, ports.redactor(report.error) if report.error else None


def flush_outbox(
    ports: Ports, state: State, version: str, now: datetime, reader: ReaderSettings
) -> tuple[State, str, int, str | None]:
    """Deliver what the outbox holds and quiet hours let go (holding.outgoing); return
    (state, version, delivered count, error)."""
    outbox = outgoing(state.outbox, now, reader).due
    if not outbox:
        return state, version, 0, None  # no sink, no Matrix traffic on quiet cycles
    # The sink sees the marks as they were: an alert never attempted cannot be in the
    # room, so only the others cost it a look (a /messages request on Matrix).
    only = frozenset(a.id for a in outbox)
    state, marked_version = mark_attempted(ports.state, state, version, now, only=only)
    version = marked_version or version
    report, error = deliver(ports, outbox)
    if report.settled:
        state = drop_delivered(state, report.settled)
        version = save_state(ports.state, state, version)
    return state, version, len(report.delivered), error
