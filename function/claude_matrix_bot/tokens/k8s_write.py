"""The token write-back to the Secret, retried (issue 21 item 3).

The refresh has already spent the old refresh token when the write-back starts, so a
single 5xx or a dropped connection must not drop the new pair. A write the API server
did not answer (5xx, 429, a network error, a timeout) is tried again, within the
refresh claim's time, after a read: a write that timed out may have landed, and then
the read shows our values and nothing is written twice. Whatever stays unwritten after
that goes to the last resort (tokens/pending.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from .k8s_api import ApiUnavailable

log = logging.getLogger(__name__)

# Pauses between attempts (seconds), cut short by the deadline.
WRITE_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)
# Without a refresh claim (a kept pair written back at load), the time allowed.
WRITE_BACK_BUDGET_SEC = 30.0


def write_retrying(
    patch: Callable[[], str],
    read: Callable[[], tuple[Any, str]],
    landed: Callable[[Any], bool],
    *,
    delays: Sequence[float],
    deadline: float,
    where: str,
) -> str:
    """`patch()`'s new resourceVersion, retried as above; the last failure when time runs out.
    A 409 (StorageConflict) or another refusal is never retried here: it is an answer."""
    try:
        return patch()
    except ApiUnavailable as exc:
        failure = exc
    for delay in delays:
        if time.monotonic() + delay > deadline:
            break
        log.warning("%s: the token write-back failed (%s); reading again in %gs", where, failure, delay)
        time.sleep(delay)
        try:
            secret, version = read()
            if landed(secret):
                log.info("%s: the token write-back had landed (resourceVersion %s)", where, version)
                return version
            return patch()
        except ApiUnavailable as exc:
            failure = exc
    raise failure
