"""Several accounts in one room (docs/design.md §6): an account's alerts carry its name.

Pure, like the rest of the core. `decide()` and `record_failure()` know nothing
of accounts; the cycle passes each account's decision through `for_account`,
which leads every new message with the account's name (`work · 🟠 Weekly (all
models) usage passed 50%`), puts the name into the alert id (two accounts
crossing the same threshold in the same window are two alerts, and two Matrix
transactions) and adds an `account` field for the stdout sink. Without
`ACCOUNTS` nothing here runs, so single-account messages and ids are exactly
those of earlier releases.
"""

from __future__ import annotations

from dataclasses import replace
from html import escape

from ..model import Alert
from .decide import Decision

SEPARATOR = " · "
_ID_PREFIX = "cmb-"


def label_alert(alert: Alert, account: str) -> Alert:
    """`alert` as account `account` sends it: name first in text and HTML, name in the id."""
    rest = alert.id.removeprefix(_ID_PREFIX)
    html = alert.html
    # The title is the first bold run (messages._render): the name goes inside it.
    if html.startswith("<b>"):
        html = f"<b>{escape(account)}{SEPARATOR}{html[3:]}"
    else:
        html = f"{escape(account)}{SEPARATOR}{html}"
    details = {"account": account, **alert.details}
    chart = details.get("chart")
    if isinstance(chart, dict) and isinstance(chart.get("title"), str):
        # The picture says whose it is too: in a gallery or a notification it stands alone.
        details["chart"] = {**chart, "title": f"{account}{SEPARATOR}{chart['title']}"}
    return replace(
        alert,
        id=f"{_ID_PREFIX}{account}-{rest}",
        plain=f"{account}{SEPARATOR}{alert.plain}",
        html=html,
        details=details,
    )


def for_account(decision: Decision, account: str) -> Decision:
    """Label the alerts `decision` made, in its alert list and in the outbox it queued them in.

    Alerts already in the outbox from earlier cycles were labelled when they were made
    (their ids carry the account), so only this decision's own alerts are rewritten.
    """
    labelled = tuple(label_alert(alert, account) for alert in decision.alerts)
    by_raw_id = {raw.id: new for raw, new in zip(decision.alerts, labelled, strict=True)}
    outbox = tuple(by_raw_id.get(alert.id, alert) for alert in decision.state.outbox)
    return Decision(labelled, decision.state.with_outbox(outbox))
