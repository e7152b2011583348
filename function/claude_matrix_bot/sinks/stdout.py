"""`ALERT_SINK=stdout`: one JSON object per alert per line (DESIGN §3), nothing else."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TextIO

from ..model import Alert
from .base import DeliveryReport


class StdoutSink:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def deliver(self, alerts: Sequence[Alert]) -> DeliveryReport:
        stream = self.stream or sys.stdout
        delivered: list[str] = []
        try:
            for alert in alerts:
                stream.write(json.dumps(alert.to_json(), ensure_ascii=False) + "\n")
                stream.flush()
                delivered.append(alert.id)
        except OSError as exc:  # a closed pipe: what was written stays delivered
            return DeliveryReport(tuple(delivered), error=f"stdout: {exc.strerror or exc}")
        return DeliveryReport(tuple(delivered))
