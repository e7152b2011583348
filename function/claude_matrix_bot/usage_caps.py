"""How much one usage answer may put into the state and the messages (issue 21 item 2).

A `limits[]` scope name of 40,000 characters, or 2,000 scoped entries, once made a
537 KB `state.json` and an armed message the homeserver refused (413), retried first on
every cycle. Real answers carry a handful of buckets with short names; these caps are far
above that and far below what a message or the state can carry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from .model import FIVE_HOUR, WEEKLY_PREFIX, BucketReading

MAX_BUCKET_NAME = 64
MAX_BUCKETS = 16  # with a number, taken from one answer; as many null ones again
_CORE_BUCKETS = (FIVE_HOUR, WEEKLY_PREFIX)  # always kept when present


def capped_slug(slug: str, prefix: str) -> str:
    """`slug` cut so that `prefix` + "_" + slug fits MAX_BUCKET_NAME; a cut slug ends in a
    short hash of the whole, so two long names that share a start stay two buckets."""
    room = MAX_BUCKET_NAME - len(prefix) - 1
    if len(slug) <= room:
        return slug
    digest = hashlib.sha256(slug.encode()).hexdigest()[:8]
    return f"{slug[: room - len(digest) - 1].rstrip('_')}_{digest}"


def capped_buckets(
    buckets: Mapping[str, BucketReading], null_buckets: list[str], unknown: list[str]
) -> tuple[dict[str, BucketReading], list[str]]:
    """At most MAX_BUCKETS buckets (the five-hour and weekly windows first, then the
    fullest) and as many null ones; what is left out is said first in `unknown`."""

    def rank(name: str) -> tuple[bool, float, str]:
        return (name not in _CORE_BUCKETS, -buckets[name].utilization, name)

    kept = sorted(buckets, key=rank)[:MAX_BUCKETS]
    left_out = len(buckets) - len(kept) + max(0, len(null_buckets) - MAX_BUCKETS)
    if left_out:
        unknown.insert(0, f"{left_out} bucket(s) beyond the {MAX_BUCKETS} read from one answer")
    return {name: buckets[name] for name in sorted(kept)}, null_buckets[:MAX_BUCKETS]
