"""FleetSource: a device's desired NIs from etcd, its status back to etcd, offline first.

The supervisor gives it a `target` (itself) and starts it; three threads then run:

- follow: lists `<prefix>/devices/<id>/` (or resumes from the revision saved in
  `<stateDir>/fleet.json`), watches it, and applies each NI document through
  `target.apply_one` / `target.delete_one`. A document the target refuses (or that
  is not one NI named like its key) is recorded as rejected with the reason, and the
  NI keeps its last good state. The revision is saved only after the target has
  applied (and stored) the change, so a crash replays it: applying is idempotent.
- lease: grants a lease of `statusTTL` seconds and keeps it alive; when etcd let it
  expire (the device was cut off), it grants a new one.
- status: every STATUS_EVERY seconds, asks the target for its NIs' statuses and
  writes the keys that changed under `<prefix>/status/<id>/`, all bound to the lease,
  so a dead device's status vanishes after the TTL.

etcd unreachable: nothing is applied or removed, the supervisor keeps serving its
NIs from its local store, the follow thread retries with backoff, and `state()`
says `disconnected since ...`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from runner import __version__
from runner.drivers.files import write_atomic
from runner.errors import NirunnerError
from runner.fleet import report
from runner.fleet.etcd import Etcd, EtcdError, KeyValue, TlsFiles, delete_op, put_op
from runner.fleet.follow import Backoff, Changes, Link, Snapshot, follow
from runner.fleet.keys import Layout
from runner.fleet.report import Rejected
from runner.model.manifest import parse_documents
from runner.model.types import EtcdSource

log = logging.getLogger("nirunner.fleet")

STATE_FILE = "fleet.json"
FORMAT = 1
STATUS_EVERY = 2.0  # seconds between status checks; keys are written only when changed
TXN_OPS = 100  # etcd takes at most 128 operations in one transaction by default


class Target(Protocol):
    """What the source drives; the Supervisor implements it."""

    def apply_one(self, name: str, source: str, text: str) -> str:
        """Apply one NI document (validated like `apply`, against the other NIs);
        'created', 'updated' or 'unchanged'. Raises NirunnerError when refused."""
        ...

    def delete_one(self, name: str) -> None: ...

    def names(self) -> list[str]:
        """The NIs in the local store."""
        ...

    def statuses(self) -> list[dict[str, Any]]:
        """Per NI: name, state, reason, pid, apps (a count), vpn (a state or None)."""
        ...


@dataclass
class Saved:
    """What survives a restart, in <stateDir>/fleet.json (0600)."""

    revision: int = 0  # the last revision applied; 0: list everything first
    applied: dict[str, int] = field(default_factory=dict)  # NI -> revision of its document
    rejected: dict[str, Rejected] = field(default_factory=dict)


def check_document(name: str, text: str, source: str) -> None:
    """The value of an NI key must be one NI document named like the key."""
    located = parse_documents(text, source)  # ManifestError: with field paths and lines
    if len(located) != 1:
        raise NirunnerError(f"{source}: holds {len(located)} NI documents; put exactly one")
    if located[0].ni.name != name:
        raise NirunnerError(f"{source}: metadata.name is {located[0].ni.name!r}, but the key "
                            f"names {name!r}")


class _LinkState(Link):
    def __init__(self) -> None:
        self.connected = False
        self.since = time.time()
        self.endpoint = ""
        self.error = "not connected yet"

    def up(self, endpoint: str) -> None:
        if not self.connected or endpoint != self.endpoint:
            log.info("fleet: watching etcd at %s", endpoint)
        if not self.connected:
            self.since = time.time()
        self.connected, self.endpoint, self.error = True, endpoint, ""

    def down(self, error: str) -> None:
        if self.connected:
            self.since = time.time()
            log.warning("fleet: etcd unreachable, serving the local store: %s", error)
        self.connected, self.error = False, error


class _Lease:
    """The status lease: granted, kept alive, granted anew when etcd let it expire."""

    def __init__(self, etcd: Etcd, ttl: int) -> None:
        self.etcd, self.ttl = etcd, ttl
        self.id = 0  # 0: none
        self.generation = 0  # bumped for each new lease: its keys must all be written
        self.lock = threading.Lock()

    def current(self) -> tuple[int, int]:
        with self.lock:
            return self.id, self.generation

    def lost(self, lease: int) -> None:
        with self.lock:
            if self.id == lease:
                self.id = 0

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            lease, _ = self.current()
            try:
                if not lease:
                    granted, _ = self.etcd.lease_grant(self.ttl)
                    with self.lock:
                        self.id, self.generation = granted, self.generation + 1
                elif self.etcd.lease_keepalive(lease) <= 0:
                    log.info("fleet: status lease %x expired; granting a new one", lease)
                    self.lost(lease)
                    continue
            except EtcdError as e:
                log.debug("fleet: status lease: %s", e)
                stop.wait(1.0)
                continue
            stop.wait(max(1.0, self.ttl / 3))


class FleetSource:
    def __init__(self, config: EtcdSource, target: Target, state_dir: str | Path,
                 etcd: Etcd | None = None, status_every: float = STATUS_EVERY,
                 backoff: Backoff | None = None) -> None:
        self.config, self.target = config, target
        self.layout = Layout(config.prefix)
        self.device = config.device
        self.watched = self.layout.device(config.device)
        tls = config.tls
        self.etcd = etcd or Etcd(config.endpoints,
                                 TlsFiles(tls.ca, tls.cert, tls.key) if tls else None)
        self.path = Path(state_dir) / STATE_FILE
        self.status_every = status_every
        self.backoff = backoff or Backoff()
        self.link = _LinkState()
        self.lease = _Lease(self.etcd, config.status_ttl)
        self.saved = self._load()
        self.refused: dict[str, KeyValue] = {}  # refused documents, tried again on changes
        self.lock = threading.Lock()  # saved + link, read by state() from API threads
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.written: dict[str, str] = {}  # status key -> JSON last written
        self.written_generation = 0

    # -- life cycle ----------------------------------------------------------------

    def start(self) -> None:
        for name, fn in (("fleet-follow", self._follow), ("fleet-lease", self._lease_loop),
                         ("fleet-status", self._status_loop)):
            t = threading.Thread(target=fn, name=name, daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the threads; the status keys stay until their lease expires."""
        self.stopping.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.etcd.close()

    def state(self) -> dict[str, Any]:
        """The source as `nirunner status` shows it."""
        with self.lock:
            link, saved = self.link, self.saved
            return {
                "kind": "etcd", "device": self.device, "prefix": self.config.prefix,
                "state": "connected" if link.connected else "disconnected",
                "since": report.iso(link.since), "endpoint": link.endpoint,
                "error": link.error, "revision": saved.revision,
                "rejected": {n: {"revision": r.revision, "reason": r.reason}
                             for n, r in sorted(saved.rejected.items())},
            }

    def describe(self) -> str:
        s = self.state()
        if s["state"] == "connected":
            return f"etcd {s['endpoint']}: connected since {s['since']}, revision {s['revision']}"
        return f"etcd: disconnected since {s['since']} ({s['error']})"

    # -- desired state -------------------------------------------------------------

    def _follow(self) -> None:
        follow(self.etcd, self.watched, self.saved.revision, self.handle, _Locked(self),
               self.stopping, self.backoff)

    def handle(self, update: Snapshot | Changes) -> None:
        """Apply a listing or a batch of changes to the target, then save the revision."""
        changed = False
        if isinstance(update, Snapshot):
            wanted = self._named(update.kvs)
            for name in sorted(set(self.target.names()) - set(wanted)):
                changed |= self._delete(name)
            with self.lock:
                for d in (self.saved.applied, self.saved.rejected, self.refused):
                    for name in set(d) - set(wanted):
                        del d[name]
        else:
            last: dict[str, tuple[str, KeyValue]] = {}  # NI -> its last event
            for ev in update.events:
                for name, kv in self._named([ev.kv]).items():
                    last[name] = (ev.type, kv)
            for name, (kind, _) in last.items():
                if kind == "delete":
                    changed |= self._delete(name)
            wanted = {n: kv for n, (kind, kv) in last.items() if kind == "put"}
        self._converge(wanted, changed)
        with self.lock:
            self.saved.revision = update.revision
        self._save()

    def _named(self, kvs: Iterable[KeyValue]) -> dict[str, KeyValue]:
        out = {}
        for kv in kvs:
            parsed = self.layout.desired_key(kv.key)
            if parsed is not None and parsed[0] == self.device:
                out[parsed[1]] = kv
        return out

    def _converge(self, kvs: dict[str, KeyValue], changed: bool) -> None:
        """Apply each document on its own; while that changes anything, give the refused
        ones another try: a port map moving from one NI to another may be refused
        first and fit once the other NI has let it go (in the same batch or later)."""
        changed |= self._try(kvs)
        while changed:
            with self.lock:
                again = dict(self.refused)
            changed = self._try(again)

    def _try(self, kvs: dict[str, KeyValue]) -> bool:
        results = [self._apply(name, kv) for name, kv in sorted(kvs.items())]
        return any(r not in (None, "unchanged") for r in results)

    def _apply(self, name: str, kv: KeyValue) -> str | None:
        """The target's result, or None when the document was refused."""
        source = kv.key
        try:
            text = kv.value.decode("utf-8")
            check_document(name, text, source)
            result = self.target.apply_one(name, source, text)
        except UnicodeDecodeError:
            reason = f"{source}: the value is not UTF-8 text"
        except NirunnerError as e:
            reason = str(e)
        else:
            with self.lock:
                self.saved.applied[name] = kv.mod_revision
                self.saved.rejected.pop(name, None)
                self.refused.pop(name, None)
            if result != "unchanged":
                log.info("fleet: %s %s (revision %d)", name, result, kv.mod_revision)
            return result
        with self.lock:
            known = self.saved.rejected.get(name)
            self.saved.rejected[name] = Rejected(kv.mod_revision, reason)
            self.refused[name] = kv
        if known is None or known != self.saved.rejected[name]:
            log.warning("fleet: %s: revision %d not applied: %s", name, kv.mod_revision, reason)
        return None

    def _delete(self, name: str) -> bool:
        deleted = False
        if name in self.target.names():
            try:
                self.target.delete_one(name)
                deleted = True
                log.info("fleet: %s deleted", name)
            except NirunnerError as e:
                log.error("fleet: %s: delete failed: %s", name, e)
        with self.lock:
            self.saved.applied.pop(name, None)
            self.saved.rejected.pop(name, None)
            self.refused.pop(name, None)
        return deleted

    # -- saved state ---------------------------------------------------------------

    def _load(self) -> Saved:
        try:
            doc = json.loads(self.path.read_text())
            if (doc.get("format"), doc.get("prefix"), doc.get("device")) != (
                    FORMAT, self.config.prefix, self.device):
                return Saved()  # another fleet or device: list everything again
            return Saved(int(doc["revision"]), {k: int(v) for k, v in doc["applied"].items()},
                         {k: Rejected(int(v["revision"]), str(v["reason"]))
                          for k, v in doc["rejected"].items()})
        except FileNotFoundError:
            return Saved()
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("fleet: %s cannot be read (%s); listing everything again", self.path, e)
            return Saved()

    def _save(self) -> None:
        with self.lock:
            s = self.saved
            doc = {"format": FORMAT, "prefix": self.config.prefix, "device": self.device,
                   "revision": s.revision, "applied": dict(sorted(s.applied.items())),
                   "rejected": {n: {"revision": r.revision, "reason": r.reason}
                                for n, r in sorted(s.rejected.items())}}
        write_atomic(self.path, json.dumps(doc, indent=1) + "\n", mode=0o600)

    # -- status --------------------------------------------------------------------

    def _lease_loop(self) -> None:
        self.lease.run(self.stopping)

    def _status_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.write_status()
            except EtcdError as e:
                log.debug("fleet: status not written: %s", e)
            except NirunnerError as e:
                log.warning("fleet: status: %s", e)
            self.stopping.wait(self.status_every)

    def write_status(self) -> bool:
        """Write the status keys that changed (all of them under a new lease); True if any."""
        lease, generation = self.lease.current()
        if not lease:
            return False
        with self.lock:
            summary = {"connectedSince": report.iso(self.link.since) if self.link.connected
                       else None, "revision": self.saved.revision, "version": __version__}
            applied, rejected = dict(self.saved.applied), dict(self.saved.rejected)
        docs = report.documents(self.layout, self.device, self.target.statuses(), applied,
                                rejected, summary)
        written = self.written if generation == self.written_generation else {}
        ops = [put_op(k, v, lease) for k, v in docs.items() if written.get(k) != v]
        if written:
            gone = [k for k in written if k not in docs]
        else:  # a new lease: keys of an earlier run may linger under the old one
            old, _ = self.etcd.get_prefix(self.layout.status(self.device), keys_only=True)
            gone = [kv.key for kv in old if kv.key not in docs]
        ops += [delete_op(k) for k in gone]
        try:
            for i in range(0, len(ops), TXN_OPS):
                self.etcd.txn([], ops[i:i + TXN_OPS], what=f"write status of {self.device}")
        except EtcdError as e:
            if "lease not found" in str(e):
                self.lease.lost(lease)
            raise
        self.written, self.written_generation = docs, generation
        return bool(ops)


class _Locked(Link):
    """The source's link state, changed under its lock."""

    def __init__(self, source: FleetSource) -> None:
        self.source = source

    def up(self, endpoint: str) -> None:
        with self.source.lock:
            self.source.link.up(endpoint)

    def down(self, error: str) -> None:
        with self.source.lock:
            self.source.link.down(error)
