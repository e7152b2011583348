"""The bot's memory (docs/design.md §4): what it saw, what it already said, what it still owes.

`State` is an immutable value; `parse_state(bytes)` reads v2 (and upgrades v1),
`dump_state(State)` writes v2. Both are pure: the cycle moves the bytes.

The package, one part each: records (the values and their bounds), lasting (what a
crash may undo), document (the whole file, schema, v1 upgrade), and one module per part
of the document, both ways: buckets, hourly (the chart's samples), outbox, extra (the
extra-usage record); fields reads the values inside, raising `CorruptState` with where.
Everything a caller uses is imported from here.

Size is bounded whatever the uptime: history is trimmed to the forecast window
and capped in count, shift dedup keeps only a few recent values, and the outbox
only holds undelivered alerts. The extra-usage record is one fixed-size object
and the unknown-number list is capped in count and length. The chart's hourly
samples (docs/design.md §7) are one per hour of the current weekly window, written as
`[first_hour, [values]]` (a value per hour, `null` for an hour with no reading):
a full week of four weekly buckets costs about 3 KB.

Schema (docs/design.md §4): the extra-usage record, the unknown-number list and a bucket's
`is_active`/`severity`, its `hourly` samples, `passed` times and `last_reset`, are new
optional keys of v2. An older v2 reader ignores them
(it cannot misread them), so they do not bump the schema; a missing one reads as
"never seen", which starts a new spend period at the next reading.
"""

from ..errors import CorruptState
from .document import SCHEMA, dump_state, health_to_json, parse_state
from .extra import extra_usage_to_json
from .families import credit_to_json, grant_to_json
from .family_records import CreditState, FamilyState, GrantState
from .lasting import lasting_change
from .outbox import ALERT_KINDS
from .records import (
    HOUR_SEC,
    MAX_HISTORY_SAMPLES,
    MAX_HOURLY_SAMPLES,
    MAX_OUTBOX,
    MAX_SHIFT_MEMORY,
    MAX_UNKNOWN_NUMBERS,
    BucketState,
    ExtraUsageState,
    Health,
    Sample,
    State,
)

__all__ = [
    "ALERT_KINDS",
    "HOUR_SEC",
    "MAX_HISTORY_SAMPLES",
    "MAX_HOURLY_SAMPLES",
    "MAX_OUTBOX",
    "MAX_SHIFT_MEMORY",
    "MAX_UNKNOWN_NUMBERS",
    "SCHEMA",
    "BucketState",
    "CorruptState",
    "CreditState",
    "ExtraUsageState",
    "FamilyState",
    "GrantState",
    "Health",
    "Sample",
    "State",
    "credit_to_json",
    "dump_state",
    "extra_usage_to_json",
    "grant_to_json",
    "health_to_json",
    "lasting_change",
    "parse_state",
]
