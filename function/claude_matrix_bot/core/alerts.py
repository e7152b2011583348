"""Alert ids and values, shared by the rules of the core (decide, extra usage, digest)."""

from __future__ import annotations

import hashlib
from datetime import datetime

from ..model import Alert, AlertKind
from . import messages


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
    **details: object,
) -> Alert:
    return Alert(
        id=ident, kind=kind, plain=rendered.plain, html=rendered.html, bucket=bucket, created_at=now, details=details
    )
