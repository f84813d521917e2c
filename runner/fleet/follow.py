"""Follow one etcd prefix for as long as it takes: list it, watch it, resume, relist.

    follow(etcd, "/nirunner/devices/a/", revision, handle, link, stop)

calls `handle(Snapshot)` with every key under the prefix when it (re)lists, and
`handle(Changes)` for each batch of watch events after that. It starts with a
watch from `revision + 1` when it knows a revision (a device that was synced
before), with a list otherwise. After a disconnect it watches again from the
last revision it handled, on whichever endpoint answers; when that revision was
compacted it lists again. Between failed tries it waits (backoff), and it tells
`link` whenever the connection comes or goes. It returns when `stop` is set.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

from runner.fleet.etcd import Compacted, Etcd, EtcdError, Event, KeyValue, PermissionDenied

log = logging.getLogger("nirunner.fleet")


@dataclass(frozen=True)
class Snapshot:
    """Everything under the prefix at `revision`: what is not in it is gone."""

    kvs: tuple[KeyValue, ...]
    revision: int


@dataclass(frozen=True)
class Changes:
    events: tuple[Event, ...]
    revision: int  # the last event's revision: everything up to it is handled


@dataclass
class Backoff:
    first: float = 0.25
    limit: float = 1.0  # a device sees etcd again within a second of it coming back
    _next: float = 0.0

    def reset(self) -> None:
        self._next = 0.0

    def delay(self) -> float:
        """Doubling up to `limit`, each drawn from its upper half, so that a fleet of
        devices does not knock on a recovering etcd all at once."""
        self._next = min(self.limit, self._next * 2 if self._next else self.first)
        return self._next * random.uniform(0.5, 1.0)


class Link:
    """Receives the connection state: up(endpoint) and down(error)."""

    def up(self, endpoint: str) -> None: ...

    def down(self, error: str) -> None: ...


def follow(etcd: Etcd, prefix: str, revision: int,
           handle: Callable[[Snapshot | Changes], None], link: Link,
           stop: threading.Event, backoff: Backoff | None = None) -> None:
    backoff = backoff or Backoff()
    watching: list[object] = []  # the open watch, so that stop() can cancel it

    def cancel_on_stop() -> None:
        stop.wait()
        for w in watching:
            w.cancel()  # type: ignore[attr-defined]

    threading.Thread(target=cancel_on_stop, daemon=True, name="fleet-follow-stop").start()
    while not stop.is_set():
        try:
            if revision <= 0:
                kvs, revision = etcd.get_prefix(prefix)
                handle(Snapshot(tuple(kvs), revision))
            w = etcd.watch(prefix, revision + 1)
            watching[:] = [w]
            if stop.is_set():
                w.cancel()
                break
            link.up(w.endpoint)
            backoff.reset()
            for batch in w:
                if batch.events:
                    revision = batch.events[-1].kv.mod_revision
                    handle(Changes(batch.events, revision))
        except Compacted as e:
            log.info("fleet: %s; listing %s again", e, prefix)
            revision = 0  # at once, without backoff: etcd is there
            continue
        except PermissionDenied as e:
            link.down(str(e))  # wrong credentials do not heal by retrying fast
            stop.wait(backoff.limit * 10)
            continue
        except EtcdError as e:
            if stop.is_set():
                break
            link.down(str(e))
        stop.wait(backoff.delay())
