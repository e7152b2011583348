"""An exception outside the bot's error families (issue 21): a counted failure, never a traceback.

Every entry point turns one into its own failure (exit 1, a JSON 500) with `describe`;
a cycle also records it in the health counters of every account it covers, so
HEALTH_FAILURES and the degraded alert follow as for any other failed cycle
(docs/design.md §5: never silent). The traceback goes to the log at DEBUG only, masked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from .errors import InternalError
from .result import CycleResult

if TYPE_CHECKING:
    from .core.config import DecideConfig
    from .ports import Ports

log = logging.getLogger("claude_matrix_bot.cycle")

MAX_CHARS = 300
HINT = (
    "the bot met an input it does not handle: run it once with LOG_LEVEL=DEBUG for the traceback "
    "(secrets masked) and report it"
)


def describe(exc: BaseException, redact: Callable[[str], str]) -> str:
    """One masked line naming the exception: what the entry point prints or answers."""
    try:
        detail = str(exc)
    except Exception:  # a broken __str__ must not fail the failure
        detail = ""
    text = " ".join(redact(f"unexpected {type(exc).__name__}: {detail}".rstrip(": ")).split())
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"


def unexpected_failure(
    ports: Ports, accounts: tuple[str, ...], config: DecideConfig, now: datetime, exc: Exception
) -> CycleResult:
    """The cycle's answer to `exc`: recorded in every account's health (and the
    degraded alert delivered when it is due), then a failed result."""
    summary = describe(exc, ports.redactor)
    log.error("cycle failed: %s", summary, exc_info=exc)
    try:
        _record(ports, accounts, config, now, summary)
    except Exception as again:  # the store or the sink is what fails: nothing more to do here
        log.error("the failure could not be recorded in the state either: %s", describe(again, ports.redactor))
    return CycleResult.failed(summary, InternalError)


def _record(ports: Ports, names: tuple[str, ...], config: DecideConfig, now: datetime, summary: str) -> None:
    from .core.accounts import for_account
    from .core.decide import drop_delivered, record_failure
    from .sending import deliver
    from .state_file import load_state, mark_attempted, save_state, state_key

    accounts: tuple[str | None, ...] = names or (None,)
    for account in accounts:
        key = state_key(account or "")
        loaded = load_state(ports.state, now, key)
        decision = record_failure(loaded.state, summary, HINT, now, config)
        if account:
            decision = for_account(decision, account)
        state = decision.state
        version = save_state(ports.state, state, loaded.version, key, since=loaded.state)
        if not decision.alerts:
            continue
        outbox = state.outbox
        state, marked = mark_attempted(ports.state, state, version, now, key)
        report, error = deliver(ports, outbox)
        if error:
            log.error("delivery failed, %d alert(s) kept for the next run: %s", len(outbox), error)
        if report.delivered:
            save_state(ports.state, drop_delivered(state, report.delivered), marked or version, key)
