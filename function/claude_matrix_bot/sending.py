"""Delivery of an outbox through the sink, shared by the cycle and the failure path
(`unexpected`): a leaf below both, so neither imports the other."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import DeliveryError
from .model import Alert
from .ports import Ports
from .sinks.base import DeliveryReport


def deliver(ports: Ports, outbox: Sequence[Alert]) -> tuple[DeliveryReport, str | None]:
    """`outbox` through the sink, opened only now: (what was delivered, the error in words, redacted).
    Charts are drawn before the sink is opened (`drawn_ahead`), so the drawing child never
    runs beside a loaded sink."""
    from .charts import drawn_ahead

    try:
        with drawn_ahead(outbox), ports.open_sink() as sink:
            report = sink.deliver(outbox)
    except DeliveryError as exc:
        return DeliveryReport(()), ports.redactor(str(exc))
    return report, ports.redactor(report.error) if report.error else None
