"""What a process and its children hold at once, sampled from outside (issue 15).

The bench starts the CLI and, while it runs, reads `/proc` every few milliseconds: the
CLI's own `VmRSS` and, for each child it has at that moment (the drawing child), the
child's `VmRSS` and `VmHWM`; and both processes' PSS (`/proc/<pid>/smaps_rollup`), which
counts a page that several processes map (libpython, libc, libcrypto) once in all,
shared between them. Nothing runs inside the measured processes.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from dataclasses import dataclass
from typing import IO

SAMPLE_SEC = 0.005


def _status(pid: int) -> dict[str, int]:
    """KiB figures of /proc/<pid>/status (VmRSS, VmHWM, ...); {} once the process is gone."""
    figures: dict[str, int] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                figures[key] = int(value.split()[0])
    return figures


def _pss(pid: int) -> int:
    with contextlib.suppress(OSError, StopIteration), open(f"/proc/{pid}/smaps_rollup") as rollup:
        return int(next(line for line in rollup if line.startswith("Pss:")).split()[1])
    return 0


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{pid}/children") as children:
        return [int(child) for child in children.read().split()]
    return []


@dataclass(slots=True)
class Family:
    """KiB, over the moments a child was alive: the largest sums seen at one moment, and
    the largest figures of each side (the child's VmHWM is its exact peak, even between
    two samples)."""

    rss_sum: int = 0  # parent VmRSS + children's VmRSS, at one moment
    pss_sum: int = 0  # the same in PSS
    parent_rss: int = 0  # the parent's largest VmRSS while a child lived
    child_hwm: int = 0  # the largest child's own peak
    samples: int = 0

    @property
    def bound(self) -> int:
        """At most this much at once: the child's own peak on the parent's largest."""
        return self.parent_rss + self.child_hwm

    def sample(self, pid: int) -> None:
        children = _children(pid)
        if not children:
            return
        parent = _status(pid).get("VmRSS", 0)
        statuses = [_status(child) for child in children]
        self.rss_sum = max(self.rss_sum, parent + sum(s.get("VmRSS", 0) for s in statuses))
        self.pss_sum = max(self.pss_sum, _pss(pid) + sum(_pss(child) for child in children))
        self.parent_rss = max(self.parent_rss, parent)
        self.child_hwm = max([self.child_hwm, *(s.get("VmHWM", 0) for s in statuses)])
        self.samples += 1


def run_watched(argv: list[str], env: dict[str, str], out: IO[bytes], timeout: float) -> tuple[int, Family]:
    """Run `argv` (stdout and stderr to the file `out`), sampling it and its children."""
    family = Family()
    with subprocess.Popen(argv, env=env, stdout=out, stderr=out) as proc:
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                raise subprocess.TimeoutExpired(argv, timeout)
            family.sample(proc.pid)
            time.sleep(SAMPLE_SEC)
    return proc.returncode, family
