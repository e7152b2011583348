"""Atomic file replacement: a reader sees the old file or the new one, never half of either.

The data goes to a temporary file in the target's directory (same filesystem,
so the rename is atomic on POSIX), created 0600 by `mkstemp` (state, tokens and
keys are private), then renamed over the target. `durable` adds the fsyncs that
make the rename survive a crash: the file before the rename, the directory after.
`sync_dir=False` keeps the first and skips the second: after a crash the target
holds the new bytes or the old ones, whole (the data was on disk before the rename
could be), but the rename itself may be forgotten.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_temp(directory: Path, data: bytes, *, prefix: str, durable: bool = True) -> Path:
    """A new private file in `directory` holding `data`, ready to be renamed into place."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o600)  # exactly 0600 whatever the umask left
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return Path(tmp)


def replace_file(
    path: Path, data: bytes, *, prefix: str | None = None, durable: bool = True, sync_dir: bool = True
) -> None:
    """Atomically make `path` hold `data`. OSError propagates: callers name the file in their own error."""
    tmp = write_temp(path.parent, data, prefix=prefix or f".{path.name}.", durable=durable)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable and sync_dir:
        fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Persist a rename. Best effort: some filesystems refuse to fsync a directory."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
