"""The usage answer's buckets (docs/design.md §1, §2): the legacy keys named like a window and the
`limits[]` array, merged into one `Reading` (see usage.py's docstring for the threads)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from .errors import BadResponse, NoUsageLimit
from .model import FIVE_HOUR, WEEKLY_PREFIX, BucketReading, ExtraUsage, Reading
from .usage_caps import MAX_BUCKET_NAME, capped_buckets, capped_slug
from .usage_families import is_credit_shaped, locked_reason, read_banked, read_breakdown, read_credits
from .usage_money import extra_usage as _extra_usage
from .usage_values import carries_number as _carries_number
from .usage_values import is_number as _is_number
from .usage_values import resets_at as _resets_at
from .usage_values import short as _short
from .usage_values import utilization as _utilization

# Legacy buckets are named after their window (`five_hour`, `seven_day`, `seven_day_opus`,
# `seven_day_cowork`, ...). Other keys are not buckets even when they carry a
# `utilization`: `extra_usage` has one (percent of a monthly credit limit, or
# null), and treating it as a window would invent resets and thresholds.
_BUCKET_NAME = re.compile(r"^[a-z0-9]+_(?:hour|hours|day|days|week|weeks|month|months)(?:_[a-z0-9_]+)?$")

# Top-level keys this release reads, or knows and ignores (docs/design.md §2). Anything else
# that carries a number is reported in `Reading.unknown_numbers`. `seven_day_breakdown`
# is an object of rows, not a bucket, although its name starts with `seven_day`.
# `cedar_ember` (banked resets) and `seven_day_breakdown` (where the week went) are read by
# usage_families; objects with `limit_dollars` are credit budgets (or their placeholders).
_READ_KEYS = frozenset({"limits", "extra_usage", "spend", "cedar_ember", "seven_day_breakdown"})
_IGNORED_KEYS = frozenset({"member_dashboard_available"})

# limits[] kinds and the legacy bucket each maps to (docs/design.md §2, decided).
_SESSION_KIND = "session"
_WEEKLY_ALL_KIND = "weekly_all"
_WEEKLY_SCOPED_KIND = "weekly_scoped"
_LIMIT_KIND_BUCKET = {_SESSION_KIND: FIVE_HOUR, _WEEKLY_ALL_KIND: WEEKLY_PREFIX}
_SLUG_SEPARATORS = re.compile(r"[\W_]+")

_MAX_UNKNOWN = 20
_MAX_LOCKED = 8


# --- limits[] -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _LimitEntry:
    percent: float | None
    resets_at: datetime | None
    is_active: bool | None
    severity: str | None


def scope_slug(display_name: str) -> str:
    """`Fable` -> `fable`, `Claude Code` -> `claude_code`: lower-cased, runs of
    non-alphanumerics as one `_`, none at the ends (docs/design.md §2)."""
    return _SLUG_SEPARATORS.sub("_", display_name.lower()).strip("_")


def _display_name(scope: object, part: str) -> str | None:
    if not isinstance(scope, dict):
        return None
    inner = scope.get(part)
    if not isinstance(inner, dict):
        return None
    name = inner.get("display_name")
    return name if isinstance(name, str) and name.strip() else None


def _limit_bucket(kind: object, scope: object) -> str | None:
    """The bucket a limits[] entry feeds, or None for kinds this release does not read."""
    if not isinstance(kind, str):
        return None
    if kind in _LIMIT_KIND_BUCKET:
        return _LIMIT_KIND_BUCKET[kind]
    if kind == _WEEKLY_SCOPED_KIND:
        name = _display_name(scope, "model") or _display_name(scope, "surface")
        slug = scope_slug(name) if name else ""
        return f"{WEEKLY_PREFIX}_{capped_slug(slug, WEEKLY_PREFIX)}" if slug else None
    return None


def _rank(entry: _LimitEntry) -> float:
    return -1.0 if entry.percent is None else entry.percent


def _limit_entries(raw: object, unknown: list[str]) -> dict[str, _LimitEntry]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        if _carries_number(raw):
            unknown.append("limits")
        return {}
    entries: dict[str, _LimitEntry] = {}
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            if _carries_number(item):
                unknown.append(f"limits[{index}]")
            continue
        kind = item.get("kind")
        bucket = _limit_bucket(kind, item.get("scope"))
        if bucket is None:
            # Other kinds are ignored (docs/design.md §2), but one with a number is a limit
            # this release cannot read: say so, so a changed endpoint is noticed.
            if _is_number(item.get("percent")):
                label = f"kind={_short(kind)}" if isinstance(kind, str) else "no kind"
                if kind == _WEEKLY_SCOPED_KIND:
                    label += ", no scope name"
                unknown.append(f"limits[{index}] ({label})")
            continue
        percent = item.get("percent")
        active = item.get("is_active")
        severity = item.get("severity")
        entry = _LimitEntry(
            percent=None if percent is None else _utilization(bucket, percent, "percent"),
            resets_at=_resets_at(bucket, item.get("resets_at")),
            is_active=active if isinstance(active, bool) else None,
            severity=_short(severity.strip().lower(), 20) if isinstance(severity, str) and severity.strip() else None,
        )
        previous = entries.get(bucket)
        # Two entries for one bucket (two display names that slug alike): the fuller wins,
        # so a limit that binds is never hidden behind a lower one.
        if previous is None or _rank(entry) > _rank(previous):
            entries[bucket] = entry
    return entries


# --- the answer ---------------------------------------------------------------------------


def parse_usage(payload: object, taken_at: datetime) -> Reading:
    """Turn the decoded JSON of the usage endpoint into a `Reading`.

    Buckets come from two places (docs/design.md §1, §2): the legacy keys named like a
    window (`five_hour`, `seven_day*`) whose value is an object with a
    `utilization`, and the `limits[]` array (`session` -> `five_hour`,
    `weekly_all` -> `seven_day`, `weekly_scoped` -> `seven_day_<slug>`). Where
    both give a bucket the legacy float wins and `limits[]` fills, field by field,
    what the legacy key leaves null or absent. Null buckets go to `null_buckets`.

    Raises `BadResponse` for a non-object and for a bucket whose numbers are not
    sane, and `NoUsageLimit` when no bucket with a number can be read: never a
    quiet "not in use" forever (docs/design.md §1, on every cycle).
    """
    if not isinstance(payload, dict):
        raise BadResponse(f"usage answer is a JSON {type(payload).__name__}, not an object")
    unknown: list[str] = []
    locked: dict[str, str] = {}
    legacy, legacy_null = _legacy_buckets(payload, unknown, locked)
    entries = _limit_entries(payload.get("limits"), unknown)
    buckets, null_buckets = capped_buckets(*_merge(legacy, legacy_null, entries), unknown)
    extra = _extra_usage(payload, unknown)
    windows = frozenset(k for k in payload if isinstance(k, str) and _BUCKET_NAME.match(k))
    credits = read_credits(payload, _READ_KEYS | windows, unknown)
    banked = read_banked(payload.get("cedar_ember"), unknown)
    reading = Reading(
        taken_at=taken_at,
        buckets=buckets,
        null_buckets=tuple(null_buckets),
        extra_usage=extra,
        unknown_numbers=tuple(unknown[:_MAX_UNKNOWN]),
        credits=credits,
        banked=banked,
        locked=tuple(sorted(locked.items()))[:_MAX_LOCKED],
        breakdown=read_breakdown(payload.get("seven_day_breakdown")),
    )
    if not buckets and not _watched_without_window(reading):
        seen = f"{len(null_buckets)} null bucket(s)" if null_buckets else "no bucket"
        raise NoUsageLimit(f"no usage limit in the answer: a free plan, or the endpoint changed ({seen})")
    return reading


def _spend_on(extra: ExtraUsage | None) -> bool:
    """An enabled spend cap, or one that ran dry at its cap (`out_of_credits`)."""
    if extra is None:
        return False
    return extra.enabled is True or (extra.disabled_reason == "out_of_credits" and extra.limit is not None)


def _watched_without_window(reading: Reading) -> bool:
    """A Team or Enterprise seat answers no window but an enabled spend cap or a credit
    (docs/design.md §1, never silent): watched, not failed. A locked window is said too."""
    return _spend_on(reading.extra_usage) or bool(reading.credits) or bool(reading.locked)


def _legacy_buckets(
    payload: dict[str, object], unknown: list[str], locked: dict[str, str]
) -> tuple[dict[str, BucketReading], dict[str, datetime | None]]:
    """The legacy keys named like a window: (buckets with a number, null ones with the
    `resets_at` a null utilization may still carry); a window's non-null `locked_reason`
    goes to `locked`."""
    legacy: dict[str, BucketReading] = {}
    legacy_null: dict[str, datetime | None] = {}
    for key, value in payload.items():
        if not isinstance(key, str) or key in _READ_KEYS or key in _IGNORED_KEYS:
            continue
        if len(key) <= MAX_BUCKET_NAME and _BUCKET_NAME.match(key):
            reason = locked_reason(value)
            if reason is not None:
                locked[key] = reason
            if value is None:
                legacy_null[key] = None
                continue
            if isinstance(value, dict) and "utilization" in value:
                if value["utilization"] is None:
                    legacy_null[key] = _null_bucket_resets_at(key, value.get("resets_at"))
                else:
                    # Per-bucket extras (limit_dollars, used, limit) are known and ignored.
                    legacy[key] = BucketReading(
                        utilization=_utilization(key, value["utilization"]),
                        resets_at=_resets_at(key, value.get("resets_at")),
                    )
                continue
        if is_credit_shaped(value):
            continue  # a credit budget or its placeholder: read_credits takes it
        if _carries_number(value):
            unknown.append(_short(key))
    return legacy, legacy_null


def _null_bucket_resets_at(key: str, value: object) -> datetime | None:
    """A null bucket's `resets_at`, for a `limits[]` entry to fill around; unreadable is none."""
    try:
        return _resets_at(key, value)
    except BadResponse:
        return None


def _merge(
    legacy: dict[str, BucketReading], legacy_null: dict[str, datetime | None], entries: dict[str, _LimitEntry]
) -> tuple[dict[str, BucketReading], list[str]]:
    """The legacy float wins; limits[] fills, field by field, what it leaves null or absent."""
    buckets: dict[str, BucketReading] = {}
    null_buckets: list[str] = []
    for name in sorted(set(legacy) | set(legacy_null) | set(entries)):
        old = legacy.get(name)
        entry = entries.get(name)
        if old is not None:
            buckets[name] = BucketReading(
                utilization=old.utilization,
                resets_at=old.resets_at if old.resets_at is not None else (entry.resets_at if entry else None),
                is_active=entry.is_active if entry else None,
                severity=entry.severity if entry else None,
            )
        elif entry is not None and entry.percent is not None:
            resets_at = legacy_null.get(name) or entry.resets_at  # field by field: a legacy resets_at wins
            buckets[name] = BucketReading(entry.percent, resets_at, entry.is_active, entry.severity)
        else:
            null_buckets.append(name)  # `percent: null` is a null bucket too
    return buckets, null_buckets
