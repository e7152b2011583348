"""What `claude-matrix-bot status` and `GET /` show: buckets, history, forecast, health.

Read-only (no lease, no API call) and secret-free by construction: it only
looks at state.json, which never holds a secret.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .core import messages
from .core.forecast import project
from .errors import CorruptState, StorageError
from .model import is_weekly
from .settings import Settings
from .sinks.crosssigning import IDENTITY_FILE, identity_lines, identity_report
from .state import ExtraUsageState, State, parse_state
from .store import BlobStore, open_store

STATE_KEY = "state.json"
# identity.json in the Matrix key store (cycle.NIO_PREFIX): public values only.
MATRIX_IDENTITY_KEY = f"nio/{IDENTITY_FILE}"


class UnreadableState(StorageError):
    """`status` found a state.json it cannot understand (exit 1, HTTP 500; never a traceback)."""


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def status_report(settings: Settings, store: BlobStore | None = None) -> dict[str, Any]:
    now = settings.now()
    store = store or open_store(settings.state_url)
    if settings.accounts:
        # DESIGN §6: every account, each with the report one account would have.
        accounts = {name: _state_report(settings, store, f"{name}/state.json", now) for name in settings.accounts}
        return {
            "state_url": settings.state_url,
            "now": _iso(now),
            "armed": all(report["armed"] for report in accounts.values()),
            "accounts": accounts,
        }
    return _state_report(settings, store, STATE_KEY, now)


def _state_report(settings: Settings, store: BlobStore, key: str, now: datetime) -> dict[str, Any]:
    try:
        data, _ = store.read(key)
    except FileNotFoundError:
        report = {"state_url": settings.state_url, "armed": False, "now": _iso(now), "buckets": {}}
    else:
        try:
            state = parse_state(data)
        except CorruptState as exc:
            # status only reads: the file stays as it is for the next run to move aside.
            raise UnreadableState(
                f"state.json under {settings.state_url} cannot be read ({exc}); it was left untouched. "
                "The next run moves it aside (state.json.corrupt-<time>) and re-arms, saying so in the room."
            ) from None
        report = _report(settings, state, now)
    report["matrix_identity"] = identity_report(_read_or_none(store, MATRIX_IDENTITY_KEY))
    return report


def _read_or_none(store: BlobStore, key: str) -> bytes | None:
    try:
        return store.read(key)[0]
    except FileNotFoundError:
        return None


def _report(settings: Settings, state: State, now: datetime) -> dict[str, Any]:
    buckets: dict[str, Any] = {}
    for name, bucket in sorted(state.buckets.items()):
        entry: dict[str, Any] = {
            "label": messages.bucket_label(name),
            "utilization": bucket.utilization,
            "resets_at": _iso(bucket.resets_at),
        }
        if bucket.is_active is not None:
            entry["is_active"] = bucket.is_active
        if bucket.severity is not None:
            entry["severity"] = bucket.severity
        if is_weekly(name):
            history = bucket.history
            entry["alerted_thresholds"] = list(bucket.alerted_thresholds)
            entry["history"] = {
                "samples": len(history),
                "span_sec": history[-1][0] - history[0][0] if len(history) > 1 else 0,
            }
            forecast: dict[str, Any] = {
                "enabled": settings.forecast_enabled,
                "fired_this_window": bucket.forecast_fired,
            }
            if bucket.utilization is not None and history:
                projection = project(
                    history,
                    now=now,
                    current=bucket.utilization,
                    min_samples=settings.forecast_min_samples,
                    min_span_sec=settings.forecast_min_span_sec,
                )
                if projection is not None:
                    forecast.update(
                        burn_rate_per_hour=round(projection.slope_per_hour, 3),
                        projected_at=_iso(projection.exhausted_at),
                        before_reset=bucket.resets_at is not None and projection.exhausted_at < bucket.resets_at,
                        samples=projection.samples,
                    )
                else:
                    forecast["projection"] = "not enough data or not rising"
            entry["forecast"] = forecast
        buckets[name] = entry
    health = state.health
    report: dict[str, Any] = {
        "state_url": settings.state_url,
        "armed": state.armed_at is not None or bool(state.buckets),
        "armed_at": _iso(state.armed_at),
        "now": _iso(now),
        "buckets": buckets,
        "outbox": [{"id": a.id, "kind": a.kind, "bucket": a.bucket} for a in state.outbox],
        "health": {
            "consecutive_failures": health.consecutive_failures,
            "degraded": health.degraded,
            "failing_since": _iso(health.failing_since),
            "last_error": health.last_error,
            "last_success_at": _iso(health.last_success_at),
            "last_attempt_at": _iso(health.last_attempt_at),
        },
        "extra_usage": _extra_report(state.extra_usage, settings.extra_usage_thresholds),
        # Numbers the last answer carried where this release does not read (DESIGN §1).
        "unknown_numbers": list(state.unknown_numbers),
    }
    return report


def _extra_report(extra: ExtraUsageState | None, thresholds: tuple[int, ...]) -> dict[str, Any] | None:
    if extra is None:
        return None
    last = extra.last
    return {
        "enabled": last.enabled,
        "used": last.used,
        "limit": last.limit,
        "currency": last.currency,
        "exponent": last.exponent,
        "percent": last.percent,
        "disabled_reason": last.disabled_reason,
        "source": last.source,
        "summary": messages.extra_status(last),
        "period_start": _iso(extra.period_start),
        "started_alerted": extra.started_alerted,
        "alerted_thresholds": list(extra.alerted_thresholds),
        "thresholds": list(thresholds),
    }


def format_status(report: dict[str, Any]) -> str:
    if "accounts" in report:
        parts = [f"state: {report['state_url']}"]
        for name, account in report["accounts"].items():
            lines = format_status(account).splitlines()[1:]  # the state line is said once, above
            parts.append(f"account {name}:")
            parts.extend(f"  {line}" for line in lines)
        return "\n".join(parts)
    now = datetime.fromisoformat(report["now"].replace("Z", "+00:00"))
    lines = [f"state: {report['state_url']}", *identity_lines(report.get("matrix_identity"))]
    if not report["armed"]:
        lines.append("not armed yet: the first successful run posts the baseline")
        return "\n".join(lines)
    health = report["health"]
    if health["last_success_at"]:
        last_ok = datetime.fromisoformat(health["last_success_at"].replace("Z", "+00:00"))
        lines.append(f"last success: {messages.fmt_when(last_ok, now)}")
    if health["consecutive_failures"]:
        lines.append(
            f"FAILING: {health['consecutive_failures']} run(s) in a row"
            + (" (degraded alert sent)" if health["degraded"] else "")
            + f"; last error: {health['last_error']}"
        )
    for name, b in report["buckets"].items():
        if b["utilization"] is None:
            lines.append(f"{b['label']} ({name}): not in use")
            continue
        resets = datetime.fromisoformat(b["resets_at"].replace("Z", "+00:00")) if b["resets_at"] else None
        pct = messages.fmt_pct(b["utilization"])
        judgement = messages.fmt_binding(b.get("is_active") is True, b.get("severity"))
        lines.append(
            f"{b['label']} ({name}): {pct}, resets {messages.fmt_when(resets, now)}"
            + (f" ({judgement})" if judgement else "")
        )
        if "history" in b:
            hist = b["history"]
            lines.append(
                f"  thresholds alerted: {b['alerted_thresholds'] or 'none'}; history: {hist['samples']} samples "
                f"over {messages.fmt_duration(_seconds(hist['span_sec']))}"
            )
            fc = b["forecast"]
            if "projected_at" in fc:
                at = datetime.fromisoformat(fc["projected_at"].replace("Z", "+00:00"))
                verdict = "BEFORE the reset" if fc["before_reset"] else "after the reset"
                lines.append(
                    f"  forecast: {fc['burn_rate_per_hour']:.2f}%/h, 100% {messages.fmt_when(at, now)} ({verdict})"
                )
            else:
                lines.append(f"  forecast: {fc.get('projection', 'n/a')}")
    extra = report.get("extra_usage")
    if extra:
        since = datetime.fromisoformat(extra["period_start"].replace("Z", "+00:00"))
        said = ["started"] if extra["started_alerted"] else []
        said += [f"{t}%" for t in extra["alerted_thresholds"]]
        lines.append(f"Extra usage: {extra['summary']}")
        lines.append(f"  spend period since {messages.fmt_when(since, now)}; alerted: {', '.join(said) or 'none'}")
    if report.get("unknown_numbers"):
        lines.append(
            "numbers under keys this release does not read (the endpoint may have changed): "
            + ", ".join(report["unknown_numbers"])
        )
    if report["outbox"]:
        lines.append(f"undelivered alerts: {len(report['outbox'])}")
    return "\n".join(lines)


def _seconds(value: int) -> Any:
    from datetime import timedelta

    return timedelta(seconds=value)
