"""`ALERT_SINK=stdout`: one JSON object per alert per line (docs/design.md §3), nothing else."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TextIO

from ..charts import picture_for, strip_chart
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
                line = strip_chart(alert.to_json())
                picture = picture_for(alert.details, alert_id=alert.id)
                if picture is not None:  # docs/design.md §7: what would have been posted, by digest
                    line["image_sha256"] = picture.sha256
                    line["image_bytes"] = len(picture.png)
                stream.write(json.dumps(line, ensure_ascii=False) + "\n")
                stream.flush()
                delivered.append(alert.id)
        except OSError as exc:  # a closed pipe: what was written stays delivered
            return DeliveryReport(tuple(delivered), error=f"stdout: {exc.strerror or exc}")
        return DeliveryReport(tuple(delivered))
