"""Charts through the Matrix sink (docs/design.md §7), against a real Synapse with a media store.

The proof of delivery is the recipient's: a real nio device reads the room, finds the
`m.image` right after its alert's text, downloads the encrypted media through the
homeserver's authenticated media API, checks the ciphertext's sha256 and decrypts it
with AES-CTR (key and iv from the event's `file`, without nio's helper): the PNG that
comes out is byte for byte the one the chart module draws for the alert's spec.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from claude_matrix_bot import charts
from claude_matrix_bot.charts import ChartSpec, Fit, Picture, render_png
from claude_matrix_bot.model import Alert
from claude_matrix_bot.sinks.matrix import MatrixSink, picture_txn_id
from claude_matrix_bot.sinks.matrix import delivery as matrix_sink
from devstack.matrix_proxy import MatrixProxy, SendFault
from devstack.matrix_recipient import Recipient
from devstack.synapse import Account, Homeserver

pytestmark = pytest.mark.synapse

RESET = 1_765_130_400  # a Sunday 18:00 UTC
HOUR = 3600


@dataclass
class Room:
    homeserver: Homeserver
    bot: Account
    recipient: Recipient
    room_id: str
    creds_dir: Path
    store_dir: Path

    def sink(self) -> MatrixSink:
        # A new sink per delivery, as a new process would build it.
        return MatrixSink(creds_dir=self.creds_dir, room_id=self.room_id, store_dir=self.store_dir, timeout=10.0)


@pytest.fixture
def room(homeserver: Homeserver, tmp_path: Path) -> Iterator[Room]:
    suffix = uuid.uuid4().hex[:8]
    bot = homeserver.register(f"bot-{suffix}")
    alice = homeserver.register(f"alice-{suffix}")
    bot.write_creds_dir(tmp_path / "creds", homeserver.url)
    recipient = Recipient(homeserver.url, alice, tmp_path / "alice")
    room_id = recipient.create_encrypted_room([bot.user_id])
    yield Room(homeserver, bot, recipient, room_id, tmp_path / "creds", tmp_path / "store")
    recipient.close()


def forecast_spec() -> ChartSpec:
    samples = tuple((RESET - 7 * 86400 + h * HOUR, min(100.0, 0.6 * h)) for h in range(100))
    now, current = samples[-1]
    return ChartSpec(
        title=f"Weekly (all models): {current:.0f}% now",
        samples=samples,
        window_start=RESET - 7 * 86400,
        resets_at=RESET,
        now=now,
        thresholds=(50, 80),
        fit=Fit(start=now - 6 * HOUR, start_utilization=current - 6 * 0.6, exhausted_at=now + 67 * HOUR),
    )


def forecast_alert(alert_id: str, spec: ChartSpec | None = None, **details: object) -> Alert:
    chart = (spec or forecast_spec()).to_json()
    return Alert(
        id=alert_id,
        kind="forecast",
        plain=f"forecast {alert_id}",
        html=f"<b>forecast {alert_id}</b>",
        bucket="seven_day",
        details={"chart": chart, **details},
    )


def _media_files(homeserver: Homeserver) -> list[Path]:
    return [p for p in (homeserver.data_dir / "media").rglob("*") if p.is_file()]


def test_the_recipient_downloads_decrypts_and_checks_the_chart(room: Room) -> None:
    spec = forecast_spec()
    expected = render_png(spec)

    report = room.sink().deliver([forecast_alert("cmb-forecast-img1", spec)])

    assert report.delivered == ("cmb-forecast-img1",) and report.error is None
    history = room.recipient.history(room.room_id)
    assert history.undecryptable == ()
    [text] = history.decrypted
    [image] = history.images
    # The picture comes right after its alert's text.
    assert history.order == (text.event_id, image.event_id)
    assert text.body == "forecast cmb-forecast-img1"
    assert image.sender == room.bot.user_id
    assert image.content["msgtype"] == "m.image"
    assert spec.title in image.body
    assert image.info == {"mimetype": "image/png", "size": len(expected), "w": 1000, "h": 500}
    assert image.file["url"].startswith("mxc://")
    assert "url" not in image.content, "encrypted media names its URL only inside `file`"

    png = room.recipient.download_image(image)

    assert hashlib.sha256(png).hexdigest() == hashlib.sha256(expected).hexdigest()
    assert png == expected
    # The homeserver holds only ciphertext.
    stored = [p.read_bytes() for p in _media_files(room.homeserver)]
    assert stored, "the upload reached Synapse's media store"
    assert all(charts.PNG_SIGNATURE not in blob for blob in stored)
    assert all(expected not in blob for blob in stored)


def test_a_failed_upload_keeps_the_alert_and_the_retry_posts_each_event_once(
    room: Room, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_picture_for = matrix_sink.picture_for
    # 11 MB of picture: over the homeserver's max_upload_size, so Synapse answers 413.
    oversized = Picture(png=charts.PNG_SIGNATURE + b"\0" * 11_000_000, width=1000, height=500, body="Chart: big")
    monkeypatch.setattr(matrix_sink, "picture_for", lambda details, alert_id: oversized)

    failed = room.sink().deliver([forecast_alert("cmb-forecast-retry")])

    assert failed.delivered == ()
    assert failed.error is not None and "uploading the chart" in failed.error
    assert picture_txn_id("cmb-forecast-retry") in failed.error

    monkeypatch.setattr(matrix_sink, "picture_for", real_picture_for)
    retried = room.sink().deliver([forecast_alert("cmb-forecast-retry")])
    again = room.sink().deliver([forecast_alert("cmb-forecast-retry")])  # a crash before the outbox was saved

    assert retried.delivered == ("cmb-forecast-retry",)
    assert again.delivered == ("cmb-forecast-retry",)
    history = room.recipient.history(room.room_id)
    assert history.bodies() == ["forecast cmb-forecast-retry"], "the text's transaction id deduplicated the retry"
    assert len(history.images) == 1, "the picture's transaction id deduplicated it too"
    assert room.recipient.download_image(history.images[0]) == render_png(forecast_spec())


def test_a_picture_whose_text_is_in_the_room_goes_alone_on_its_first_upload(room: Room, tmp_path: Path) -> None:
    """The text went out, the picture's send failed after its upload; the retry comes after
    the homeserver forgot the text's transaction id (docs/design.md §5). The bot finds the text
    among its own events and sends the picture alone, with the upload it already made."""
    proxy = MatrixProxy(room.homeserver.url).start()
    try:
        creds = room.bot.write_creds_dir(tmp_path / "creds-via-proxy", proxy.url)

        def sink() -> MatrixSink:
            return MatrixSink(creds_dir=creds, room_id=room.room_id, store_dir=room.store_dir, timeout=10.0)

        proxy.break_sends(SendFault("pass"))  # the text
        proxy.break_sends(SendFault("status", 502, {"errcode": "M_UNKNOWN", "error": "bad gateway"}))  # the picture
        alert = forecast_alert("cmb-forecast-half")
        failed = sink().deliver([alert])
        assert failed.delivered == ()
        assert failed.error is not None and "sending the chart" in failed.error
        uploads = len(_media_files(room.homeserver))
        assert room.homeserver.forget_transaction_ids() > 0

        # As the outbox holds it: marked attempted before the first send.
        retried = sink().deliver([replace(alert, attempted_at=1_765_000_000_000)])
    finally:
        proxy.stop()

    assert retried.delivered == ("cmb-forecast-half",) and retried.error is None
    history = room.recipient.history(room.room_id)
    assert history.bodies() == ["forecast cmb-forecast-half"], "the text is not sent twice"
    [text] = history.decrypted
    [image] = history.images
    assert history.order == (text.event_id, image.event_id)
    assert room.recipient.download_image(image) == render_png(forecast_spec())
    assert len(_media_files(room.homeserver)) == uploads, "the retry reused its upload: no orphan"
    assert proxy.forwarded_sends[-1] == picture_txn_id("cmb-forecast-half")


def test_a_chart_that_cannot_be_drawn_leaves_the_text_alone(room: Room, caplog: pytest.LogCaptureFixture) -> None:
    broken = Alert(
        id="cmb-forecast-broken",
        kind="forecast",
        plain="forecast broken",
        html="<b>forecast broken</b>",
        bucket="seven_day",
        details={"chart": {"title": "x", "samples": "not samples"}},
    )
    plain = Alert(id="cmb-threshold-plain", kind="threshold", plain="threshold", html="<b>threshold</b>")

    with caplog.at_level(logging.WARNING, logger="claude_matrix_bot.charts"):
        report = room.sink().deliver([broken, plain])

    assert report.delivered == ("cmb-forecast-broken", "cmb-threshold-plain")
    history = room.recipient.history(room.room_id)
    assert history.bodies() == ["forecast broken", "threshold"]
    assert history.images == ()
    assert "could not draw the chart of alert cmb-forecast-broken" in caplog.text


def test_the_weekly_digest_reaches_the_room_with_its_chart(room: Room) -> None:
    """docs/design.md §7: the digest the core decides at a natural rollover, through the sink: its
    text, then its window's chart as an encrypted m.image the recipient decrypts."""
    from tests.scenarios import busy_week, roll_over

    [digest] = roll_over(busy_week())
    expected = render_png(ChartSpec.from_json(digest.details["chart"]))

    report = room.sink().deliver([digest])

    assert report.delivered == (digest.id,) and report.error is None
    history = room.recipient.history(room.room_id)
    [text] = history.decrypted
    [image] = history.images
    assert history.order == (text.event_id, image.event_id)
    assert text.body == digest.plain and text.body.startswith("📅 Weekly (all models): the week to Thu 8 Jan")
    assert image.body == "Chart: Weekly (all models): week to Thu 8 Jan, peak 100%"
    assert image.info == {"mimetype": "image/png", "size": len(expected), "w": 1000, "h": 500}
    assert room.recipient.download_image(image) == expected
