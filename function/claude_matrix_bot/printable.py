"""Text from upstream made safe to print (issue 21): terminal escape sequences and other
control characters in the usage answer reached the log and `status`, where an `ESC[...`
sequence rewrites what the operator's terminal shows. They are dropped where upstream
text enters: the usage answer as parsed, and the excerpts of error bodies."""

from __future__ import annotations

import re
from typing import Any

# C0 controls (tab and line breaks included: one-line texts), DEL, C1 controls, and the
# bidirectional overrides that reorder what a terminal or a client shows.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# The same characters as they can appear in a JSON document's bytes (raw C0 controls are
# not valid inside JSON strings, so only their escapes): a quick look before any walk.
_IN_JSON = re.compile(
    rb"\x7f|\xc2[\x80-\x9f]|\xe2\x80[\x8e\x8f\xaa-\xae]|\xe2\x81[\xa6-\xa9]"
    rb"|\\u(?:00[01][0-9a-fA-F]|007[fF]|00[89][0-9a-fA-F]|200[eEfF]|202[a-eA-E]|206[6-9])"
)


def may_hold_controls(document: bytes) -> bool:
    """Whether a JSON document's strings may hold a control character (a quick check)."""
    # Plain substring searches first: an ordinary answer has none of these bytes.
    if b"\\u" not in document and b"\x7f" not in document and b"\xc2" not in document and b"\xe2" not in document:
        return False
    return _IN_JSON.search(document) is not None


def printable(text: str) -> str:
    return _CONTROL.sub("", text) if _CONTROL.search(text) else text


def printable_json(value: Any) -> Any:
    """A parsed JSON value with every string (keys included) made printable; iterative,
    as answers may nest deep. Strings without control characters are left as they are."""
    root: list[Any] = [value]
    pending: list[tuple[Any, Any]] = [(root, 0)]
    while pending:
        holder, key = pending.pop()
        item = holder[key]
        if isinstance(item, str):
            holder[key] = printable(item)
        elif isinstance(item, list):
            pending.extend((item, index) for index in range(len(item)))
        elif isinstance(item, dict):
            if any(_CONTROL.search(k) for k in item):
                cleaned = {printable(k): v for k, v in item.items()}
                item.clear()
                item.update(cleaned)
            pending.extend((item, k) for k in item)
    return root[0]
