"""Messages of the credit, banked-reset and account families (docs/design.md §8): plain text
and Matrix HTML, times on the reader's clock (docs/design.md §9)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo
from html import escape

from ..family_values import CreditBudget, ResetGrant
from . import messages
from .messages import Rendered, fmt_pct, fmt_relative, fmt_when

CREDIT_ICON = "💳"
RESET_ICON = "🔄"
NEVER_CLAIMS = "Claim it in Claude Code; this bot only reads it and never claims a reset."


def _render(title: str, lines: Sequence[str]) -> Rendered:
    plain = "\n".join([title, *lines])
    return Rendered(plain, f"<b>{escape(title)}</b>" + "".join(f"<br>{escape(line)}" for line in lines))


def fmt_dollars(amount: float) -> str:
    """Credit budgets are USD floats (docs/design.md §2): `$247.53`."""
    return f"${amount:,.2f}"


def credit_name(credit: CreditBudget) -> str:
    """`a $250.00 credit`, named after its amount; the key goes in the details line."""
    return f"{fmt_dollars(credit.limit)} credit"


def _left(credit: CreditBudget) -> str:
    return f"{fmt_dollars(credit.remaining)} left of {fmt_dollars(credit.limit)} ({fmt_pct(credit.utilization)} used)."


def _expires(moment: datetime | None, now: datetime, zone: tzinfo) -> str:
    return "No expiry reported." if moment is None else f"Expires {fmt_when(moment, now, zone)}."


def render_credit_new(credit: CreditBudget, now: datetime, zone: tzinfo) -> Rendered:
    title = f"{CREDIT_ICON} A {credit_name(credit)} is on the account"
    lines = [_left(credit), _expires(credit.expires_at, now, zone), f"(`{credit.key}` in the usage answer.)"]
    return _render(title, lines)


def render_credit_threshold(credit: CreditBudget, threshold: int, now: datetime, zone: tzinfo) -> Rendered:
    title = f"{CREDIT_ICON} {threshold}% of the {credit_name(credit)} used"
    lines = [_left(credit), _expires(credit.expires_at, now, zone)]
    if threshold >= 100:
        lines.append("It is used up: further use is billed or limited as the plan says.")
    return _render(title, lines)


def render_credit_expiring(credit: CreditBudget, now: datetime, zone: tzinfo) -> Rendered:
    assert credit.expires_at is not None
    when = fmt_relative(credit.expires_at, now)
    title = f"⏳ The {credit_name(credit)} expires {when} with {fmt_dollars(credit.remaining)} unused"
    lines = [_left(credit), _expires(credit.expires_at, now, zone), "Credit left at expiry is lost."]
    return _render(title, lines)


def clears_in_words(clears: Sequence[str]) -> str:
    """What a grant clears: `five_hour`, `seven_day` -> "5-hour session, Weekly (all models)"."""
    return ", ".join(messages.bucket_label(name) for name in clears) if clears else "not said by the answer"


def _grant_name(grant: ResetGrant) -> str:
    return f"“{grant.label}”" if grant.label else "a usage-limit reset"


def _grant_lines(grant: ResetGrant, now: datetime, zone: tzinfo) -> list[str]:
    total = f" of {grant.resets_total}" if grant.resets_total is not None else ""
    until = f", until {fmt_when(grant.ends_at, now, zone)}" if grant.ends_at is not None else ""
    return [
        f"{grant.resets_left}{total} reset{'s' if grant.resets_left != 1 else ''} left{until}.",
        f"A reset clears: {clears_in_words(grant.clears)}.",
    ]


def render_grant_available(grant: ResetGrant, now: datetime, zone: tzinfo) -> Rendered:
    title = f"{RESET_ICON} A banked usage-limit reset is available: {_grant_name(grant)}"
    lines = _grant_lines(grant, now, zone)
    if grant.use_requires_limit:
        lines.append("It can be used once the account is at a limit.")
    return _render(title, [*lines, NEVER_CLAIMS])


def render_grant_expiring(grant: ResetGrant, now: datetime, zone: tzinfo) -> Rendered:
    assert grant.ends_at is not None
    title = f"⏳ A banked usage-limit reset ends {fmt_relative(grant.ends_at, now)} unused: {_grant_name(grant)}"
    return _render(title, [*_grant_lines(grant, now, zone), "Resets left when it ends are lost.", NEVER_CLAIMS])


def render_grant_usable(grant: ResetGrant, limits: Sequence[str], now: datetime, zone: tzinfo) -> Rendered:
    at = f" ({', '.join(messages.bucket_label(n) for n in limits)})" if limits else ""
    title = f"{RESET_ICON} At a limit{at}: a banked reset can clear it now"
    name = _grant_name(grant)  # the label as the server wrote it: only the first letter raised
    return _render(title, [f"{name[:1].upper()}{name[1:]}.", *_grant_lines(grant, now, zone), NEVER_CLAIMS])


def render_locked(reason: str, buckets: Sequence[str]) -> Rendered:
    words = reason.replace("_", " ")
    title = f"⛔ The account is locked: {words}"
    lines = [
        f"The usage answer says locked_reason “{reason}” on {', '.join(buckets)}.",
        "Claude cannot be used with this account until it is restored (for a removed seat: the workspace admin).",
    ]
    return _render(title, lines)


def credit_row(credit: CreditBudget, now: datetime, zone: tzinfo) -> str:
    """The armed baseline's and `status`'s line: left, of, expiry (docs/design.md §8)."""
    expiry = f", expires {fmt_when(credit.expires_at, now, zone)}" if credit.expires_at else ", no expiry reported"
    return f"• Credit ({credit.key}): {fmt_dollars(credit.remaining)} left of {fmt_dollars(credit.limit)}{expiry}"


def grant_row(grant: ResetGrant, now: datetime, zone: tzinfo) -> str:
    until = f", until {fmt_when(grant.ends_at, now, zone)}" if grant.ends_at else ""
    return f"• Banked reset {_grant_name(grant)}: {grant.resets_left} left{until}"


def breakdown_line(summary: str) -> str:
    return f"Where the week went: {summary}."
