"""functions-framework entry point: `functions-framework --source function/main.py --target watch`.

Thin on purpose: everything lives in `claude_matrix_bot.http`, and the heavy
modules (cycle, Matrix, cloud SDKs) are imported only when a request needs them,
so a Knative cold start pays for little more than the framework itself.
"""

from __future__ import annotations

import json
from typing import Any

import flask
import functions_framework

from claude_matrix_bot.http import MAX_BODY_BYTES, handle


@functions_framework.http
def watch(request: flask.Request) -> flask.Response:
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        # Refuse before reading. A streamed response matters: functions-framework's
        # after_request hook reads the whole body of ordinary responses.
        doc = json.dumps({"error": f"body larger than {MAX_BODY_BYTES} bytes"}).encode()
        return flask.Response(iter([doc]), status=413, mimetype="application/json")
    body = request.stream.read(MAX_BODY_BYTES + 1)
    response = handle(request.method, dict(request.headers), body)
    payload: Any = response.body
    out = flask.jsonify(payload)
    out.status_code = response.status
    for name, value in response.headers.items():
        out.headers[name] = value
    return out
