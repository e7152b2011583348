"""functions-framework entry point: `functions-framework --source function/main.py --target watch`.

Thin on purpose: everything lives in `claude_matrix_bot.http`, and the heavy
modules (cycle, Matrix, cloud SDKs) are imported only when a request needs them,
so a Knative cold start pays for little more than the framework itself.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import flask
import functions_framework

from claude_matrix_bot.http import RequestBody, handle
from claude_matrix_bot.logs import Redactor

# A refused body is read and thrown away, up to this much and this long, before the
# connection closes (see _refusal).
DRAIN_MAX_BYTES = 32 * 1024 * 1024
DRAIN_MAX_SEC = 5.0
DRAIN_READ_TIMEOUT_SEC = 2.0
_CHUNK = 64 * 1024
# This process's one redactor: a warm instance keeps masking every secret it has seen.
REDACTOR = Redactor()


@functions_framework.http
def watch(request: flask.Request) -> flask.Response:
    body = RequestBody(request.stream.read, request.content_length)
    response = handle(request.method, dict(request.headers), body, redactor=REDACTOR)
    doc = json.dumps(response.body).encode()
    if not body.consumed:
        return _refusal(request, response.status, doc, response.headers)
    out = flask.Response(doc, status=response.status, mimetype="application/json")
    for name, value in response.headers.items():
        out.headers[name] = value
    return out


def _refusal(request: flask.Request, status: int, doc: bytes, headers: dict[str, str]) -> flask.Response:
    """An answer sent while the client's body is still (partly) unread: a 401 or a 413.

    - Streamed, so functions-framework's `read_request` hook (which reads the whole
      body of ordinary responses) does not buffer megabytes.
    - With a Content-Length, so the client knows where the answer ends without
      waiting for the connection to close (a chunked answer's last chunk would
      only follow the drain below), and `Connection: close` as a request to the
      server (werkzeug honours it; gunicorn keeps its own counsel).
    - After the answer, the body is read and discarded in chunks (bounded in bytes
      and time), the way nginx and Apache linger before closing: a client such as
      urllib sends its whole body before it reads the answer, and closing on unread
      bytes makes the kernel reset the connection, which destroys an answer the
      client has not read yet (a broken pipe, or a 413 that sometimes never arrives).
      A body beyond the bounds gets its connection shut down after the answer, so
      the server does not go on reading it as the next request.
    """
    stream: Any = request.stream
    sock: Any = request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")

    def answer() -> Iterator[bytes]:
        yield doc
        _drain(stream, sock)

    out = flask.Response(answer(), status=status, mimetype="application/json")
    for name, value in headers.items():
        out.headers[name] = value
    out.headers["Content-Length"] = str(len(doc))
    out.headers["Connection"] = "close"
    return out


def _drain(stream: Any, sock: Any) -> None:
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.settimeout(DRAIN_READ_TIMEOUT_SEC)  # a silent client must not hold the thread
    deadline = time.monotonic() + DRAIN_MAX_SEC
    discarded = 0
    finished = False
    # Any failure (timeout, reset, a client that went away) just ends the drain.
    with contextlib.suppress(Exception):
        while discarded < DRAIN_MAX_BYTES and time.monotonic() < deadline:
            chunk = stream.read(_CHUNK)
            if not chunk:
                finished = True
                break
            discarded += len(chunk)
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.settimeout(None)
            if not finished:
                sock.shutdown(socket.SHUT_RDWR)
