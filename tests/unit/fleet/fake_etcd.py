"""An in-memory stand-in for runner.fleet.etcd.Etcd: keys, revisions, history, watches,
compaction, leases and outages, enough to script what the follow loop and the source see."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence

from runner.fleet.etcd import Compacted, Event, KeyValue, Unavailable, WatchBatch
from runner.pb.etcd.etcdserverpb import rpc_pb2 as pb


class FakeWatch:
    def __init__(self, etcd: FakeEtcd, prefix: str) -> None:
        self.etcd, self.prefix = etcd, prefix
        self.endpoint = "fake://1"
        self.q: queue.Queue[WatchBatch | Exception | None] = queue.Queue()

    def __iter__(self) -> Iterator[WatchBatch]:
        while True:
            item = self.q.get(timeout=10)
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item

    def cancel(self) -> None:
        self.q.put(None)


class FakeEtcd:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kvs: dict[str, KeyValue] = {}
        self.history: list[Event] = []
        self.revision = 1
        self.compacted = 0
        self.down = False
        self.watches: list[FakeWatch] = []
        self.leases: dict[int, int] = {}
        self.next_lease = 100
        self.calls: list[str] = []

    def _check(self) -> None:
        if self.down:
            raise Unavailable("fake etcd is down")

    # writes
    def put(self, key: str, value: str | bytes, lease: int = 0) -> int:
        raw = value.encode() if isinstance(value, str) else value
        with self.lock:
            self._check()
            self.revision += 1
            old = self.kvs.get(key)
            kv = KeyValue(key, raw, old.create_revision if old else self.revision,
                          self.revision, (old.version if old else 0) + 1, lease)
            self.kvs[key] = kv
            self._emit(Event("put", kv))
            return self.revision

    def delete(self, key: str, prefix: bool = False) -> int:
        with self.lock:
            self._check()
            keys = [k for k in self.kvs if (k.startswith(key) if prefix else k == key)]
            if keys:
                self.revision += 1
            for k in keys:
                del self.kvs[k]
                self._emit(Event("delete", KeyValue(k, b"", 0, self.revision, 0)))
            return len(keys)

    def _emit(self, ev: Event) -> None:
        self.history.append(ev)
        for w in self.watches:
            if ev.kv.key.startswith(w.prefix):
                w.q.put(WatchBatch(self.revision, (ev,)))

    def txn(self, compare: Sequence[pb.Compare], success: Sequence[pb.RequestOp],
            failure: Sequence[pb.RequestOp] = (), what: str = "txn") -> pb.TxnResponse:
        """All operations at one revision, seen by watchers as one batch (as etcd does)."""
        assert not compare
        with self.lock:
            self._check()
            self.revision += 1
            events = []
            for op in success:
                if op.HasField("request_put"):
                    p = op.request_put
                    k = p.key.decode()
                    old = self.kvs.get(k)
                    kv = KeyValue(k, p.value, old.create_revision if old else self.revision,
                                  self.revision, (old.version if old else 0) + 1, p.lease)
                    self.kvs[k] = kv
                    events.append(Event("put", kv))
                else:
                    k = op.request_delete_range.key.decode()
                    if self.kvs.pop(k, None) is not None:
                        events.append(Event("delete", KeyValue(k, b"", 0, self.revision, 0)))
            self.history += events
            for w in self.watches:
                mine = tuple(e for e in events if e.kv.key.startswith(w.prefix))
                if mine:
                    w.q.put(WatchBatch(self.revision, mine))
            self.calls.append(what)
        return pb.TxnResponse(succeeded=True)

    # reads
    def get_prefix(self, prefix: str, revision: int = 0,
                   keys_only: bool = False) -> tuple[list[KeyValue], int]:
        with self.lock:
            self._check()
            self.calls.append(f"list {prefix}")
            return sorted((kv for k, kv in self.kvs.items() if k.startswith(prefix)),
                          key=lambda kv: kv.key), self.revision

    def watch(self, prefix: str, start_revision: int) -> FakeWatch:
        with self.lock:
            self._check()
            self.calls.append(f"watch {prefix} from {start_revision}")
            if start_revision <= self.compacted:
                raise Compacted(f"revision {start_revision} is compacted", self.compacted)
            w = FakeWatch(self, prefix)
            by_revision: dict[int, list[Event]] = {}
            for ev in self.history:
                if ev.kv.mod_revision >= start_revision and ev.kv.key.startswith(prefix):
                    by_revision.setdefault(ev.kv.mod_revision, []).append(ev)
            for rev, evs in sorted(by_revision.items()):
                w.q.put(WatchBatch(rev, tuple(evs)))
            self.watches.append(w)
            return w

    # outages and compaction
    def disconnect(self) -> None:
        with self.lock:
            self.down = True
            for w in self.watches:
                w.q.put(Unavailable("fake etcd went away"))
            self.watches.clear()

    def reconnect(self) -> None:
        with self.lock:
            self.down = False

    def compact(self, revision: int) -> None:
        with self.lock:
            self.compacted = revision
            self.history = [e for e in self.history if e.kv.mod_revision > revision]

    # leases
    def lease_grant(self, ttl: int) -> tuple[int, int]:
        self._check()
        self.next_lease += 1
        self.leases[self.next_lease] = ttl
        lease = self.next_lease
        return lease, ttl

    def lease_keepalive(self, lease: int) -> int:
        self._check()
        return self.leases.get(lease, 0)

    def expire(self, lease: int) -> None:
        self.leases.pop(lease, None)
        for k in [k for k, kv in self.kvs.items() if kv.lease == lease]:
            self.delete(k)

    def close(self) -> None:
        pass
