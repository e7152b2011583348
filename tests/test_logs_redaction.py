"""The entry point's Redactor masks every log line (issue 13); an exception's traceback
is kept at DEBUG, masked, and reduced to its type and message above DEBUG."""

from __future__ import annotations

import base64
import json
import logging
import sys
from urllib.parse import quote

import pytest

from claude_matrix_bot.logs import MASK, TEXT_FORMAT, JsonFormatter, RedactingFilter, Redactor

SECRET = "sk-ant-oat01-not-a-real-token-0123456789"


def failing_record() -> logging.LogRecord:
    try:
        raise RuntimeError(f"the server echoed Bearer {SECRET}")
    except RuntimeError:
        exc_info = sys.exc_info()
    return logging.LogRecord("claude_matrix_bot.test", logging.ERROR, __file__, 1, "delivery broke", (), exc_info)


def test_a_traceback_is_kept_at_debug_with_the_secret_masked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    record = failing_record()
    assert RedactingFilter(Redactor.of(SECRET)).filter(record)
    text = logging.Formatter(TEXT_FORMAT).format(record)
    assert "Traceback (most recent call last)" in text
    assert "failing_record" in text, "the frames are there"
    assert SECRET not in text and MASK in text
    line = json.loads(JsonFormatter().format(record))
    assert "Traceback" in line["traceback"] and SECRET not in json.dumps(line)


def test_above_debug_only_the_type_and_the_masked_message_stay(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    record = failing_record()
    assert RedactingFilter(Redactor.of(SECRET)).filter(record)
    text = logging.Formatter(TEXT_FORMAT).format(record)
    assert "Traceback" not in text
    assert f"delivery broke (RuntimeError: the server echoed Bearer {MASK})" in text
    assert "traceback" not in json.loads(JsonFormatter().format(record))


def test_short_values_are_not_secrets_and_the_longest_is_masked_first() -> None:
    redactor = Redactor.of("short", SECRET, SECRET[:20])
    assert redactor(f"short {SECRET} {SECRET[:20]}") == f"short {MASK} {MASK}"


ECHOES = {
    "base64": base64.b64encode(SECRET.encode()).decode(),
    "base64-unpadded-inside-json": base64.b64encode(json.dumps({"t": SECRET}).encode()).decode().rstrip("="),
    "urlsafe-at-offset-1": base64.urlsafe_b64encode(b"x" + SECRET.encode()).decode(),
    "url-encoded": quote(f"Bearer {SECRET}", safe=""),
    "split-across-lines": f"{SECRET[:9]}\n  {SECRET[9:23]}\r\n{SECRET[23:]}",
    "truncated-to-12": SECRET[-12:],
    "lower-cased": SECRET.lower(),
    "upper-cased-base64": base64.b64encode(SECRET.encode()).decode().upper(),
}


@pytest.mark.parametrize("echo", list(ECHOES.values()), ids=list(ECHOES))
def test_encoded_and_partial_echoes_are_masked(echo: str) -> None:
    # Issue 21 item 6: only the exact string used to be masked.
    masked = Redactor.of(SECRET)(f"upstream said: {echo} (end)")
    assert MASK in masked
    assert masked.startswith("upstream said: ") and masked.endswith(" (end)")
    folded = "".join(masked.split()).lower()
    assert not any(SECRET[i : i + 12].lower() in folded for i in range(len(SECRET) - 11))


def test_eleven_characters_of_a_secret_and_ordinary_text_stay() -> None:
    redactor = Redactor.of(SECRET)
    text = f"the quick brown fox jumps over the lazy dog; {SECRET[:11]} 0123456789"
    assert redactor(text) == text
