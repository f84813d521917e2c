"""Structured events of the supervisor: logged once, kept in a ring, streamed live.

Each event is a small record (time, kind, NI, message, fields); `nirunner
events` shows the ring and follows new ones through the API.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("nirunner.events")

RING = 1000


@dataclass(frozen=True)
class Event:
    seq: int
    time: float
    kind: str  # ni.created, ni.updated, ni.deleted, task.exited, task.restarted, ni.failed,
    #            reconcile.error, uplink.changed, containerd.reconnected, apply.rejected ...
    ni: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)
    level: int = logging.INFO

    def line(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in sorted(self.fields.items()))
        who = f" ni={self.ni}" if self.ni else ""
        return f"event={self.kind}{who} {self.message}{' ' + extra if extra else ''}"


class EventLog:
    def __init__(self, size: int = RING) -> None:
        self._ring: collections.deque[Event] = collections.deque(maxlen=size)
        self._seq = itertools.count(1)
        self._cond = threading.Condition()
        self.listeners: list[Callable[[Event], None]] = []  # e.g. the metrics' counters

    def emit(self, kind: str, ni: str, message: str, level: int = logging.INFO,
             **fields: Any) -> Event:
        with self._cond:
            ev = Event(next(self._seq), time.time(), kind, ni, message, fields, level)
            self._ring.append(ev)
            self._cond.notify_all()
        log.log(level, ev.line(), extra={"nirunner_event": ev})  # JSON logs: its fields
        for listener in self.listeners:
            listener(ev)
        return ev

    def since(self, seq: int) -> list[Event]:
        with self._cond:
            return [e for e in self._ring if e.seq > seq]

    def follow(self, after: int, stop: threading.Event, poll: float = 1.0) -> Iterator[Event]:
        """Events after `after`, then new ones as they come, until `stop` is set."""
        last = after
        while not stop.is_set():
            with self._cond:
                fresh = [e for e in self._ring if e.seq > last]
                if not fresh:
                    self._cond.wait(poll)
                    continue
            for e in fresh:
                last = e.seq
                yield e
