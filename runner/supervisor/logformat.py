"""How `nirunner supervise` writes its log: for a terminal, for journald, or JSON lines.

- text: `2026-01-02 03:04:05,678 INFO nirunner.events: message` (a terminal, a file)
- journal: `<6>nirunner.events: message`. journald stamps each line itself and
  reads the `<N>` prefix as its syslog priority (SyslogLevelPrefix=, on by
  default), so `journalctl -p warning` works.
- json: one object per line: time (ISO 8601, UTC), level, logger, message, and for
  the supervisor's events their kind, NI and fields.

`auto` picks journal when stderr is the stream systemd connected to the journal
($JOURNAL_STREAM names its device and inode), text otherwise.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from typing import Any, TextIO

FORMATS = ("auto", "text", "journal", "json")
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# syslog priorities (sd-daemon.h): what journald understands in a `<N>` prefix
_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
             (logging.INFO, 6))


def priority(level: int) -> int:
    for floor, prio in _PRIORITY:
        if level >= floor:
            return prio
    return 7  # debug


class JournalFormatter(logging.Formatter):
    """No timestamp (journald has one); every line of a record carries its priority,
    so a traceback is not read as several lines of default priority."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return "\n".join(prefix + line for line in text.splitlines() or [""])


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.UTC)
        out: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        event = getattr(record, "nirunner_event", None)  # set by runner.supervisor.events
        if event is not None:
            out["event"] = event.kind
            if event.ni:
                out["ni"] = event.ni
            if event.fields:
                out["fields"] = event.fields
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, sort_keys=False)


def connected_to_journal(stream: TextIO, env: dict[str, str] | None = None) -> bool:
    """True if `stream` is the one systemd connected to journald ($JOURNAL_STREAM is
    `device:inode` of it; a child with other output inherits the variable but not
    the stream)."""
    value = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError, AttributeError):
        return False


def formatter(fmt: str, stream: TextIO) -> logging.Formatter:
    if fmt == "auto":
        fmt = "journal" if connected_to_journal(stream) else "text"
    if fmt == "journal":
        return JournalFormatter()
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return logging.Formatter(_TEXT)
    raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")


def setup(fmt: str = "auto", verbose: bool = False, stream: TextIO | None = None) -> None:
    """Configure the root logger: one handler on stderr in the chosen format."""
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(fmt, stream))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
