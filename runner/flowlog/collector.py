"""The flow-log collector of one NI: a netfilter netlink socket in the NI netns, a Recorder, a file.

It runs in the supervisor (a thread per NI, or one loop over all NIs' sockets):
the socket is opened inside the NI netns by a short-lived setns thread and
keeps that netns for good, so the collector needs nothing in the NI's image and
adopts nothing on a task restart. Its CPU is the supervisor's, not the NI
task's (see docs/app-edge.md for the cost at 1,000 new flows/s).

    python -m runner.flowlog.collector --netns NS --out FILE [--app NAME=IP[,MAC]]...
        [--host NAME]... [--starts] [--seconds N]       # by hand, for one NI netns
"""

from __future__ import annotations

import argparse
import errno
import math
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from runner.drivers import netns as ns
from runner.drivers import nft
from runner.errors import NirunnerError
from runner.flowlog import netlink as nl
from runner.flowlog.records import AppIndex, Recorder
from runner.flowlog.writer import RotatingJsonl
from runner.net import names

# per NI netns: conntrack counts bytes and packets, and stamps start and stop
SYSCTLS = {"net/netfilter/nf_conntrack_acct": "1",
           "net/netfilter/nf_conntrack_timestamp": "1"}
SOL_NETLINK, NETLINK_ADD_MEMBERSHIP = 270, 1
_CT_NEW = nl.NFNL_SUBSYS_CTNETLINK << 8 | nl.IPCTNL_MSG_CT_NEW
SO_RCVBUFFORCE = 33
TRACKED_MAX = 1024  # open flows a collector looks up one by one at a reap; more: a dump
REAP_MAX = 60.0  # s between reaps while flows stay open and none start


class CollectorError(NirunnerError):
    pass


class Listener:
    """Conntrack events (ends, and starts if asked) and one nflog group, from one netns."""

    def __init__(self, netns: str, group: int = names.FLOWLOG_GROUP, starts: bool = False,
                 rcvbuf: int = 8 << 20, conntrack: bool = True) -> None:
        """`conntrack` False: nflog only (DNS answers and drops), no flow ends."""
        self.netns, self.group, self.starts, self.rcvbuf = netns, group, starts, rcvbuf
        self.conntrack = conntrack
        self.sock: socket.socket | None = None
        self.dumps: socket.socket | None = None  # for reaps: made once, in the netns
        self.lost = 0  # times the kernel found our buffer full (events lost)
        self._seq = 1  # of the dumps socket's requests

    def open(self) -> None:
        try:
            self.sock, self.dumps = ns.run_in(self.netns, self._sockets)
            self._bind_nflog()
        except OSError as e:
            self.close()
            raise CollectorError(f"flow log of netns {self.netns}: open netlink: {e}") from e

    def _sockets(self) -> tuple[socket.socket, socket.socket]:
        dumps = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nl.NETLINK_NETFILTER)
        dumps.bind((0, 0))
        dumps.settimeout(2)
        try:
            return self._socket(), dumps
        except OSError:
            dumps.close()
            raise

    def _socket(self) -> socket.socket:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nl.NETLINK_NETFILTER)
        try:
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.rcvbuf)
        except PermissionError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        s.bind((0, 0))
        # new flows too, also without start records: they say when reaps are worth it
        groups = [nl.NFNLGRP_CONNTRACK_DESTROY, nl.NFNLGRP_CONNTRACK_NEW] if self.conntrack \
            else []
        for g in groups:
            s.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g)
        return s

    def _bind_nflog(self) -> None:
        assert self.sock is not None
        for msg in nl.nflog_bind(self.group):
            self.sock.send(msg)
        acks, deadline = 0, time.monotonic() + 2
        while acks < 2:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                raise OSError(errno.ETIMEDOUT, "no answer to the nflog bind")
            for kind, _flags, payload in nl.messages(self.sock.recv(65536)):
                err = nl.ack_error(kind, payload)
                if err:
                    raise OSError(err, f"nflog bind of group {self.group}")
                if err == 0:
                    acks += 1

    def reap(self) -> dict[int, bytes]:
        """Make conntrack drop the flows that have expired now, so their ends are recorded
        now (its GC may take up to a minute when the table is small). One dump over a
        socket that lives in the netns (no thread, no setns); it walks the kernel's whole
        conntrack hash. The flows that remain: ID -> original tuple (netlink.ct_flow)."""
        assert self.dumps is not None
        seq = self._seq = (self._seq + 1) & 0x7FFFFFFF
        self.dumps.send(nl.ct_dump_request(seq))
        flows: dict[int, bytes] = {}
        while True:
            for kind, got, payload in nl.answers(self.dumps.recv(1 << 16)):
                if got != seq:
                    continue  # a late answer to a request that timed out
                if kind in (nl.NLMSG_DONE, nl.NLMSG_ERROR):
                    return flows
                flow = nl.ct_flow(payload)
                if flow is not None:
                    flows[flow[0]] = flow[1]

    def lookup(self, flows: dict[int, bytes], chunk: int = 64) -> dict[int, bytes]:
        """Ask for each of `flows` by its tuple: the kernel drops those that have expired
        (their ends come as events), at the cost of a hash lookup each. Those still there."""
        assert self.dumps is not None
        items = list(flows.items())
        alive: dict[int, bytes] = {}
        for at in range(0, len(items), chunk):  # replies of a chunk fit the socket's buffer
            part = items[at:at + chunk]
            first = (self._seq + 1) & 0x7FFFFFFF  # after any earlier request's
            self._seq = first + len(part)
            self.dumps.send(b"".join(nl.ct_get_request(orig, first + i)
                                     for i, (_id, orig) in enumerate(part)))
            waiting = len(part)
            while waiting:
                for kind, seq, _payload in nl.answers(self.dumps.recv(1 << 16)):
                    if not first <= seq < first + len(part):
                        continue  # a late answer to a request that timed out
                    waiting -= 1
                    if kind != nl.NLMSG_ERROR:
                        ident, orig = part[seq - first]
                        alive[ident] = orig
        return alive

    def fileno(self) -> int:
        assert self.sock is not None
        return self.sock.fileno()

    def read(self, limit: int = 256) -> list[tuple[int, int, bytes]]:
        """What is waiting (at most `limit` datagrams), without blocking."""
        assert self.sock is not None
        out: list[tuple[int, int, bytes]] = []
        for _ in range(limit):
            try:
                data = self.sock.recv(1 << 17, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self.lost += 1
                    continue
                raise
            out.extend(nl.messages(data))
        return out

    def close(self) -> None:
        for s in (self.sock, self.dumps):
            if s is not None:
                s.close()
        self.sock = self.dumps = None


class Collector:
    """One NI: read, record, write, and refresh host-name sets; `run` until `stop` is set."""

    def __init__(self, listener: Listener, recorder: Recorder, writer: RotatingJsonl,
                 apply_nft: Callable[[str], None], reap_every: float = 5.0) -> None:
        """Reaps make conntrack drop its expired flows now, so that their ends are
        recorded within seconds (its own GC takes up to a minute on a small table). The
        collector knows its NI's open flows from their start and end events; a reap looks
        each of them up (a hash lookup; the kernel drops an expired one on the way). Only
        while more than TRACKED_MAX are open does it dump the table instead, which walks
        the kernel's whole conntrack hash (~9-16 ms of CPU with 256k buckets; 100 NIs
        dumping after a bring-up took 2 s of CPU). Flows open before the listener (a
        supervisor restarted) are not known: their ends come with the GC.

        While flows start, a reap every `reap_every` seconds; while flows stay open but
        none start, twice as long each time, up to REAP_MAX; none while none is open."""
        self.listener, self.recorder, self.writer = listener, recorder, writer
        self.apply_nft, self.reap_every = apply_nft, reap_every
        self.records = self.refresh_errors = self.reap_errors = self.reaps = 0
        self._next_flush, self._next_reap = 0.0, math.inf
        self._active = False  # a flow started since the last reap
        self._quiet = 0  # reaps in a row with no flow started before them
        self.open: dict[int, bytes] = {}  # the NI's flows: conntrack ID -> original tuple
        self._untracked = False  # more flows open than `open` holds: dump at a reap

    def poll(self, timeout: float) -> int:
        return self.handle(bool(select.select([self.listener], [], [], timeout)[0]))

    def handle(self, ready: bool) -> int:
        """Read what is waiting (if `ready`), write records, run the timers; the number of
        records written. For a loop that waits on many listeners at once."""
        now = time.time()
        records, refresh = [], []
        if ready:
            for kind, _flags, payload in self.listener.read():
                if kind == _CT_NEW:
                    self._flow_seen(now, nl.ct_flow(payload))
                    if not self.recorder.starts:
                        continue  # no record wanted: not decoded further
                ev = nl.ct_event(kind, payload)
                if ev is not None:
                    if ev.end:
                        self.open.pop(ev.id, None)
                    records += self.recorder.ct(ev)
                    continue
                pkt = nl.log_packet(kind, payload)
                if pkt is not None:
                    recs, text = self.recorder.log(pkt, now)
                    records += recs
                    if text:
                        refresh.append(text)
        if refresh:
            try:
                self.apply_nft("".join(refresh))
            except NirunnerError:
                # a host set an ACL change just removed: dnsmasq's next answer refills it
                self.refresh_errors += 1
        if now >= self._next_flush:
            records += self.recorder.flush(now)
            self._next_flush = now + 1.0
        if self.reap_every and self.listener.conntrack and now >= self._next_reap:
            self._reap(now)
        self.records += self.writer.write(records)
        return len(records)

    def due(self) -> float:
        """When (time.time()) `handle` has timer work: drops to flush, a reap; inf: none."""
        flush = self._next_flush if self.recorder.holding else math.inf
        reap = self._next_reap if self.reap_every and self.listener.conntrack else math.inf
        return min(flush, reap)

    def _flow_seen(self, now: float, flow: tuple[int, bytes] | None) -> None:
        self._active = True
        if flow is not None and not self._untracked:
            if len(self.open) < TRACKED_MAX:
                self.open[flow[0]] = flow[1]
            else:
                self._untracked = True  # too many to look up one by one: dumps again
        if self._next_reap == math.inf:
            self._next_reap = now + self.reap_every

    def _reap(self, now: float) -> None:
        try:
            if self._untracked:
                found = self.listener.reap()
                self._untracked = len(found) > TRACKED_MAX
                self.open = {} if self._untracked else found
            else:
                self.open = self.listener.lookup(self.open)
        except OSError:
            self.reap_errors += 1  # ends then come with conntrack's own GC
        self.reaps += 1
        self._quiet = 0 if self._active else self._quiet + 1
        if not self.open and not self._untracked:
            self._next_reap = math.inf
        else:
            self._next_reap = now + min(self.reap_every * 2 ** self._quiet, REAP_MAX)
        self._active = False

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.poll(0.5)
        finally:
            self.writer.write(self.recorder.flush(time.time(), everything=True))
            self.writer.close()


def _app_index(specs: list[str]) -> AppIndex:
    index = AppIndex()
    for spec in specs:
        name, _, rest = spec.partition("=")
        ip, _, mac = rest.partition(",")
        index.by_ip[ip] = name
        if mac:
            index.by_mac[mac.lower()] = name
    return index


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runner.flowlog.collector")
    ap.add_argument("--netns", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--app", action="append", default=[], help="NAME=IP[,MAC]")
    ap.add_argument("--host", action="append", default=[], help="a host name of the ACLs")
    ap.add_argument("--starts", action="store_true", help="also a record when a flow starts")
    ap.add_argument("--max-bytes", type=int, default=4 << 20)
    ap.add_argument("--seconds", type=float, default=3600)
    a = ap.parse_args(argv)
    index = _app_index(a.app)
    ns.set_sysctls(SYSCTLS, a.netns)
    listener = Listener(a.netns, starts=a.starts)
    listener.open()
    collector = Collector(listener, Recorder(a.netns, lambda: index, a.host, starts=a.starts),
                          RotatingJsonl(a.out, a.max_bytes),
                          lambda text: nft.apply(text, a.netns, "refresh host sets"))
    stop = threading.Event()
    timer = threading.Timer(a.seconds, stop.set)
    timer.daemon = True
    timer.start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        collector.run(stop)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        listener.close()
    print(f"{collector.records} records, {listener.lost} overruns", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
