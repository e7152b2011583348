"""The HTTP trigger (functions-framework target `watch`), framework-agnostic.

`POST /` runs one cycle: a plain POST, or a CloudEvent in binary or structured
mode (Knative PingSource sends `dev.knative.sources.ping`). `GET /` answers the
status. Response codes say what happened, with a JSON body:

  200 done · 400 malformed CloudEvent · 401 missing/wrong TRIGGER_TOKEN ·
  405 other methods · 409 another cycle holds the lease · 413 body too large ·
  415 unexpected content type · 429 sooner than MIN_INTERVAL_SEC after the last
  poll (the API is not called) · 500 configuration/storage · 502 upstream API ·
  503 delivery.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import BotError, ConfigError
from .logs import configure_logging, register_secret
from .settings import Settings, load_settings

log = logging.getLogger("claude_matrix_bot.http")

MAX_BODY_BYTES = 64 * 1024
CE_REQUIRED = ("specversion", "type", "source", "id")
TOKEN_HEADER = "ce-triggertoken"  # noqa: S105 (a header name, not a secret); a PingSource sets it through ceOverrides.extensions.triggertoken
_FAILURE_STATUS = {"upstream": 502, "delivery": 503, "storage": 500, "config": 500}


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class _Headers:
    """Case-insensitive view of request headers."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._h = {k.lower(): v for k, v in headers.items()}

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._h.get(name.lower(), default)

    def names(self) -> list[str]:
        return list(self._h)


def handle(method: str, headers: Mapping[str, str], body: bytes, env: Mapping[str, str] | None = None) -> Response:
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    h = _Headers(headers)
    method = method.upper()
    if method not in ("GET", "HEAD", "POST"):
        return Response(405, {"error": f"method {method} not allowed"}, {"Allow": "GET, HEAD, POST"})
    try:
        # A trigger also checks the files the cycle will need (Matrix credentials).
        settings = load_settings(env if env is not None else os.environ, check_files=method == "POST")
    except ConfigError as exc:
        log.error("%s", exc)
        return Response(500, {"status": "failed", "failure": "config", "error": str(exc)})
    register_secret(settings.trigger_token, settings.matrix_store_passphrase)

    if method in ("GET", "HEAD"):
        return _status(settings)
    return _trigger(settings, h, body)


def _status(settings: Settings) -> Response:
    from .status import status_report

    try:
        return Response(200, status_report(settings))
    except BotError as exc:
        return Response(500, {"error": str(exc)})


def _trigger(settings: Settings, h: _Headers, body: bytes) -> Response:
    if len(body) > MAX_BODY_BYTES:
        return Response(413, {"error": f"body larger than {MAX_BODY_BYTES} bytes"})
    content_type = (h.get("content-type") or "").split(";")[0].strip().lower()
    event, problem = _cloudevent(h, content_type, body)
    if problem:
        return Response(400, {"error": problem})
    if event is None and body.strip() and content_type not in ("application/json", "text/plain", ""):
        return Response(415, {"error": f"unsupported content type {content_type!r}"})

    if settings.trigger_token and not _authorized(settings.trigger_token, h, event):
        log.warning("trigger rejected: missing or wrong trigger token")
        return Response(401, {"error": "missing or wrong trigger token"}, {"WWW-Authenticate": "Bearer"})

    from .cycle import run_cycle

    result = run_cycle(settings, enforce_min_interval=True)
    payload = result.to_json()
    if event is not None:
        payload["event"] = {"id": event.get("id"), "type": event.get("type")}
    if result.status == "ok":
        return Response(200, payload)
    if result.status == "busy":
        return Response(409, payload)
    if result.status == "too_soon":
        retry = max(1, int((result.retry_after or 1) + 0.999))
        return Response(429, payload, {"Retry-After": str(retry)})
    return Response(_FAILURE_STATUS.get(result.failure or "", 500), payload)


def _cloudevent(h: _Headers, content_type: str, body: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """Return (event attributes, problem). Plain POSTs have no event and no problem."""
    if content_type == "application/cloudevents+json":
        try:
            doc = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            return None, "structured CloudEvent is not valid JSON"
        if not isinstance(doc, dict):
            return None, "structured CloudEvent must be a JSON object"
        missing = [a for a in CE_REQUIRED if not isinstance(doc.get(a), str) or not doc.get(a)]
        if missing:
            return None, f"CloudEvent lacks required attributes: {', '.join(missing)}"
        return doc, None
    ce_headers = [n for n in h.names() if n.startswith("ce-")]
    if not ce_headers:
        return None, None
    event = {n[3:]: h.get(n) for n in ce_headers}
    missing = [a for a in CE_REQUIRED if not event.get(a)]
    if missing:
        return None, f"CloudEvent (binary mode) lacks headers: {', '.join('ce-' + a for a in missing)}"
    if event.get("specversion") not in ("1.0", "0.3"):
        return None, "unsupported CloudEvents specversion"
    return event, None


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
