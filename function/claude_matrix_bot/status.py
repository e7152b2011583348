"""What `claude-matrix-bot status` and `GET /` show: buckets, history, forecast, health.

Read-only (no lease, no API call) and secret-free by construction: it only
looks at state.json, which never holds a secret. `collect` reads once; the JSON
(`status --json`, `GET /`) and the text are both drawn from the typed state, so
the text never parses back the times the JSON wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from .core import messages
from .core.family_table import family_of
from .core.forecast import Projection, project
from .errors import CorruptState, StorageError
from .holding import outgoing, quiet_until
from .isotime import iso
from .localtime import zone_name
from .ports import SINGLE_ACCOUNT
from .settings import Settings
from .settings_matrix import UNENCRYPTED_KEY_STORE, key_store_report
from .sinks.identity_record import IDENTITY_FILE, identity_lines, identity_report
from .state import BucketState, State, health_to_json, parse_state
from .state_file import state_key
from .status_families import extra_json, extra_lines, families_json, families_lines, session_json, session_line
from .store import BlobStore, open_store

# identity.json in the Matrix key store (compose.NIO_PREFIX): public values only.
MATRIX_IDENTITY_KEY = f"nio/{IDENTITY_FILE}"
NO_PROJECTION = "not enough data or not rising"


class UnreadableState(StorageError):
    """`status` found a state.json it cannot understand (exit 1, HTTP 500; never a traceback)."""


@dataclass(frozen=True, slots=True)
class _View:
    """One state.json as `status` found it (None: no file yet) and the bot's Matrix identity."""

    state: State | None
    identity: dict[str, Any] | None
    problem: str | None = None  # with ACCOUNTS: why this account's file could not be read


@dataclass(frozen=True, slots=True)
class Snapshot:
    settings: Settings
    now: datetime
    views: dict[str, _View]  # by account name with ACCOUNTS, else the one under ""

    def to_json(self) -> dict[str, Any]:
        if not self.settings.accounts:
            return _view_json(self, self.views[""])
        # docs/design.md §6: every account, each with the report one account would have.
        accounts = {name: _view_json(self, view) for name, view in self.views.items()}
        return {
            "state_url": self.settings.state_url,
            "now": iso(self.now),
            "armed": all(report["armed"] for report in accounts.values()),
            "accounts": accounts,
        }


def collect(settings: Settings, store: BlobStore | None = None) -> Snapshot:
    store = store or open_store(settings.state_url)
    identity = identity_report(_read_or_none(store, MATRIX_IDENTITY_KEY))
    keys = {name: state_key(name) for name in settings.accounts or (SINGLE_ACCOUNT,)}
    views = {name: _view(settings, store, key, identity) for name, key in keys.items()}
    return Snapshot(settings, settings.now(), views)


def status_report(settings: Settings, store: BlobStore | None = None) -> dict[str, Any]:
    return collect(settings, store).to_json()


def _view(settings: Settings, store: BlobStore, key: str, identity: dict[str, Any] | None) -> _View:
    """One state file as it is; with ACCOUNTS an unreadable one is said in its place (§6)."""
    data = _read_or_none(store, key)
    try:
        return _View(None if data is None else parse_state(data), identity)
    except CorruptState as exc:
        # status only reads: the file stays as it is for the next run to move aside.
        problem: StorageError = UnreadableState(
            f"{key} under {settings.state_url} cannot be read ({exc}); it was left untouched. "
            "The next run moves it aside (state.json.corrupt-<time>) and re-arms, saying so in the room."
        )
    except StorageError as exc:  # a future schema
        problem = exc
    if not settings.accounts:
        raise problem from None
    return _View(None, identity, str(problem))


def _read_or_none(store: BlobStore, key: str) -> bytes | None:
    try:
        return store.read(key)[0]
    except FileNotFoundError:
        return None


def _zone(snapshot: Snapshot) -> tzinfo:
    """The reader's zone: every time `status` prints is on their clock (docs/design.md §9)."""
    return snapshot.settings.timezone


def _armed(state: State | None) -> bool:
    return state is not None and (state.armed_at is not None or bool(state.buckets))


def _projection(snapshot: Snapshot, bucket: BucketState) -> Projection | None:
    if bucket.utilization is None or not bucket.history:
        return None
    settings = snapshot.settings
    return project(
        bucket.history,
        now=snapshot.now,
        current=bucket.utilization,
        min_samples=settings.forecast_min_samples,
        min_span_sec=settings.forecast_min_span_sec,
    )


def _span_sec(bucket: BucketState) -> int:
    history = bucket.history
    return history[-1][0] - history[0][0] if len(history) > 1 else 0


# --- JSON --------------------------------------------------------------------------------


def _view_json(snapshot: Snapshot, view: _View) -> dict[str, Any]:
    state = view.state
    settings = snapshot.settings
    report: dict[str, Any]
    if state is None:
        report = {"state_url": settings.state_url, "armed": False, "now": iso(snapshot.now), "buckets": {}}
        report.update({"error": view.problem} if view.problem else {})
    else:
        report = {
            "state_url": settings.state_url,
            "armed": _armed(state),
            "armed_at": iso(state.armed_at),
            "now": iso(snapshot.now),
            "buckets": {name: _bucket_json(snapshot, name, b) for name, b in sorted(state.buckets.items())},
            "outbox": _outbox_json(snapshot, state),
            "quiet_hours": _quiet_json(snapshot, state),
            "health": health_to_json(state.health),
            "extra_usage": extra_json(state.extra_usage, settings.extra_usage_thresholds),
            # Numbers the last answer carried where this release does not read (docs/design.md §1).
            "unknown_numbers": list(state.unknown_numbers),
            "families": families_json(state.families),
        }
    report["matrix_identity"] = view.identity
    if settings.alert_sink == "matrix":
        report["key_store"] = key_store_report(settings.matrix_store_passphrase)
    return report


def _outbox_json(snapshot: Snapshot, state: State) -> list[dict[str, Any]]:
    """Each undelivered alert; `held_until`: when quiet hours let it go (null: at the next cycle)."""
    held = outgoing(state.outbox, snapshot.now, snapshot.settings)
    waiting = {a.id for a in held.waiting}
    return [
        {
            "id": a.id,
            "kind": a.kind,
            "bucket": a.bucket,
            "urgent": a.urgent,
            "raised_at": iso(a.created_at),
            "held_until": iso(held.until) if a.id in waiting else None,
        }
        for a in state.outbox
    ]


def _quiet_json(snapshot: Snapshot, state: State) -> dict[str, Any] | None:
    """QUIET_HOURS as it stands now (docs/design.md §9): null when none are set."""
    hours = snapshot.settings.quiet_hours
    if hours is None:
        return None
    until = quiet_until(hours, snapshot.settings.timezone, snapshot.now)
    return {
        "span": str(hours),
        "timezone": zone_name(snapshot.settings.timezone),
        "quiet_now": until is not None,
        "until": iso(until),
        "waiting": len(outgoing(state.outbox, snapshot.now, snapshot.settings).waiting),
    }


def _bucket_json(snapshot: Snapshot, name: str, bucket: BucketState) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "label": messages.bucket_label(name),
        "utilization": bucket.utilization,
        "resets_at": iso(bucket.resets_at),
    }
    if bucket.is_active is not None:
        entry["is_active"] = bucket.is_active
    if bucket.severity is not None:
        entry["severity"] = bucket.severity
    if family_of(name).back_after_limit:
        entry["limit"] = session_json(bucket)
    if family_of(name).forecast:
        entry["alerted_thresholds"] = list(bucket.alerted_thresholds)
        entry["history"] = {"samples": len(bucket.history), "span_sec": _span_sec(bucket)}
        forecast: dict[str, Any] = {
            "enabled": snapshot.settings.forecast_enabled,
            "fired_this_window": bucket.forecast_fired,
        }
        projection = _projection(snapshot, bucket)
        if projection is not None:
            forecast.update(
                burn_rate_per_hour=round(projection.slope_per_hour, 3),
                projected_at=iso(projection.exhausted_at),
                before_reset=_before_reset(bucket, projection),
                samples=projection.samples,
            )
        elif bucket.utilization is not None and bucket.history:
            forecast["projection"] = NO_PROJECTION
        entry["forecast"] = forecast
    return entry


def _before_reset(bucket: BucketState, projection: Projection) -> bool:
    return bucket.resets_at is not None and projection.exhausted_at < bucket.resets_at


# --- text ----------------------------------------------------------------------------------


def format_status(snapshot: Snapshot) -> str:
    if not snapshot.settings.accounts:
        return "\n".join(_view_lines(snapshot, snapshot.views[""]))
    parts = [f"state: {snapshot.settings.state_url}"]
    for name, view in snapshot.views.items():
        parts.append(f"account {name}:")
        # The state line is said once, above.
        lines = "\n".join(_view_lines(snapshot, view)).splitlines()[1:]
        parts.extend(f"  {line}" for line in lines)
    return "\n".join(parts)


def _view_lines(snapshot: Snapshot, view: _View) -> list[str]:
    now, state = snapshot.now, view.state
    lines = [f"state: {snapshot.settings.state_url}", *identity_lines(view.identity)]
    if snapshot.settings.alert_sink == "matrix" and not snapshot.settings.matrix_store_passphrase:
        lines.append(f"WARNING: {UNENCRYPTED_KEY_STORE}")
    if state is None or not _armed(state):
        lines.append(
            f"CANNOT READ the state: {view.problem}"
            if view.problem
            else "not armed yet: the first successful run posts the baseline"
        )
        return lines
    health = state.health
    if health.last_success_at:
        lines.append(f"last success: {messages.fmt_when(health.last_success_at, now, _zone(snapshot))}")
    if health.consecutive_failures:
        lines.append(
            f"FAILING: {health.consecutive_failures} run(s) in a row"
            + (" (degraded alert sent)" if health.degraded else "")
            + f"; last error: {health.last_error}"
        )
    for name, bucket in sorted(state.buckets.items()):
        lines.extend(_bucket_lines(snapshot, name, bucket))
    if state.extra_usage:
        lines.extend(extra_lines(state.extra_usage, now, _zone(snapshot)))
    lines.extend(families_lines(state.families, now, _zone(snapshot)))
    if state.unknown_numbers:
        lines.append(
            "numbers under keys this release does not read (the endpoint may have changed): "
            + ", ".join(state.unknown_numbers)
        )
    if state.outbox:
        urgent = sum(a.urgent for a in state.outbox)
        lines.append(f"undelivered alerts: {len(state.outbox)}" + (f" ({urgent} urgent)" if urgent else ""))
    lines.extend(_quiet_lines(snapshot, state))
    return lines


def _quiet_lines(snapshot: Snapshot, state: State) -> list[str]:
    """What waits for quiet hours to end, and until when, on the reader's clock."""
    hours, zone = snapshot.settings.quiet_hours, snapshot.settings.timezone
    if hours is None:
        return []
    until = quiet_until(hours, zone, snapshot.now)
    if until is None:
        return [f"quiet hours {hours} {zone_name(zone)}: not now"]
    held = outgoing(state.outbox, snapshot.now, snapshot.settings)
    lines = [
        f"quiet hours {hours} {zone_name(zone)}: until {messages.fmt_when(until, snapshot.now, zone)}, "
        f"{len(held.waiting)} alert(s) waiting"
    ]
    for alert in held.waiting:
        about = f" ({alert.bucket})" if alert.bucket else ""
        raised = f", raised {messages.fmt_time(alert.created_at, zone)}" if alert.created_at else ""
        lines.append(f"  waiting: {alert.kind}{about}{raised}")
    return lines


def _bucket_lines(snapshot: Snapshot, name: str, bucket: BucketState) -> list[str]:
    label, now = messages.bucket_label(name), snapshot.now
    if bucket.utilization is None:
        return [f"{label} ({name}): not in use"]
    pct = messages.fmt_pct(bucket.utilization)
    judgement = messages.fmt_binding(bucket.is_active is True, bucket.severity)
    lines = [
        f"{label} ({name}): {pct}, {messages.fmt_resets(bucket.resets_at, now, _zone(snapshot))}"
        + (f" ({judgement})" if judgement else "")
    ]
    if family_of(name).back_after_limit:
        lines.append(session_line(bucket, now, _zone(snapshot)))
    if not family_of(name).forecast:
        return lines
    lines.append(
        f"  thresholds alerted: {list(bucket.alerted_thresholds) or 'none'}; history: {len(bucket.history)} samples "
        f"over {messages.fmt_duration(timedelta(seconds=_span_sec(bucket)))}"
    )
    projection = _projection(snapshot, bucket)
    if projection is not None:
        verdict = "BEFORE the reset" if _before_reset(bucket, projection) else "after the reset"
        rate = round(projection.slope_per_hour, 3)  # as the JSON says it
        when = messages.fmt_when(projection.exhausted_at, now, _zone(snapshot))
        lines.append(f"  forecast: {rate:.2f}%/h, 100% {when} ({verdict})")
    else:
        lines.append(f"  forecast: {NO_PROJECTION if bucket.history else 'n/a'}")
    return lines
