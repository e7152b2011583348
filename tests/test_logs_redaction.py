"""The entry point's Redactor masks every log line (issue 13); an exception's traceback
is kept at DEBUG, masked, and reduced to its type and message above DEBUG."""

from __future__ import annotations

import json
import logging
import sys

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
