"""Test-side helpers. Payloads, the bot's environment and running its CLI come from the
development stack (`devstack`), shared with the demo and the bench."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from devstack.bot import REPO, CliResult, bot_env, run_cli
from devstack.payloads import payload

__all__ = [
    "REAL_NOW",
    "REPO",
    "CliResult",
    "assert_no_secrets",
    "bot_env",
    "issued_secrets",
    "payload",
    "run_cli",
    "step",
]

# Real time, for servers that run at a fixed NOW_OVERRIDE: the fake's tokens need no refresh.
REAL_NOW = datetime.now(UTC).replace(microsecond=0)


def step(start: datetime, minutes: int) -> datetime:
    return start + timedelta(minutes=minutes)


def issued_secrets(fake: Any) -> set[str]:
    """Every access and refresh token a FakeAnthropic has minted (to prove none leaks)."""
    with fake._lock:
        return set(fake._access) | set(fake._refresh)


def assert_no_secrets(secrets: set[str], *texts: str) -> None:
    assert secrets, "expected some secrets to look for"
    for text in texts:
        for secret in secrets:
            assert secret not in text, "a secret leaked into the output"
