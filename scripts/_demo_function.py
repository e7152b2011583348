"""functions-framework source for `make demo`: the production `watch`, on a simulated clock.

The demo plays a week in a minute, so "now" must move between requests, while a
real server reads its environment once. This shim sets `NOW_OVERRIDE` from the
demo's clock file before each request and hands the request, untouched, to the
production target in `function/main.py`. Nothing else differs from production.
"""

from __future__ import annotations

import os
from pathlib import Path

import flask
import functions_framework
from flask.typing import ResponseReturnValue

import main  # function/main.py (PYTHONPATH), the production entry point

CLOCK_FILE = Path(os.environ["DEMO_CLOCK_FILE"])


@functions_framework.http
def watch(request: flask.Request) -> ResponseReturnValue:
    os.environ["NOW_OVERRIDE"] = CLOCK_FILE.read_text().strip()
    return main.watch(request)
