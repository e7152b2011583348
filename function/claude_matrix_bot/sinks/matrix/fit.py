"""What one alert may weigh in the room, and which refusals no retry can change
(issue 21 item 2: one oversized alert must not block the outbox forever).

Synapse refuses an event over 64 KiB (its PDU limit) with 413 `M_TOO_LARGE`. An encrypted
event carries its content as base64 of the Megolm ciphertext of the JSON (4/3 of it, plus
framing), plain text and HTML both inside: 16,000 bytes of JSON for each keeps the event
under about 44 KiB, well below the limit, whatever the text holds (`json.dumps` escapes
every non-ASCII character, the worst case of what nio sends).
"""

from __future__ import annotations

import json
from html import escape

MAX_PART_BYTES = 16_000
ELLIPSIS = "…"

# Answers to a room send that the same event would get again on every retry.
_REFUSED_FOR_GOOD_CODES = frozenset({"M_TOO_LARGE", "M_BAD_JSON"})


def _json_size(text: str) -> int:
    return len(json.dumps(text))


def cut(text: str, limit: int = MAX_PART_BYTES) -> str:
    """`text` itself when it fits in `limit` bytes of JSON, else its longest prefix that
    fits with "…" after it."""
    if _json_size(text) <= limit:
        return text
    short, long = 0, len(text)
    while short < long:  # the longest prefix that fits: binary search, ~17 steps for 100 KB
        middle = (short + long + 1) // 2
        if _json_size(text[:middle] + ELLIPSIS) <= limit:
            short = middle
        else:
            long = middle - 1
    return text[:short] + ELLIPSIS


def fit_message(plain: str, html: str, limit: int = MAX_PART_BYTES) -> tuple[str, str]:
    """The alert's text and HTML, each within `limit`. An HTML body that does not fit is
    replaced by the cut plain text, escaped (cutting markup could leave it broken)."""
    plain = cut(plain, limit)
    if _json_size(html) <= limit:
        return plain, html
    budget = limit
    while True:
        fitted = escape(cut(plain, budget)).replace("\n", "<br>")
        if _json_size(fitted) <= limit:
            return plain, fitted
        budget //= 2


def refused_for_good(status: int | None, errcode: object) -> bool:
    """413, or 400 `M_TOO_LARGE` / `M_BAD_JSON`: sending the same event again cannot help."""
    return status == 413 or (status == 400 and errcode in _REFUSED_FOR_GOOD_CODES)
