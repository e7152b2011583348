"""core.accounts: an account's alerts carry its name in text, HTML, id and stdout fields (docs/design.md §6).
Pure functions, driven directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from claude_matrix_bot.core.accounts import for_account, label_alert
from claude_matrix_bot.core.decide import DecideConfig, decide, record_failure
from claude_matrix_bot.model import Alert, BucketReading, Reading

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
RESET = NOW + timedelta(days=2)
CONFIG = DecideConfig(health_failures=1)


def _reading(week: float) -> Reading:
    return Reading(NOW, {"seven_day": BucketReading(week, RESET)})


def test_the_account_leads_the_text_and_the_html_title() -> None:
    armed = decide(None, _reading(10.0), NOW, CONFIG).state
    (alert,) = decide(armed, _reading(51.0), NOW + timedelta(minutes=5), CONFIG).alerts

    labelled = label_alert(alert, "work")

    assert labelled.plain == "work · " + alert.plain
    assert labelled.plain.startswith("work · 🟠 Weekly (all models) usage passed 50%")
    assert labelled.html == "<b>work · " + alert.html.removeprefix("<b>")
    assert labelled.details == {"account": "work", **alert.details}
    assert labelled.to_json()["account"] == "work"
    assert (labelled.kind, labelled.bucket, labelled.created_at) == (alert.kind, alert.bucket, alert.created_at)


def test_ids_carry_the_account_stay_stable_and_differ_between_accounts() -> None:
    (alert,) = decide(None, _reading(10.0), NOW, CONFIG).alerts

    work, priv = label_alert(alert, "work"), label_alert(alert, "priv")

    assert work.id.startswith("cmb-work-armed-")
    assert priv.id.startswith("cmb-priv-armed-")
    assert work.id != priv.id
    assert label_alert(alert, "work").id == work.id, "the same alert always gets the same id"


def test_html_special_characters_in_the_text_stay_escaped() -> None:
    (degraded,) = record_failure(None, "<script>", "", NOW, CONFIG).alerts
    labelled = label_alert(degraded, "priv")
    assert "<script>" not in labelled.html
    assert labelled.html.startswith("<b>priv · 🚨")


def test_for_account_labels_the_new_alerts_in_the_outbox_and_leaves_older_ones() -> None:
    first = for_account(record_failure(None, "HTTP 500", "", NOW, CONFIG), "priv")
    assert [a.id for a in first.state.outbox] == [a.id for a in first.alerts]
    (queued,) = first.state.outbox
    assert queued.plain.startswith("priv · 🚨")

    # Undelivered, the degraded alert waits; the next success adds the recovered one.
    second = for_account(decide(first.state, _reading(10.0), NOW + timedelta(minutes=5), CONFIG), "priv")

    kinds = [a.kind for a in second.alerts]
    assert kinds == ["recovered", "armed"]
    assert second.state.outbox[0] == queued, "the queued alert is not labelled twice"
    assert [a.id for a in second.state.outbox[1:]] == [a.id for a in second.alerts]
    assert all(a.plain.startswith("priv · ") and a.plain.count("priv · ") == 1 for a in second.state.outbox)


def test_a_decision_without_alerts_is_unchanged() -> None:
    armed = decide(None, _reading(10.0), NOW, CONFIG)
    quiet = decide(armed.state.with_outbox(()), _reading(10.5), NOW + timedelta(minutes=5), CONFIG)
    assert for_account(quiet, "work") == quiet


def test_a_picture_names_the_account_too_and_the_alert_keeps_the_rest_of_its_chart() -> None:
    from tests.scenarios import busy_week, roll_over

    (digest,) = roll_over(busy_week())
    labelled = label_alert(digest, "priv")

    chart, original = labelled.details["chart"], digest.details["chart"]
    assert chart["title"] == "priv · " + original["title"]
    assert {k: v for k, v in chart.items() if k != "title"} == {k: v for k, v in original.items() if k != "title"}
    assert digest.details["chart"] is original and not original["title"].startswith("priv"), "the input is untouched"
    assert label_alert(alert_without_chart(), "priv").details == {"account": "priv", "threshold": 50}


def alert_without_chart() -> Alert:
    return Alert(id="cmb-threshold-x", kind="threshold", plain="p", html="<b>p</b>", details={"threshold": 50})
