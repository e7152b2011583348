"""`m.mentions` (docs/design.md §9): how an alert pings someone, and how every other
message pings no one.

Since MSC4210 (Matrix spec v1.17) only `m.mentions` makes a client notify for a mention;
a message without it is judged by older rules that match names in its body. So every
event the bot sends carries `m.mentions`: an urgent alert names the `MATRIX_MENTION`
users there, with a link to each in the HTML body (a client shows it as a pill) and the
user id in the plain body; every other message carries `{}`, so nothing in its text
pings anyone by accident.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote

NO_MENTIONS: dict[str, Any] = {}


@dataclass(frozen=True, slots=True)
class Mentioned:
    plain: str
    html: str
    mentions: dict[str, Any]


def user_link(user_id: str) -> str:
    """`<a href="https://matrix.to/#/@me:example.org">@me:example.org</a>`: the spec's user link."""
    href = "https://matrix.to/#/" + quote(user_id, safe="@:")
    return f'<a href="{escape(href)}">{escape(user_id)}</a>'


def mention(plain: str, html: str, users: Sequence[str]) -> Mentioned:
    """The text and `m.mentions` of a message that mentions `users` (none: `{}`, text as is)."""
    if not users:
        return Mentioned(plain, html, dict(NO_MENTIONS))
    ids = list(dict.fromkeys(users))  # once each, in the order configured
    return Mentioned(
        plain=f"{plain}\n{' '.join(ids)}",
        html=f"{html}<br>{' '.join(user_link(u) for u in ids)}",
        mentions={"user_ids": ids},
    )
