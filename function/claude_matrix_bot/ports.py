"""What a cycle talks to (issue 13): built once by the composition root (compose.py),
passed to `run_cycle`, which knows no Settings."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from .logs import Redactor
from .model import Reading
from .sinks.base import AlertSink
from .store import BlobStore
from .tokens.base import TokenStore

# The key of the one token store in the single-account layout (no `ACCOUNTS`).
SINGLE_ACCOUNT = ""


class UsageSource(Protocol):
    def read(self, tokens: TokenStore, now: datetime) -> Reading:
        """One reading of the usage endpoint with the tokens of `tokens` (refreshed when due)."""
        ...


# Opens the sink when there is something to deliver (a Matrix session, its key store):
# quiet cycles never open it.
SinkOpener = Callable[[], AbstractContextManager[AlertSink]]


@dataclass(frozen=True, slots=True)
class Ports:
    state: BlobStore
    tokens: Mapping[str, TokenStore]  # by account name; SINGLE_ACCOUNT without ACCOUNTS
    usage: UsageSource
    open_sink: SinkOpener
    redactor: Redactor
    clock: Callable[[], datetime]
