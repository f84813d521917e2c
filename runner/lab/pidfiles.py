"""Processes a lab started, recorded on disk so that any later Lab object can stop them.

`python -m runner.lab.demo --keep` exits and leaves its supervisor, DNS server and
containerd running; `--clean` runs in a new process that never saw them. Each
process is recorded as `<dir>/<name>.pid` holding "PID STARTTIME": the start time
(clock ticks since boot, field 22 of /proc/PID/stat) tells the process we started
from a later one that happens to get the same PID, which must not be killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Recorded:
    name: str
    pid: int
    start: int


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time) of a process, None if there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[19])


def start_time(pid: int) -> int | None:
    st = _stat(pid)
    return st[1] if st else None


def record(folder: Path, name: str, pid: int) -> Recorded:
    """Write the record of a process just started (it must still exist)."""
    start = start_time(pid)
    if start is None:
        raise ProcessLookupError(f"{name}: process {pid} is gone already")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.pid"
    tmp.write_text(f"{pid} {start}\n")
    tmp.rename(folder / f"{name}.pid")
    return Recorded(name, pid, start)


def read(folder: Path, name: str) -> Recorded | None:
    """The record if its process still runs (same PID and start time), else None."""
    try:
        pid_text, start_text = (folder / f"{name}.pid").read_text().split()
        rec = Recorded(name, int(pid_text), int(start_text))
    except (OSError, ValueError):
        return None
    return rec if alive(rec) else None


def records(folder: Path) -> list[Recorded]:
    """Every recorded process that still runs."""
    names = sorted(p.stem for p in folder.glob("*.pid")) if folder.is_dir() else []
    return [r for r in (read(folder, n) for n in names) if r is not None]


def forget(folder: Path, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (folder / f"{name}.pid").unlink()


def running(pid: int) -> bool:
    """The PID exists and is not a zombie."""
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def alive(rec: Recorded) -> bool:
    """Still the process we started, and not a zombie (those are gone in all but name)."""
    st = _stat(rec.pid)
    return st is not None and st[1] == rec.start and st[0] != "Z"


def stop(rec: Recorded, sig: int = signal.SIGTERM, timeout: float = 10.0) -> bool:
    """Signal the process (its whole group when it leads one) and wait until it is gone;
    SIGKILL after `timeout`. True if it is gone."""
    for s, wait in ((sig, timeout), (signal.SIGKILL, 5.0)):
        if not alive(rec):
            return True
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(rec.pid) == rec.pid:  # started with a session of its own
                os.killpg(rec.pid, s)
            else:
                os.kill(rec.pid, s)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not alive(rec):
                return True
            time.sleep(0.05)
    return not alive(rec)
