"""The limit families' table (docs/design.md §8), urgency (§9) and the alert fields (§3).

Driven directly, like the rest of the core's tests: readings in, alerts out, no mocks."""

from __future__ import annotations

import re
from dataclasses import fields as dataclass_fields

import pytest

from claude_matrix_bot.core import family_table as families
from claude_matrix_bot.core.alert_fields import FIELDS, fields_of
from claude_matrix_bot.core.alerts import make
from claude_matrix_bot.core.config import DecideConfig
from claude_matrix_bot.core.family_table import FAMILIES, family_of, is_urgent
from claude_matrix_bot.core.messages import Rendered
from claude_matrix_bot.core.thresholds import crossed
from claude_matrix_bot.core.window import window_event
from claude_matrix_bot.model import AlertKind, BucketReading
from claude_matrix_bot.state import BucketState
from tests.helpers import REPO
from tests.scenarios import HOUR, MIN, T0, WEEK_RESET, armed_watch, busy_week, kinds

MODEL_KINDS: tuple[AlertKind, ...] = tuple(FIELDS)


@pytest.mark.parametrize(
    ("bucket", "family"),
    [
        ("five_hour", "session"),
        ("seven_day", "weekly"),
        ("seven_day_opus", "weekly"),
        ("seven_day_cowork", "weekly"),  # a new weekly bucket needs no code change
        ("something_new", "other"),
    ],
)
def test_a_buckets_family_comes_from_its_name(bucket: str, family: str) -> None:
    assert family_of(bucket).name == family


def test_every_familys_thresholds_are_a_setting_of_the_core() -> None:
    config_fields = {f.name for f in dataclass_fields(DecideConfig)}
    for family in FAMILIES:
        assert family.thresholds is None or family.thresholds in config_fields, family.name
        assert family.threshold_kind is None or family.threshold_kind in FIELDS, family.name


def test_only_the_weekly_family_has_a_forecast_a_digest_and_a_chart() -> None:
    assert [f.name for f in FAMILIES if f.forecast or f.digest or f.chart] == ["weekly"]
    assert [f.name for f in FAMILIES if f.back_after_limit] == ["session"]


def test_baseline_order_is_by_family_each_lead_first() -> None:
    names = ["zz_other", "seven_day_opus", "seven_day", "five_hour", "seven_day_cowork"]
    assert sorted(names, key=families.baseline_rank) == [
        "five_hour",
        "seven_day",
        "seven_day_cowork",
        "seven_day_opus",
        "zz_other",
    ]


@pytest.mark.parametrize(
    ("value", "said", "expected"),
    [(49.9, (), []), (50, (), [50]), (85, (50,), [80]), (85, (), [50, 80]), (None, (), []), (100, (50, 80), [])],
)
def test_one_threshold_helper(value: float | None, said: tuple[int, ...], expected: list[int]) -> None:
    assert crossed((50, 80), value, said) == expected


def test_the_window_event_of_each_lifecycle_step() -> None:
    reset = T0 + HOUR
    open_window = BucketState(utilization=40.0, resets_at=reset, window=reset)

    def event(current: BucketReading | None, at: object = T0) -> str:
        return window_event(open_window, current, at, 60).kind  # type: ignore[arg-type]

    assert window_event(None, BucketReading(1.0, reset), T0, 60).kind == "new"
    assert event(BucketReading(41.0, reset)) == "same"
    assert event(BucketReading(41.0, reset + 30 * MIN)) == "shift"
    assert event(BucketReading(1.0, reset + 5 * HOUR), reset + MIN) == "rollover"
    assert event(None) == "none", "null before its reset: the window goes on"
    assert event(None, reset + MIN) == "end", "null or absent after its reset: the window ended"


def _urgent(kind: AlertKind, thresholds: tuple[int, ...] = (), **details: object) -> bool:
    return is_urgent(kind, details, thresholds)


def test_urgency_of_each_kind() -> None:
    """docs/design.md §9: what must reach a person at once, and nothing else."""
    assert _urgent("threshold", (50, 80), threshold=80)
    assert not _urgent("threshold", (50, 80), threshold=50)
    assert _urgent("forecast")
    assert _urgent("degraded")
    assert _urgent("locked")
    assert _urgent("extra_usage", started=True)
    assert _urgent("extra_usage", threshold=100)
    assert not _urgent("extra_usage", threshold=80)
    assert _urgent("session", event="limit")
    assert not _urgent("session", event="back")
    assert not _urgent("session", (80,), event="threshold", threshold=80)
    assert _urgent("credit", event="24h")
    assert _urgent("banked_reset", event="24h")
    for kind in ("armed", "reset_shift", "recovered", "digest"):
        assert not _urgent(kind), kind


def test_a_busy_week_is_urgent_at_its_highest_threshold_and_its_forecast_only() -> None:
    watch = busy_week(until=WEEK_RESET - HOUR)
    urgent = [(a.kind, a.details.get("threshold")) for a in watch.log if a.urgent]
    calm = [(a.kind, a.details.get("threshold")) for a in watch.log if not a.urgent]
    assert sorted(urgent, key=str) == [("forecast", None), ("threshold", 80)]
    assert ("threshold", 50) in calm
    assert ("armed", None) in calm
    assert all(a.to_json()["urgent"] is a.urgent for a in watch.log)


def test_degraded_is_urgent_and_recovered_is_not() -> None:
    watch = armed_watch()
    said = [a for _ in range(3) for a in watch.fail()]
    assert [(a.kind, a.urgent) for a in said] == [("degraded", True)]
    back = watch.see({"seven_day": (10.0, WEEK_RESET)}, at=T0 + HOUR)
    assert kinds(back) == ["recovered"]
    assert back[0].urgent is False


def test_an_alert_carries_only_the_fields_its_kind_declares() -> None:
    rendered = Rendered("p", "<b>p</b>")
    with pytest.raises(ValueError, match="resets"):
        make("reset_shift", "cmb-x", rendered, T0, bucket="five_hour", resets=1)
    alert = make("reset_shift", "cmb-x", rendered, T0, bucket="five_hour", old_resets_at="a", new_resets_at="b")
    assert set(alert.to_json()) - {"id", "kind", "urgent", "bucket", "plain", "html", "created_at"} <= fields_of(
        "reset_shift"
    )


def test_the_readmes_field_list_is_the_declaration() -> None:
    readme = (REPO / "README.md").read_text()
    table = readme.split("<!-- stdout-fields -->")[1].split("<!-- /stdout-fields -->")[0]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`(\w+)`", cells[0]) if len(cells) == 2 else None
        if match and match[1] != "kind":  # the header
            rows[match[1]] = set(re.findall(r"`(\w+)`", cells[1]))
    assert rows == {kind: set(fields_of(kind)) for kind in MODEL_KINDS}
