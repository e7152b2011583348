"""The HTTP trigger (functions-framework target `watch`), framework-agnostic.

`POST /` runs one cycle: a plain POST, or a CloudEvent in binary or structured
mode (Knative PingSource sends `dev.knative.sources.ping`). `GET /` answers the
status. Response codes say what happened, with a JSON body:

Refusals come in one order (docs/design.md §5): authentication first (an unauthenticated
caller learns nothing else, not even the size or content policy, the status or a
configuration error: with TRIGGER_TOKEN set, GET and HEAD need it too, and it is
checked before any other setting is read), then size, then shape.

  200 done · 400 malformed CloudEvent · 401 missing/wrong TRIGGER_TOKEN ·
  405 other methods · 409 another cycle holds the lease · 413 body too large ·
  415 unexpected content type · 429 sooner than MIN_INTERVAL_SEC after the last
  poll (the API is not called) · 500 configuration/storage · 502 upstream API ·
  503 delivery.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import BotError, ConfigError, InternalError
from .logs import Redactor, configure_logging, cycle_scope, set_log_format, startup_level
from .settings import Settings, load_settings

log = logging.getLogger("claude_matrix_bot.http")

MAX_BODY_BYTES = 64 * 1024
CE_REQUIRED = ("specversion", "type", "source", "id")
STRUCTURED_CE = "application/cloudevents+json"
TOKEN_HEADER = "ce-triggertoken"  # noqa: S105 (a header name, not a secret); a PingSource sets it through ceOverrides.extensions.triggertoken


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class RequestBody:
    """The request body, read at most once and never beyond `limit` bytes.

    `read()` answers the body, or None when it is larger than the limit (announced
    by Content-Length, or found by reading one byte past it). `consumed` says
    whether the client's body was read to its end: when it was not, the entry
    point must answer in a way that still reaches the client (function/main.py).
    """

    def __init__(self, read: Callable[[int], bytes], length: int | None, limit: int = MAX_BODY_BYTES) -> None:
        self._read = read
        self._length = length
        self._limit = limit
        self._data: bytes | None = None
        self._too_large = False
        self.consumed = length == 0

    @classmethod
    def of(cls, data: bytes) -> RequestBody:
        return cls(lambda _n: data, len(data))

    def read(self) -> bytes | None:
        if self._data is None and not self._too_large:
            if self._length is not None and self._length > self._limit:
                self._too_large = True
            else:
                data = self._read(self._limit + 1)
                if len(data) > self._limit:
                    self._too_large = True
                else:
                    self._data, self.consumed = data, True
        return self._data


class _Headers:
    """Case-insensitive view of request headers."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._h = {k.lower(): v for k, v in headers.items()}

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._h.get(name.lower(), default)

    def names(self) -> list[str]:
        return list(self._h)

    def items(self) -> list[tuple[str, str]]:
        return list(self._h.items())


def handle(
    method: str,
    headers: Mapping[str, str],
    body: bytes | RequestBody,
    env: Mapping[str, str] | None = None,
    redactor: Redactor | None = None,
) -> Response:
    """One request. `redactor` is the entry point's (function/main.py keeps one per
    process); without one, this request gets its own. Any exception outside the bot's
    families is a JSON 500 with a masked message, never an HTML one (issue 21)."""
    redactor = redactor or Redactor()
    try:
        return _handle(method, headers, body, env, redactor)
    except Exception as exc:
        from .unexpected import describe

        message = describe(exc, redactor)
        log.error("request failed: %s", message, exc_info=exc)
        return Response(
            InternalError.http_status, {"status": "failed", "failure": InternalError.failure, "error": message}
        )


def _handle(
    method: str,
    headers: Mapping[str, str],
    body: bytes | RequestBody,
    env: Mapping[str, str] | None,
    redactor: Redactor,
) -> Response:
    configure_logging(startup_level(os.environ.get("LOG_LEVEL")), redactor)
    h = _Headers(headers)
    method = method.upper()
    source = env if env is not None else os.environ
    request_body = body if isinstance(body, RequestBody) else RequestBody.of(body)
    # 1. authentication, for every method and before any setting is read (docs/design.md §5): an
    # unauthenticated caller learns nothing else, not even a configuration error.
    if not _authenticated(source, h, request_body):
        log.warning("request rejected: missing or wrong trigger token")
        return Response(401, {"error": "missing or wrong trigger token"}, {"WWW-Authenticate": "Bearer"})
    if method not in ("GET", "HEAD", "POST"):
        return Response(405, {"error": f"method {method} not allowed"}, {"Allow": "GET, HEAD, POST"})
    try:
        # A trigger also checks the files the cycle will need (Matrix credentials).
        settings = load_settings(source, check_files=method == "POST")
    except ConfigError as exc:
        log.error("%s", exc)
        return Response(exc.http_status, {"status": "failed", "failure": exc.failure, "error": str(exc)})
    redactor.add(settings.trigger_token, settings.matrix_store_passphrase)
    set_log_format(settings.log_format)

    if method in ("GET", "HEAD"):
        return _status(settings, redactor)
    with cycle_scope():
        return _trigger(settings, h, request_body, redactor)


def _status(settings: Settings, redactor: Redactor) -> Response:
    from .status import status_report

    try:
        return Response(200, status_report(settings))
    except BotError as exc:  # CorruptState included
        return Response(exc.http_status, {"error": redactor(str(exc))})


# A plain trigger's body is never read; these are the types a scheduler or `curl -d` sends.
PLAIN_TRIGGER_TYPES = ("", "application/json", "text/plain", "application/x-www-form-urlencoded")


def _trigger(settings: Settings, h: _Headers, body: RequestBody, redactor: Redactor) -> Response:
    content_type = _content_type(h)
    is_event = content_type == STRUCTURED_CE or any(n.startswith("ce-") for n in h.names())
    # 1. authentication: done by handle(), before the settings were read.
    # 2. size.
    data = body.read()
    if data is None:
        return Response(413, {"error": f"body larger than {MAX_BODY_BYTES} bytes"})
    # 3. shape.
    event = None
    if is_event:
        event, problem = _cloudevent(h, data)
        if problem:
            return Response(400, {"error": problem})
    elif data.strip() and content_type not in PLAIN_TRIGGER_TYPES:
        return Response(415, {"error": f"unsupported content type {content_type!r}"})

    from .compose import run

    result = run(settings, redactor=redactor, enforce_min_interval=True)
    payload = result.to_json()
    if event is not None:
        payload["event"] = {"id": event.get("id"), "type": event.get("type")}
    if result.status == "too_soon":
        retry = max(1, int((result.retry_after or 1) + 0.999))
        return Response(result.http_status, payload, {"Retry-After": str(retry)})
    return Response(result.http_status, payload)


def _cloudevent(h: _Headers, body: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """(event attributes, problem) of a binary- or structured-mode CloudEvent, read by
    the `cloudevents` SDK. Problems never quote the body (the SDK's messages do)."""
    from cloudevents import exceptions as ce_errors
    from cloudevents.http import from_http

    try:
        event = from_http(dict(h.items()), body)
    except ce_errors.MissingRequiredFields:
        return (
            None,
            f"CloudEvent lacks required attributes (needs {', '.join(CE_REQUIRED)}; a JSON object in structured mode)",
        )
    except ce_errors.InvalidRequiredFields:
        return None, "CloudEvent has an invalid required attribute (e.g. an unsupported specversion)"
    except (ce_errors.GenericException, ValueError, TypeError, RecursionError):
        return None, "CloudEvent could not be read (structured mode needs a UTF-8 JSON object)"
    attributes = dict(event.get_attributes())
    bad = [a for a in CE_REQUIRED if not isinstance(attributes.get(a), str) or not attributes.get(a)]
    if bad:
        return None, f"CloudEvent lacks required attributes: {', '.join(bad)}"
    return attributes, None


def _content_type(h: _Headers) -> str:
    return (h.get("content-type") or "").split(";")[0].strip().lower()


def _authenticated(env: Mapping[str, str], h: _Headers, body: RequestBody) -> bool:
    """True when TRIGGER_TOKEN is unset, or the request carries it: in a header, or (a
    structured CloudEvent) as the event's `triggertoken` extension. The raw value is used
    (stripped, as settings read it): its validation waits until the caller is known."""
    expected = (env.get("TRIGGER_TOKEN") or "").strip()
    if not expected or _authorized(expected, h, None):
        return True
    if _content_type(h) == STRUCTURED_CE and (data := body.read()) is not None:
        event, _ = _cloudevent(h, data)
        return _authorized(expected, h, event)
    return False


def _authorized(expected: str, h: _Headers, event: dict[str, Any] | None) -> bool:
    candidates: list[str] = []
    auth = h.get("authorization") or ""
    if auth[:7].lower() == "bearer ":
        candidates.append(auth[7:].strip())
    if event is not None and isinstance(event.get("triggertoken"), str):
        candidates.append(event["triggertoken"])
    header = h.get(TOKEN_HEADER)
    if header:
        candidates.append(header)
    want = expected.encode()
    # Check every candidate so timing does not reveal which one was tried.
    ok = False
    for candidate in candidates:
        ok |= hmac.compare_digest(candidate.encode(), want)
    return ok
