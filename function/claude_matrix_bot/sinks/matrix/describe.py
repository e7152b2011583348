"""nio's error values and the homeserver's error answers, in words for a person."""

from __future__ import annotations

from typing import Any


def _describe_error(response: Any) -> str:
    transport = getattr(response, "transport_response", None)
    status = getattr(transport, "status", None)
    errcode = getattr(response, "status_code", None)
    message = getattr(response, "message", None)
    retry_after_ms = getattr(response, "retry_after_ms", None)
    return _describe_status(status, errcode, message, {"retry_after_ms": retry_after_ms})


def _describe_status(status: int | None, errcode: Any, message: Any, payload: dict[str, Any]) -> str:
    code = str(errcode) if errcode else ""
    text = str(message) if message else ""
    if code == "M_UNKNOWN_TOKEN" or status == 401:
        return (
            "the homeserver no longer accepts the bot's access token (M_UNKNOWN_TOKEN: logged out or revoked); "
            "log in again and update MATRIX_CREDS_DIR"
        )
    if code == "M_LIMIT_EXCEEDED" or status == 429:
        retry = payload.get("retry_after_ms")
        hint = f", retry after {int(retry) / 1000:g}s" if isinstance(retry, int | float) and retry else ""
        return f"rate limited by the homeserver (429 M_LIMIT_EXCEEDED{hint}); the next cycle retries"
    if code == "M_FORBIDDEN" or status == 403:
        return f"the homeserver refused (M_FORBIDDEN: {text or 'forbidden'}): was the bot kicked or banned?"
    if status is not None and status >= 500:
        return f"the homeserver failed (HTTP {status}{': ' + text if text else ''}); the next cycle retries"
    parts = [p for p in (f"HTTP {status}" if status else "", code, text) if p]
    return ": ".join(parts) or "no usable answer from the homeserver"
