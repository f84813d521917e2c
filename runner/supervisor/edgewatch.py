"""The app edge's live part in the supervisor: one thread follows every NI's leases and
flow log.

The supervisor says what to follow after each change (`follow`, from the NIs whose
netns exists: runner.reconcile.build_edge.follows); the thread starts, updates and
stops followers to match, and waits (one epoll) on
- inotify of every NI's state dir: dnsmasq rewrites its lease file on every
  change; new and renewed leases are applied at once (an add cannot hurt), gone
  ones once the file has been quiet for QUIET seconds (dnsmasq truncates the file
  before it writes it anew: a read in between sees no leases at all);
- every NI's flow-log listener (a netfilter netlink socket in the NI netns):
  conntrack ends, nflog samples of drops, DNS answers (which also keep the ACLs'
  host-name sets in step with their TTLs).

Everything applied to an NI's edge (lease elements, host refreshes, an ACL
change by its configurator) runs under that NI's lock: no two transactions on
its tables interleave.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inotify_simple import INotify
from inotify_simple import flags as inflags

from runner.drivers import edge as edge_driver
from runner.drivers import nft
from runner.errors import NirunnerError
from runner.flowlog.collector import Collector, Listener
from runner.flowlog.records import AppIndex, Recorder
from runner.flowlog.writer import RotatingJsonl
from runner.reconcile.build_edge import Follow
from runner.supervisor.leasesync import LeaseSync, hostnames

log = logging.getLogger("nirunner.edge")

QUIET = 0.05  # seconds without lease-file events before gone leases are removed
RETRY = 5.0  # seconds before a follower that failed to start is tried again
HOST_GRACE = 1  # seconds a host's address stays allowed past its DNS answer's TTL
REAP_EVERY = 5.0  # conntrack reaps (ends recorded at once) while flows start or end
_MASK = inflags.MODIFY | inflags.CLOSE_WRITE | inflags.MOVED_TO | inflags.CREATE
_LEASES = ("ni", "netns", "inode", "lease_path", "acl_apps", "apps")
_LOG = ("ni", "netns", "inode", "listen", "log_path", "max_bytes", "keep")


class _Discard:
    """A writer that keeps nothing: the collector only refreshes host-name sets."""

    def write(self, records: Iterable[dict[str, Any]]) -> int:
        return len(list(records))

    def close(self) -> None:
        pass


@dataclass
class _NI:
    lock: threading.RLock = field(default_factory=threading.RLock)
    spec: Follow | None = None  # what is followed now
    leases: LeaseSync | None = None
    wd: int | None = None
    dirty: float = 0.0  # the lease file changed; gone leases not removed yet
    collector: Collector | None = None
    index: AppIndex = field(default_factory=AppIndex)
    retry: float = 0.0  # a start failed: not before then
    error: str = ""


def _same(a: Follow | None, b: Follow | None, fields: tuple[str, ...]) -> bool:
    return a is not None and b is not None and all(
        getattr(a, f) == getattr(b, f) for f in fields)


class EdgeWatch:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nis: dict[str, _NI] = {}
        self._wanted: dict[str, Follow] = {}
        self._inotify = INotify(nonblocking=True)
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe()
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._epoll.register(self._inotify.fileno(), select.EPOLLIN)
        self._fds: dict[int, str] = {}  # listener fd -> NI
        self._wds: dict[int, str] = {}  # inotify watch -> NI
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._converged = threading.Event()

    def _ni(self, name: str) -> _NI:
        with self._lock:
            return self._nis.setdefault(name, _NI())

    def lock(self, ni: str) -> threading.RLock:
        """The lock of NI `ni`'s edge transactions."""
        return self._ni(ni).lock

    def follow(self, wanted: Mapping[str, Follow]) -> None:
        """Follow these NIs (and stop following the others), soon, in the thread."""
        with self._lock:
            if wanted == self._wanted and all(
                    self._nis.get(n) and self._nis[n].spec == f for n, f in wanted.items()):
                return
            self._wanted = dict(wanted)
            self._converged.clear()
            if self._thread is None:
                self._thread = threading.Thread(target=self.run, name="edge", daemon=True)
                self._thread.start()
        os.write(self._wake_w, b"x")

    def release(self, nis: Iterable[str]) -> None:
        """Stop following these NIs at once, in the caller's thread, before their netns
        is deleted: an open listener keeps a deleted netns alive, and with it the NI's
        transit veth. `follow` takes them up again when it next names them."""
        nis = set(nis)
        with self._lock:
            for ni in nis:
                self._wanted.pop(ni, None)
            states = [self._nis[n] for n in sorted(nis) if n in self._nis]
        for state in states:
            with state.lock:
                self._close(state)
                self._stop_leases(state)
                state.spec = None

    def wait(self, timeout: float) -> bool:
        """Until everything wanted is followed (or failed, to be tried again)."""
        return self._converged.wait(timeout)

    def sync_leases(self, ni: str) -> bool:
        """Apply the NI's new and renewed leases now, in the caller's thread (for a caller
        that takes a lease itself and must send from its address at once, as the CNI
        attach does); False if its leases are not followed (yet)."""
        state = self._ni(ni)
        with state.lock:
            if state.leases is None:
                return False
            state.leases.changed(deletes=False)
            self._reindex(state)
        return True

    def stats(self, ni: str) -> dict[str, Any]:
        """What `inspect` shows of the NI's followers."""
        with self._lock:
            state = self._nis.get(ni)
        if state is None:
            return {}
        c = state.collector
        out: dict[str, Any] = {"leasesFollowed": state.leases is not None}
        if state.error:
            out["followError"] = state.error
        if c is not None:
            out["collector"] = {"records": c.records, "lost": c.listener.lost,
                                "refreshErrors": c.refresh_errors}
        return out

    # -- following ----------------------------------------------------------------------------

    def _converge(self, now: float) -> bool:
        """Start and stop followers as wanted; whether one failed (and waits for a retry)."""
        with self._lock:
            wanted = dict(self._wanted)
            names = sorted(set(wanted) | set(self._nis))
        pending = False
        for ni in names:
            state = self._ni(ni)
            want = wanted.get(ni)
            if state.spec == want and not state.error:
                continue
            if state.retry > now:
                pending = True
                continue
            with state.lock:
                try:
                    self._change(ni, state, want)
                    state.error, state.retry = "", 0.0
                except (NirunnerError, OSError) as e:
                    if state.error != str(e):
                        log.warning("NI %s: follow its leases and flow log: %s", ni, e)
                    state.error, state.retry = str(e), now + RETRY
                    pending = True
            if want is None and state.spec is None:
                with self._lock:
                    self._nis.pop(ni, None)
        if not pending:
            self._converged.set()
        return pending

    def _change(self, ni: str, state: _NI, want: Follow | None) -> None:
        have = state.spec
        if not _same(have, want, _LEASES):
            self._stop_leases(state)
            if want is not None:
                self._start_leases(ni, state, want)
        if not _same(have, want, _LOG) or (want is not None and want.listen
                                            and state.collector is None):
            self._close(state)
            if want is not None and want.listen:
                self._open(ni, state, want)
        if state.collector is not None and want is not None:
            state.collector.recorder.hosts = want.hosts
            state.collector.recorder.rule_labels = dict(want.labels)
        state.spec = want
        self._reindex(state)

    def _start_leases(self, ni: str, state: _NI, f: Follow) -> None:
        netns = f.netns
        sync = LeaseSync(ni, Path(f.lease_path), dict(f.acl_apps),
                         lambda text: nft.apply(text, netns, f"leases of NI {ni}"),
                         lambda: (edge_driver.read_edge(netns), edge_driver.read_acl(netns)),
                         {(mac, ip) for _name, mac, ips in f.apps for ip in ips})
        wd = self._inotify.add_watch(str(Path(f.lease_path).parent), _MASK)  # then read:
        with self._lock:                                                   # none is missed
            self._wds[wd] = ni
        state.wd = wd
        sync.full()
        state.leases = sync

    def _stop_leases(self, state: _NI) -> None:
        state.leases, state.dirty = None, 0.0
        if state.wd is not None:
            with self._lock:
                self._wds.pop(state.wd, None)
            with contextlib.suppress(OSError):  # its directory went already
                self._inotify.rm_watch(state.wd)
            state.wd = None

    def _open(self, ni: str, state: _NI, f: Follow) -> None:
        listener = Listener(f.netns, conntrack=bool(f.log_path))
        listener.open()
        recorder = Recorder(ni, lambda: state.index, f.hosts, dict(f.labels),
                            host_grace=HOST_GRACE)
        writer = (RotatingJsonl(Path(f.log_path), f.max_bytes, f.keep) if f.log_path
                  else _Discard())
        netns = f.netns

        def refresh(text: str) -> None:
            with state.lock:
                nft.apply(text, netns, "refresh host-name sets")

        state.collector = Collector(listener, recorder, writer, refresh,  # type: ignore[arg-type]
                                    reap_every=REAP_EVERY)
        with self._lock:
            self._fds[listener.fileno()] = ni
            self._epoll.register(listener.fileno(), select.EPOLLIN)

    def _close(self, state: _NI) -> None:
        """Flush and close the NI's collector (its lock held)."""
        c, state.collector = state.collector, None
        if c is None:
            return
        if c.listener.sock is not None:
            fd = c.listener.fileno()
            with self._lock:
                self._fds.pop(fd, None)
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)
        try:
            c.writer.write(c.recorder.flush(time.time(), everything=True))
        except OSError as e:
            log.warning("flow log of NI %s: %s", c.recorder.ni, e)
        c.writer.close()
        c.listener.close()

    def _reindex(self, state: _NI) -> None:
        """Apps by address and MAC for the flow records: declared ones, then the leases'
        holders (by the hostname they sent)."""
        index = AppIndex()
        declared: dict[str, str] = {}
        for name, mac, ips in state.spec.apps if state.spec else ():
            declared[mac] = name
            index.by_mac[mac] = name
            index.by_ip.update((ip, name) for ip in ips)
        if state.leases is not None:
            names = hostnames(state.leases.path)
            for lease in state.leases.leases():
                name = declared.get(lease.mac) or names.get(lease.mac, "")
                index.by_ip.setdefault(str(lease.ip), name)
                index.by_mac.setdefault(lease.mac, name)
        state.index = index

    # -- events -------------------------------------------------------------------------------

    def _lease_events(self, now: float) -> None:
        changed = set()
        for ev in self._inotify.read(timeout=0):
            with self._lock:
                ni = self._wds.get(ev.wd)
                state = self._nis.get(ni) if ni is not None else None
            sync = state.leases if state is not None else None
            if sync is not None and ev.name == sync.path.name:
                changed.add(ni)
        for ni in sorted(n for n in changed if n is not None):
            self._leases_changed(ni, deletes=False, now=now)

    def _leases_changed(self, ni: str, deletes: bool, now: float) -> None:
        state = self._ni(ni)
        with state.lock:
            if state.leases is None:
                return
            try:
                state.leases.changed(deletes=deletes)
            except (NirunnerError, OSError) as e:
                log.warning("NI %s: leases: %s", ni, e)
            state.dirty = 0.0 if deletes else now
            self._reindex(state)

    def _collect(self, ni: str, ready: bool) -> None:
        state = self._ni(ni)
        with state.lock:
            c = state.collector
            if c is None:
                return
            try:
                c.handle(ready)
            except OSError as e:  # its netns went (the NI is being re-created)
                log.debug("flow log of NI %s: %s", ni, e)

    # -- the thread -----------------------------------------------------------------------

    def run(self) -> None:
        """Wakes for events and for timers that are due: the collectors' (drops to flush,
        reaps while flows come and go), quiet lease files, retries. Nothing is polled
        per NI: a hundred quiet NIs cost nothing."""
        next_retry = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                dirty = [(n, s.dirty) for n, s in self._nis.items() if s.dirty]
                timers = [(n, s.collector.due()) for n, s in self._nis.items()
                          if s.collector is not None]
            wall = time.time()
            wait = min([next_retry - now, *(d + QUIET - now for _, d in dirty),
                        *(due - wall for _, due in timers)])
            try:
                ready = self._epoll.poll(-1 if wait == math.inf else max(0.0, wait))
            except InterruptedError:
                continue
            now, wall = time.monotonic(), time.time()
            woken = False
            for fd, _ in ready:
                if fd == self._wake_r:
                    os.read(self._wake_r, 64)
                    woken = True
                elif fd == self._inotify.fileno():
                    self._lease_events(now)
                else:
                    with self._lock:
                        ni = self._fds.get(fd)
                    if ni is not None:
                        self._collect(ni, True)
            for ni, since in dirty:
                if now - since >= QUIET:
                    self._leases_changed(ni, deletes=True, now=now)
            if woken or now >= next_retry:  # a change asked for (woken), or a retry due
                next_retry = now + RETRY if self._converge(now) else math.inf
            for ni, due in timers:
                if due <= wall:
                    self._collect(ni, False)

    def stop(self) -> None:
        """Stop the thread, then flush and close every collector."""
        self._stop.set()
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            states = list(self._nis.values())
        for state in states:
            with state.lock:
                self._close(state)
                self._stop_leases(state)
