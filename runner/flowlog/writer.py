"""A JSON-lines file capped in size: past the cap it becomes `.1`, `.1` becomes `.2`, ...

The newest records are always in the file itself; at most `backups` older files
are kept, so the log never takes more than (backups + 1) x max_bytes. Files
are created 0600 (a flow log says who talked to whom).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any


class RotatingJsonl:
    def __init__(self, path: Path, max_bytes: int = 4 << 20, backups: int = 3) -> None:
        if max_bytes < 1024 or backups < 0:
            raise ValueError(f"flow log cap {max_bytes} B with {backups} backups is too small")
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self._file: IO[str] | None = None
        self._size = 0

    def _open(self) -> IO[str]:
        if self._file is None:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._file = os.fdopen(fd, "a", encoding="utf-8")
            self._size = os.fstat(fd).st_size
        return self._file

    def _rotate(self) -> None:
        self.close()
        for i in range(self.backups, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            newer = self.path if i == 1 else self.path.with_name(f"{self.path.name}.{i - 1}")
            if newer.exists():
                os.replace(newer, older)
        if self.backups == 0:
            self.path.unlink(missing_ok=True)

    def write(self, records: Iterable[dict[str, Any]]) -> int:
        """Append records (one JSON object a line), rotating first when one would not fit."""
        n = 0
        for rec in records:
            line = json.dumps(rec, separators=(",", ":"), sort_keys=True) + "\n"
            size = len(line.encode())
            f = self._open()
            if self._size and self._size + size > self.max_bytes:
                self._rotate()
                f = self._open()
            f.write(line)
            self._size += size
            n += 1
        if self._file is not None:
            self._file.flush()
        return n

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._size = 0


def read(path: Path) -> Iterator[dict[str, Any]]:
    """Every record kept, oldest first (the backups, then the file)."""
    files = sorted(path.parent.glob(path.name + ".*"),
                   key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    for p in [*files, path]:
        try:
            with open(p, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        yield json.loads(line)
        except FileNotFoundError:
            continue



class Tail:
    """The records written to a log from the moment a Tail is made, as they come, across
    rotations (a new file at `path`). A line is given once it is complete.

    After a rotation it finishes the file it had open, then reads the new one from its
    start; a file that came and went between two polls (a whole file written within
    `poll` seconds) is skipped.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self._inode = -1
        self._partial = ""
        self._open(at_end=True)

    def _open(self, at_end: bool) -> None:
        self.close()
        self._partial = ""
        try:
            self._file = open(self.path, encoding="utf-8")  # noqa: SIM115 - kept open
        except FileNotFoundError:
            self._inode = -1
            return
        self._inode = os.fstat(self._file.fileno()).st_ino
        if at_end:
            self._file.seek(0, os.SEEK_END)

    def records(self, stop: Callable[[], bool], poll: float = 0.2
                ) -> Iterator[dict[str, Any]]:
        """New records until `stop()` is true (checked at least every `poll` seconds)."""
        try:
            while not stop():
                line = self._file.readline() if self._file is not None else ""
                if line:
                    self._partial += line
                    if self._partial.endswith("\n"):
                        text, self._partial = self._partial, ""
                        if text.strip():
                            yield json.loads(text)
                    continue
                try:
                    inode = os.stat(self.path).st_ino
                except FileNotFoundError:
                    inode = -1
                if inode != self._inode:  # rotated, or made: the new file from its start
                    self._open(at_end=False)
                    continue
                time.sleep(poll)
        finally:
            self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
