"""Files of the supervisor: written atomically (tmp, fsync, rename), secrets 0600."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: str | Path, data: str | bytes, mode: int = 0o644,
                 durable: bool = True) -> bool:
    """Write data to path atomically; False (and no write) if it is unchanged.

    durable: fsync the file and its directory, so it survives a power loss; files
    that are rendered again on every start need only the atomic rename.
    """
    p = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    try:
        if p.read_bytes() == raw and (p.stat().st_mode & 0o777) == mode:
            return False
    except FileNotFoundError:
        pass
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        dfd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return True
