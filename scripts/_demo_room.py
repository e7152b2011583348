"""The demo's reading of the room: what the recipient's device decrypts, on the simulated clock.

Synapse stamps each event with the real time it arrived; the demo records the real
time span of every simulated step, so each message is shown at the simulated time
of the step that delivered it. A picture (the forecast's chart, the weekly digest's)
is an encrypted `m.image` right after its text: the device downloads and decrypts it,
and the HTML transcript shows it inside that message.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, replace
from datetime import datetime
from html.parser import HTMLParser

from nio import MegolmEvent, RoomEncryptedImage, RoomMessagesResponse, RoomMessageText

from devstack.matrix_recipient import ReceivedImage, Recipient

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True, slots=True)
class RoomImage:
    """A decrypted picture: its text `body` and the plaintext file."""

    body: str
    width: int | None
    height: int | None
    data: bytes

    @property
    def is_png(self) -> bool:
        return self.data.startswith(PNG_SIGNATURE)


@dataclass(frozen=True, slots=True)
class RoomMessage:
    event_id: str
    sender: str
    body: str
    formatted_body: str | None
    server_ts_ms: int
    decrypted: bool
    images: tuple[RoomImage, ...] = ()  # the pictures sent right after this text


@dataclass(frozen=True, slots=True)
class StepSpan:
    """One simulated step: its simulated time and the real time span it took (ms)."""

    label: str
    simulated: datetime
    real_start_ms: int
    real_end_ms: int
    late_since: datetime | None = None  # alerts delivered here were raised at this earlier time


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    when: datetime | None
    late_since: datetime | None
    message: RoomMessage


class DemoRecipient(Recipient):
    """The recipient helper, plus server timestamps (which the tests do not need)."""

    def timeline(self, room_id: str) -> tuple[list[RoomMessage], int]:
        """(decrypted text messages oldest first, each with its pictures; number of events it
        could not decrypt)."""

        async def read() -> tuple[list[RoomMessage], list[tuple[int, ReceivedImage]], int]:
            await self._sync()
            response = await self.client.room_messages(room_id, limit=500)
            assert isinstance(response, RoomMessagesResponse), response
            messages: list[RoomMessage] = []
            pictures: list[tuple[int, ReceivedImage]] = []  # (index of the text it follows, image)
            undecryptable = 0
            for event in reversed(response.chunk):
                if isinstance(event, RoomMessageText):
                    content = event.source.get("content", {})
                    messages.append(
                        RoomMessage(
                            event_id=event.event_id,
                            sender=event.sender,
                            body=event.body,
                            formatted_body=content.get("formatted_body"),
                            server_ts_ms=event.server_timestamp,
                            decrypted=bool(getattr(event, "decrypted", False)),
                        )
                    )
                elif isinstance(event, RoomEncryptedImage) and messages:
                    content = dict(event.source.get("content", {}))
                    pictures.append((len(messages) - 1, ReceivedImage(event.event_id, event.sender, content)))
                elif isinstance(event, MegolmEvent):
                    undecryptable += 1
            return messages, pictures, undecryptable

        messages, pictures, undecryptable = self._run(read())
        # Downloads run on the same event loop, so after the read, not inside it.
        for index, picture in pictures:
            info = picture.info
            image = RoomImage(picture.body, info.get("w"), info.get("h"), self.download_image(picture))
            messages[index] = replace(messages[index], images=(*messages[index].images, image))
        return messages, undecryptable


def place_on_clock(messages: list[RoomMessage], spans: list[StepSpan]) -> list[TranscriptEntry]:
    entries: list[TranscriptEntry] = []
    for message in messages:
        span = next((s for s in spans if s.real_start_ms <= message.server_ts_ms <= s.real_end_ms), None)
        entries.append(
            TranscriptEntry(
                when=span.simulated if span else None,
                late_since=span.late_since if span else None,
                message=message,
            )
        )
    return entries


def clock(moment: datetime) -> str:
    return f"{moment:%a %H:%M}"


def plain_transcript(entries: list[TranscriptEntry], *, width: int = 11) -> str:
    lines: list[str] = []
    for entry in entries:
        when = clock(entry.when) if entry.when else "?"
        body = entry.message.body.splitlines() or [""]
        first = body[0]
        if entry.late_since is not None:
            first += f"   [arrived late: raised {clock(entry.late_since)}, homeserver was down]"
        lines.append(f"{when:<{width}}{first}")
        lines.extend(" " * width + rest for rest in body[1:])
        lines.extend(" " * width + _picture_line(image) for image in entry.message.images)
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


class _Sanitizer(HTMLParser):
    """Keeps the few tags the bot's messages use, without attributes; the rest is text."""

    ALLOWED = frozenset({"b", "i", "br", "p", "code", "em", "strong"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.ALLOWED:
            self.parts.append(f"<{tag}>")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.ALLOWED and tag != "br":
            self.parts.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        self.parts.append(html.escape(data, quote=False))


def _safe_html(fragment: str) -> str:
    sanitizer = _Sanitizer()
    sanitizer.feed(fragment)
    sanitizer.close()
    return "".join(sanitizer.parts)


def _picture_line(image: RoomImage) -> str:
    size = f"{image.width}x{image.height} " if image.width and image.height else ""
    return f"[picture: {image.body} ({size}{'PNG' if image.is_png else 'not a PNG'}, {len(image.data)} bytes)]"


def _figure(image: RoomImage) -> str:
    """The picture inline (a data: URL, so the page stands alone); only PNG data is embedded."""
    caption = f"<figcaption>{html.escape(image.body)}</figcaption>"
    if not image.is_png:
        return f'<figure class="missing">{caption}(not a PNG: not shown)</figure>'
    size = f' width="{int(image.width)}" height="{int(image.height)}"' if image.width and image.height else ""
    source = "data:image/png;base64," + base64.b64encode(image.data).decode("ascii")
    return f'<figure><img src="{source}" alt="{html.escape(image.body)}"{size}>{caption}</figure>'


def html_transcript(entries: list[TranscriptEntry], *, title: str, subtitle: str) -> str:
    rows: list[str] = []
    for entry in entries:
        when = clock(entry.when) if entry.when else "?"
        content = entry.message.formatted_body
        body = _safe_html(content) if content else html.escape(entry.message.body).replace("\n", "<br>")
        late = (
            f'<div class="late">arrived late: raised {clock(entry.late_since)}, the homeserver was down</div>'
            if entry.late_since
            else ""
        )
        lock = "🔒" if entry.message.decrypted else ""
        figures = "".join(_figure(image) for image in entry.message.images)
        rows.append(
            f'<tr><td class="when">{html.escape(when)}</td>'
            f'<td class="who">{html.escape(entry.message.sender)} {lock}</td>'
            f'<td class="msg">{body}{figures}{late}</td></tr>'
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 56em; color: #222; }}
h1 {{ font-size: 1.3em; }} p.sub {{ color: #666; }}
table {{ border-collapse: collapse; width: 100%; }}
td {{ vertical-align: top; padding: .6em .8em; border-bottom: 1px solid #eee; }}
td.when {{ white-space: nowrap; font-family: monospace; color: #555; }}
td.who {{ white-space: nowrap; color: #0a6; }}
div.late {{ margin-top: .4em; color: #b60; font-size: .9em; }}
figure {{ margin: .6em 0 0; }} figure img {{ max-width: 100%; height: auto; border: 1px solid #ddd; }}
figcaption {{ color: #666; font-size: .85em; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="sub">{html.escape(subtitle)}</p>
<table>
{chr(10).join(rows)}
</table>
</body></html>
"""
