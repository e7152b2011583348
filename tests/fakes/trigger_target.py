"""A functions-framework function standing in for the bot's HTTP entry point, for the shim tests.

Served by the real `functions-framework` CLI on loopback. Its behaviour is read,
on every request, from files in `$TRIGGER_TARGET_DIR`, so one server serves many tests:
- `plan.json`: `{"statuses": [503, 503, 200]}`: the n-th request gets the n-th status
  (the last one repeats); the body is `{"status": <code>, "request": <n>}`.
- `requests.jsonl`: one line per request received: method, path, headers, body.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import flask


def _control_dir() -> Path:
    return Path(os.environ["TRIGGER_TARGET_DIR"])


def target(request: flask.Request) -> flask.Response:
    control = _control_dir()
    log = control / "requests.jsonl"
    seen = len(log.read_text().splitlines()) if log.exists() else 0
    record = {
        "method": request.method,
        "path": request.path,
        "headers": {key.lower(): value for key, value in request.headers.items()},
        "body": request.get_data(as_text=True),
    }
    with log.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    plan = json.loads((control / "plan.json").read_text())
    statuses: list[int] = plan["statuses"]
    status = statuses[min(seen, len(statuses) - 1)]
    body = json.dumps({"status": status, "request": seen + 1})
    return flask.Response(body, status=status, mimetype="application/json")
