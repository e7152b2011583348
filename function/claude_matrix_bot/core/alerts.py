"""Alert ids and values, shared by the rules of the core (decide, the families, digest)."""

from __future__ import annotations

import hashlib
from datetime import datetime, tzinfo
from typing import Any

from ..model import Alert, AlertKind, BucketReading
from . import alert_fields, messages
from .family_table import is_urgent


def alert_id(kind: AlertKind, *parts: str) -> str:
    """Stable id: the same alert always hashes the same, so a re-decided alert
    reuses its Matrix transaction id and the room shows it once."""
    digest = hashlib.sha256("|".join((kind, *parts)).encode()).hexdigest()[:32]
    return f"cmb-{kind}-{digest}"


def key(moment: datetime | None) -> str:
    """An instant as an id part. Sub-second jitter must not change an id: the nearest minute."""
    return "none" if moment is None else messages.round_minute(moment).strftime("%Y-%m-%dT%H:%MZ")


def make(
    kind: AlertKind,
    ident: str,
    rendered: messages.Rendered,
    now: datetime,
    bucket: str | None = None,
    *,
    thresholds: tuple[int, ...] = (),
    **details: Any,
) -> Alert:
    """An alert whose details are the fields its kind declares (core/alert_fields.py) and
    whose urgency its family decides (`thresholds`: the family's, for "the highest")."""
    alert_fields.check(kind, details)
    return Alert(
        id=ident,
        kind=kind,
        plain=rendered.plain,
        html=rendered.html,
        bucket=bucket,
        created_at=now,
        details=details,
        urgent=is_urgent(kind, details, thresholds),
    )


def bucket_threshold(
    kind: AlertKind,
    ident: str,
    name: str,
    current: BucketReading,
    threshold: int,
    now: datetime,
    zone: tzinfo,
    *,
    thresholds: tuple[int, ...] = (),
    **details: Any,
) -> Alert:
    """A bucket's threshold crossing, the weekly and the session family's alike: one message,
    and the stdout fields `threshold`, `utilization`, `resets_at` after the family's own."""
    rendered = messages.render_threshold(
        name,
        threshold,
        current.utilization,
        current.resets_at,
        now,
        binding=current.binding,
        severity=current.severity,
        zone=zone,
    )
    return make(
        kind,
        ident,
        rendered,
        now,
        bucket=name,
        thresholds=thresholds,
        **details,
        threshold=threshold,
        utilization=current.utilization,
        resets_at=current.resets_at.isoformat() if current.resets_at else None,
    )
