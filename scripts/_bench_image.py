"""`make bench`'s image-size row: the figure `make image-test` measured last.

Building the image needs root, podman and minutes, so the bench does not build it: it reads
what `scripts/image_test.py` wrote to `.image-test/size.json` (the image's size on the slim
base the Dockerfile names: the layers above the stand-in base, measured, plus the slim base's
published size), and says so when there is none yet.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SIZE_FILE = REPO / ".image-test" / "size.json"
GOAL_MB = 450


def image_size_rows(row: Any) -> list[Any]:
    """One row (built with bench's `Row`): the image's size against its goal."""
    measure = "image size on python:3.11-slim-bookworm (make image-test)"
    goal = f"≤ {GOAL_MB} MB"
    try:
        figures = json.loads(SIZE_FILE.read_text())
        on_slim = float(figures["on_slim_mb"])
    except (OSError, ValueError, KeyError, TypeError):
        return [row(measure, "not measured here: run `make image-test` (root)", goal, None)]
    detail = f"{on_slim:.0f} MB (layers {figures['layers_mb']:.0f} MB, /opt/venv {figures['venv_mb']:.0f} MB"
    detail += f"; measured {figures['measured_at']} at {figures['commit']})"
    return [row(measure, detail, goal, on_slim <= GOAL_MB)]
