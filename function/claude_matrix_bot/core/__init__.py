"""The functional core: pure decisions, no I/O, `now` always passed in."""

from .config import DecideConfig
from .decide import Decision, decide, record_failure

__all__ = ["DecideConfig", "Decision", "decide", "record_failure"]
