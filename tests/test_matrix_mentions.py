"""`m.mentions` (docs/design.md §9) as the people in the room receive it: a real Synapse, the
bot's Matrix sink, and recipients that decrypt every event and read its `m.mentions`
(matrix-nio, and Element's matrix-js-sdk for the mention itself).

An urgent alert names the MATRIX_MENTION users in `m.mentions.user_ids`, links each in the
HTML body and writes the id in the plain body; every other event the bot sends, pictures
included, carries `m.mentions: {}`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_matrix_bot.model import Alert
from claude_matrix_bot.sinks.matrix import MatrixSink
from claude_matrix_bot.sinks.matrix.mentions import mention, user_link
from devstack.fakes.anthropic import FakeAnthropic
from devstack.matrix_recipient import Recipient
from devstack.synapse import Account, Homeserver
from tests.chart_scenarios import synthetic_window
from tests.element_recipient import ElementDevice, ensure_installed
from tests.helpers import assert_no_secrets
from tests.matrix_scene import make_scene


def alert(name: str, *, urgent: bool, chart: bool = False) -> Alert:
    details = {"chart": synthetic_window().to_json()} if chart else {}
    return Alert(
        id=f"cmb-{name}-{uuid.uuid4().hex[:8]}",
        kind="threshold",
        plain=f"alert {name}",
        html=f"<b>alert {name}</b>",
        bucket="seven_day",
        details=details,
        urgent=urgent,
    )


# --- the content, pure ---------------------------------------------------------------------------


def test_no_one_mentioned_is_an_empty_object_and_the_text_as_it_is() -> None:
    said = mention("plain", "<b>html</b>", ())
    assert (said.plain, said.html, said.mentions) == ("plain", "<b>html</b>", {})


def test_mentioned_users_are_in_m_mentions_the_html_links_and_the_plain_body() -> None:
    said = mention("Limit reached", "<b>Limit reached</b>", ("@me:example.org", "@ops:example.org", "@me:example.org"))
    assert said.mentions == {"user_ids": ["@me:example.org", "@ops:example.org"]}
    assert said.plain == "Limit reached\n@me:example.org @ops:example.org"
    assert said.html == (
        '<b>Limit reached</b><br><a href="https://matrix.to/#/@me:example.org">@me:example.org</a>'
        ' <a href="https://matrix.to/#/@ops:example.org">@ops:example.org</a>'
    )


def test_a_user_link_is_escaped() -> None:
    assert user_link('@a"<b>:x') == '<a href="https://matrix.to/#/@a%22%3Cb%3E:x">@a&quot;&lt;b&gt;:x</a>'


# --- through Synapse -------------------------------------------------------------------------------


def _users(homeserver: Homeserver, tmp_path: Path) -> tuple[Account, Account, Account]:
    suffix = uuid.uuid4().hex[:8]
    bot = homeserver.register(f"bot-{suffix}")
    bot.write_creds_dir(tmp_path / "creds", homeserver.url)
    return bot, homeserver.register(f"alice-{suffix}"), homeserver.register(f"bob-{suffix}")


@pytest.fixture
def recipients() -> Iterator[list[Recipient]]:
    opened: list[Recipient] = []
    yield opened
    for recipient in opened:
        recipient.close()


@pytest.mark.synapse
def test_each_event_carries_m_mentions_and_only_urgent_alerts_name_someone(
    homeserver: Homeserver, tmp_path: Path, recipients: list[Recipient]
) -> None:
    bot, alice, bob = _users(homeserver, tmp_path)
    reader = Recipient(homeserver.url, alice, tmp_path / "alice")
    recipients.append(reader)
    # A room of more than two members: without a mention the default push rules stay silent.
    room_id = reader.create_encrypted_room([bot.user_id, bob.user_id])
    sink = MatrixSink(tmp_path / "creds", room_id, tmp_path / "store", timeout=10, mention=(alice.user_id,))

    note, limit, charted = (
        alert("note", urgent=False),
        alert("limit", urgent=True),
        alert("chart", urgent=False, chart=True),
    )
    report = sink.deliver([note, limit, charted])

    assert report.error is None and report.delivered == (note.id, limit.id, charted.id)
    history = reader.history(room_id)
    assert history.undecryptable == ()
    by_body = {m.body.split("\n")[0]: m for m in history.decrypted}
    assert by_body["alert note"].mentions == {}
    assert by_body["alert note"].body == "alert note"
    assert by_body["alert chart"].mentions == {}
    urgent = by_body["alert limit"]
    assert urgent.mentions == {"user_ids": [alice.user_id]}
    assert urgent.body == f"alert limit\n{alice.user_id}"
    assert (
        urgent.formatted_body
        == f'<b>alert limit</b><br><a href="https://matrix.to/#/{alice.user_id}">{alice.user_id}</a>'
    )
    [image] = history.images
    assert image.mentions == {}, "a picture pings no one either"


@pytest.mark.synapse
@pytest.mark.slow
def test_element_reads_the_mention_of_an_urgent_alert(homeserver: Homeserver, tmp_path: Path) -> None:
    ensure_installed()
    bot, alice, bob = _users(homeserver, tmp_path)
    laptop = ElementDevice(homeserver.url, alice.user_id, alice.password).start()
    try:
        room_id = laptop.create_encrypted_room([bot.user_id, bob.user_id])
        sink = MatrixSink(tmp_path / "creds", room_id, tmp_path / "store", timeout=10, mention=(alice.user_id,))
        note, limit = alert("note", urgent=False), alert("limit", urgent=True)
        assert sink.deliver([note, limit]).delivered == (note.id, limit.id)
        shown = laptop.messages(room_id, bot.user_id, 2)
        assert [(m.decrypted, m.msgtype, m.mentions) for m in shown] == [
            (True, "m.text", {}),
            (True, "m.text", {"user_ids": [alice.user_id]}),
        ]
        assert alice.user_id in (shown[1].formatted_body or "")
    finally:
        laptop.close()
    assert alice.password not in laptop.stderr


@pytest.mark.synapse
def test_through_the_cli_the_urgent_alert_mentions_and_the_rest_do_not(
    homeserver: Homeserver, anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    scene = make_scene(homeserver, anthropic, tmp_path)
    # Two users: one not in the room (a mention names whom it names, members or not).
    scene.env["MATRIX_MENTION"] = f"@nobody:localhost,{scene.alice.user_id}"

    try:
        scene.run(0, 30.0)  # armed
        scene.run(5, 55.0)  # 50%: a note
        scene.run(10, 85.0)  # 80%, the highest threshold: urgent
        history = scene.recipient.history(scene.room_id)
        assert history.undecryptable == ()
        said = [(m.body.splitlines()[0], m.mentions) for m in history.decrypted]
        mentioned = {"user_ids": ["@nobody:localhost", scene.alice.user_id]}
        assert [mentions for _, mentions in said] == [{}, {}, mentioned], said
        assert "usage passed 80%" in said[2][0]
        assert history.decrypted[2].body.endswith(f"\n@nobody:localhost {scene.alice.user_id}")
        assert_no_secrets(scene.secrets(), *scene.outputs)
    finally:
        scene.proxy.stop()
        scene.recipient.close()
