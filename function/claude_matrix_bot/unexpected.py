"""An exception outside the bot's error families (issue 21): a counted failure, never a traceback.

Every entry point turns one into its own failure (exit 1, a JSON 500) with `describe`;
a cycle (cycle.py) also records it in the health counters of every account it covers, with
`HINT`, so HEALTH_FAILURES and the degraded alert follow as for any other failed cycle
(docs/design.md §5: never silent). The traceback goes to the log at DEBUG only, masked.
"""

from __future__ import annotations

from collections.abc import Callable

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
