"""Watch the kernel for changes to what nirunner owns, and to the uplinks.

One thread, one epoll, two netlink sockets per network namespace (rtnetlink:
links, IPv4 addresses, routes, rules; nftables). Sockets are made by a thread
that entered the netns, so one watcher sees the device netns and every NI's.
Nothing is polled: the kernel's own notifications arrive as they happen.

What is reported (as `Drift(owner, what, item)` to `on_drift`):
- in an NI netns: its bridge, transit end or app ports (a switch NI's macvlan
  ports too) deleted or set down, an address removed from them, one of our
  routes (proto nirunner) deleted, one of its nft tables (ni, and the app edge's:
  bridge edge, inet acl) changed by anyone but us;
- in the device netns: a transit link (or a switch NI's shim) deleted or set
  down or its address removed, our routes in the uplinks' tables (and the main
  table's, with switch NIs) or our rules deleted, table inet nirunner changed by
  anyone but us.
Changes to the uplinks themselves (link, address, default route) go to
`on_uplink` instead: they change the plan.

Our own changes make events too. An nftables batch names the process that made
it, so ours are told apart exactly (runner.drivers.nft.own_pid). rtnetlink
events name nobody: while the supervisor changes an owner's objects (and a
moment after), that owner is muted. A deletion seen while muted may still be
someone else's (a route deleted just after a heal): once the owner is no longer
muted it is reported, and the heal that follows reads the owner back, so only a
real difference is put right.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass

from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from runner.drivers import netns as ns
from runner.drivers import nfnl, nlmsg
from runner.drivers.nft import own_pid
from runner.drivers.rtnl import (
    IFINFO,
    IFLA_IFNAME,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_DELRULE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
)
from runner.errors import NirunnerError
from runner.net import names

log = logging.getLogger("nirunner.watch")

RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV4_RULE = 0x1, 0x10, 0x40, 0x80
RTPROT_NIRUNNER = 188
MAIN_TABLE = 254
IFF_UP = 1
GRACE = 0.5  # seconds an owner stays muted after the supervisor's own changes
_NFT_TABLE_MSGS = {nfnl.NFT_MSG_NEWTABLE, nfnl.NFT_MSG_DELTABLE, nfnl.NFT_MSG_NEWCHAIN,
                   nfnl.NFT_MSG_DELCHAIN, nfnl.NFT_MSG_NEWRULE, nfnl.NFT_MSG_DELRULE,
                   nfnl.NFT_MSG_NEWSET, nfnl.NFT_MSG_DELSET}
DEVICE = ""
_DELETIONS = {RTM_DELLINK, RTM_DELADDR, RTM_DELROUTE, RTM_DELRULE}


@dataclass(frozen=True)
class Drift:
    owner: str  # an NI's name, or "" for the device
    what: str  # "link br0 deleted in nr-site"
    item: str = ""  # an item id known to differ now (a tampered nft table), else ""


@dataclass(frozen=True)
class Ours:
    """What belongs to whom, so events can be told apart (updated after every change)."""

    transit: Mapping[str, str]  # device-side transit link -> NI
    rules: Mapping[int, str]  # rule priority -> NI ("" for the device's)
    tables: Collection[int]  # the uplinks' route tables
    uplinks: Collection[str]  # uplink interfaces


class WatchError(NirunnerError):
    pass


class _Source:
    """The two sockets of one netns, and the nftables messages of a batch in progress."""

    def __init__(self, owner: str, netns: str | None) -> None:
        self.owner = owner
        self.netns = netns

        def make() -> tuple[socket.socket, socket.socket]:
            rt = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
            try:
                rt.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE
                         | RTMGRP_IPV4_RULE))
                return rt, nfnl.event_socket()
            except OSError as e:
                rt.close()
                raise WatchError(f"watch kernel events in {netns or 'the device netns'}: "
                                 f"{e.strerror} (this needs CAP_NET_ADMIN)") from None

        self.rt, self.nft = ns.run_in(netns, make) if netns else make()
        for s in (self.rt, self.nft):
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.batch: list[nfnl.NftEvent] = []

    def close(self) -> None:
        self.rt.close()
        self.nft.close()


class Watcher:
    def __init__(self, on_drift: Callable[[Drift], None],
                 on_uplink: Callable[[str], None]) -> None:
        self.on_drift = on_drift
        self.on_uplink = on_uplink
        self.ours = Ours({}, {}, (), ())
        self._lock = threading.Lock()
        self._sources: dict[int, _Source] = {}  # by fd
        self._by_owner: dict[str, _Source] = {}
        self._muted: dict[str, float] = {}  # owner -> until (inf while busy)
        self._names: dict[tuple[str, int], str] = {}  # (owner, ifindex) -> ifname
        self._uplink_state: dict[str, object] = {}  # uplink -> (up, operstate, mtu) last seen
        # deletions seen while their owner was muted: (owner, netns owner) -> what
        self._missed: dict[tuple[str, str], str] = {}
        self._marshal = MarshalRtnl()
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe()
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._stop = False

    # -- what to watch -------------------------------------------------------------------

    def watch(self, owner: str, netns: str | None) -> None:
        """Watch the device netns (owner "", netns None) or an NI's netns (idempotent)."""
        with self._lock:
            old = self._by_owner.get(owner)
            if old is not None and old.netns == netns:
                return
        src = _Source(owner, netns)
        with self._lock:
            if old is not None:
                self._drop(old)
            self._by_owner[owner] = src
            for s in (src.rt, src.nft):
                self._sources[s.fileno()] = src
                self._epoll.register(s.fileno(), select.EPOLLIN)

    def unwatch(self, owner: str) -> None:
        with self._lock:
            src = self._by_owner.pop(owner, None)
            if src is not None:
                self._drop(src)

    def watched(self) -> set[str]:
        with self._lock:
            return set(self._by_owner)

    def _drop(self, src: _Source) -> None:
        for s in (src.rt, src.nft):
            self._sources.pop(s.fileno(), None)
            try:
                self._epoll.unregister(s.fileno())
            except (OSError, ValueError):
                pass
        src.close()

    def mute(self, owners: Collection[str]) -> None:
        with self._lock:
            for o in owners:
                self._muted[o] = float("inf")

    def unmute(self, owners: Collection[str], grace: float = GRACE) -> None:
        until = time.monotonic() + grace
        with self._lock:
            for o in owners:
                self._muted[o] = until
            missed = bool(self._missed)
        if missed:  # the loop's wait is for the mute's end now, not the next event
            os.write(self._wake_w, b"x")

    def _is_muted(self, owner: str) -> bool:
        return self._muted.get(owner, 0.0) > time.monotonic()

    def _report_missed(self) -> float:
        """Report the deletions seen while muted whose owners no longer are; the seconds
        until the next one is due (at most 1)."""
        now, wait = time.monotonic(), 1.0
        with self._lock:
            due = []
            for key, what in list(self._missed.items()):
                until = max(self._muted.get(key[0], 0.0), self._muted.get(key[1], 0.0))
                if until <= now:
                    due.append((key[0], what))
                    del self._missed[key]
                else:
                    wait = min(wait, until - now)
        for owner, what in due:
            self.on_drift(Drift(owner, f"{what} (while nirunner was changing it)"))
        return wait

    # -- the loop ----------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop = True
        os.write(self._wake_w, b"x")

    def run(self) -> None:
        while not self._stop:
            wait = self._report_missed() if self._missed else 1.0
            try:
                ready = self._epoll.poll(wait)
            except InterruptedError:
                continue
            for fd, _ in ready:
                if fd == self._wake_r:
                    os.read(self._wake_r, 64)
                    continue
                with self._lock:
                    src = self._sources.get(fd)
                if src is None:
                    continue
                try:
                    self._read(src, fd)
                except Exception as e:  # never let one odd message stop the watch
                    log.warning("watch %s: %s", src.netns or "device", e)

    def _read(self, src: _Source, fd: int) -> None:
        sock = src.rt if fd == src.rt.fileno() else src.nft
        while True:
            try:
                data = sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # we missed events: look at everything
                    self.on_drift(Drift(src.owner, "kernel events were lost"))
                    continue
                raise
            if sock is src.rt:
                for chunk in self._worth_decoding(src, data):
                    for msg in self._marshal.parse(chunk):
                        self._route_event(src, msg)
            else:
                for ev in nfnl.parse(data):
                    self._nft_event(src, ev)

    # -- nftables ------------------------------------------------------------------------------

    def _nft_event(self, src: _Source, ev: nfnl.NftEvent) -> None:
        if ev.msg != nfnl.NFT_MSG_NEWGEN:
            if ev.msg in _NFT_TABLE_MSGS:
                src.batch.append(ev)
            return
        batch, src.batch = src.batch, []
        if own_pid(ev.pid):
            return
        where = f" in {src.netns}" if src.netns else ""
        for family, table, item in self._tables(src):
            if any(e.table == table and e.family == nfnl.FAMILIES[family] for e in batch):
                self.on_drift(Drift(src.owner, f"nft table {family} {table}{where} changed "
                                               f"by process {ev.pid}", item))

    @staticmethod
    def _tables(src: _Source) -> list[tuple[str, str, str]]:
        """(family, table, item id) of the nft tables we own in the source's netns."""
        if src.owner == DEVICE:
            return [("inet", names.DEVICE_NFT_TABLE, f"nft:device/inet {names.DEVICE_NFT_TABLE}")]
        ns_ = src.netns or ""
        return [("inet", names.NI_NFT_TABLE, f"nft:{ns_}/inet {names.NI_NFT_TABLE}"),
                # the app edge's tables (their element changes, ours or dnsmasq's, are no
                # table changes: NEWSETELEM is not watched)
                ("bridge", names.EDGE_NFT_TABLE, f"edge:{ns_}"),
                ("inet", names.ACL_NFT_TABLE, f"acl:{ns_}")]

    # -- rtnetlink -------------------------------------------------------------------------------

    def _ifname(self, src: _Source, msg: object, index: int | None) -> str:
        get = getattr(msg, "get_attr")  # noqa: B009 - pyroute2 messages
        name = get("IFLA_IFNAME") or get("IFA_LABEL")
        key = (src.owner, index or 0)
        if name:
            self._names[key] = str(name)
            return str(name)
        return self._names.get(key, "")

    def _worth_decoding(self, src: _Source, data: bytes) -> Iterator[bytes]:
        """The messages of `data` that can matter, for pyroute2 to decode.

        Decoding every message cost more than anything else in the supervisor while NIs
        were made and apps plugged (~60% of the time it held the GIL): every link made,
        set up or put on a bridge sends a few RTM_NEWLINK with every attribute. What can
        matter is read from the raw message first: a deletion (rare) always; a NEWLINK of
        a link of ours without IFF_UP, or of an uplink; in the device netns, addresses
        (the uplinks') and main-table default routes. The NEWLINKs skipped still teach
        the index's name (deletions of addresses and routes carry only the index)."""
        for kind, msg_flags, seq, body in nlmsg.frames(data):
            if self._matters(src, kind, body):
                yield nlmsg.message(kind, msg_flags, seq, body)  # one message, for pyroute2

    def _matters(self, src: _Source, kind: int, body: bytes) -> bool:
        if kind in _DELETIONS:
            return True
        if kind == RTM_NEWLINK and len(body) >= IFINFO.size:
            index, flags = IFINFO.unpack_from(body)[2:4]
            raw = nlmsg.attrs(body, IFINFO.size).get(IFLA_IFNAME, b"")
            name = raw.split(b"\0", 1)[0].decode(errors="replace")
            if name:
                self._names[(src.owner, index)] = name
            return (src.owner == DEVICE and name in self.ours.uplinks) or (
                not flags & IFF_UP and self._link_owner(src, name) is not None)
        if src.owner != DEVICE:
            return False
        # the device's addresses (the uplinks') and default routes (rtm_dst_len 0)
        return kind == RTM_NEWADDR or (kind == RTM_NEWROUTE and len(body) >= 2
                                       and body[1] == 0)

    def _route_event(self, src: _Source, msg: object) -> None:
        event = str(msg.get("event", ""))  # type: ignore[attr-defined]
        if src.owner == DEVICE:
            self._uplink_event(src, msg, event)
        found = self._classify(src, msg, event)
        if found is None:
            return
        owner, what = found
        what += f" in {src.netns}" if src.netns else ""
        if self._is_muted(owner) or self._is_muted(src.owner):
            if event != "RTM_NEWLINK":  # a deletion; a link made down is what we do
                with self._lock:
                    self._missed.setdefault((owner, src.owner), what)
            return
        self.on_drift(Drift(owner, what))

    def _classify(self, src: _Source, msg: object, event: str) -> tuple[str, str] | None:
        """(owner, what happened) for an event that concerns something of ours."""
        get = getattr(msg, "get_attr")  # noqa: B009 - pyroute2 messages
        if event in ("RTM_NEWLINK", "RTM_DELLINK"):
            idx = msg.get("index")  # type: ignore[attr-defined]
            name = self._ifname(src, msg, idx)
            owner = self._link_owner(src, name)
            if event == "RTM_DELLINK":
                self._names.pop((src.owner, idx or 0), None)
                return None if owner is None else (owner, f"link {name} deleted")
            if owner is not None and not msg["flags"] & IFF_UP:  # type: ignore[index]
                return owner, f"link {name} set down"
        elif event == "RTM_DELADDR":
            name = self._ifname(src, msg, msg.get("index"))  # type: ignore[attr-defined]
            owner = self._link_owner(src, name)
            if owner is not None:
                return owner, f"address {get('IFA_ADDRESS')} removed from {name}"
        elif event == "RTM_DELROUTE" and msg["proto"] == RTPROT_NIRUNNER:  # type: ignore[index]
            table = get("RTA_TABLE") or msg["table"]  # type: ignore[index]
            ours = table in self.ours.tables if src.owner == DEVICE else table == MAIN_TABLE
            if ours:
                dst = f"{get('RTA_DST') or '0.0.0.0'}/{msg['dst_len']}"  # type: ignore[index]
                return src.owner, f"route {dst} of table {table} deleted"
        elif event == "RTM_DELRULE" and src.owner == DEVICE:
            prio = get("FRA_PRIORITY") or 0
            owner = self.ours.rules.get(prio)
            if owner is not None:
                return owner, f"ip rule {prio} deleted"
        return None

    def _link_owner(self, src: _Source, name: str) -> str | None:
        if src.owner == DEVICE:
            return self.ours.transit.get(name)
        if name in (names.BRIDGE_IF, names.NI_TRANSIT_IF) or name.startswith(
                (names.APP_PREFIX, names.SWITCH_PORT_PREFIX)):  # a switch NI's port
            return src.owner
        return None

    def _uplink_event(self, src: _Source, msg: object, event: str) -> None:
        get = getattr(msg, "get_attr")  # noqa: B009
        uplinks = self.ours.uplinks
        if event in ("RTM_NEWLINK", "RTM_DELLINK"):
            idx = msg.get("index")  # type: ignore[attr-defined]
            name = self._ifname(src, msg, idx)
            if name not in uplinks:
                return
            # what planning reads of a link: it exists, is up with carrier, its MTU; a
            # NEWLINK that changes none of it (a promiscuity count: every macvlan of the
            # uplink made or removed) is no reason to plan again
            seen = None if event == "RTM_DELLINK" else (
                bool(msg["flags"] & IFF_UP), get("IFLA_OPERSTATE"),  # type: ignore[index]
                get("IFLA_MTU"))
            if self._uplink_state.get(name, ()) != seen:
                self._uplink_state[name] = seen
                self.on_uplink(f"link {name} {event[4:].lower()}")
        elif event in ("RTM_NEWADDR", "RTM_DELADDR"):
            name = self._ifname(src, msg, msg.get("index"))  # type: ignore[attr-defined]
            if name in uplinks:
                verb = "added to" if event == "RTM_NEWADDR" else "removed from"
                self.on_uplink(f"address {get('IFA_ADDRESS')} {verb} {name}")
        elif event in ("RTM_NEWROUTE", "RTM_DELROUTE"):
            table = get("RTA_TABLE") or msg["table"]  # type: ignore[index]
            if table == MAIN_TABLE and msg["dst_len"] == 0:  # type: ignore[index]
                name = self._names.get((src.owner, get("RTA_OIF") or 0), "")
                if name in uplinks:
                    self.on_uplink(f"default route via {name} changed")

    def prime(self) -> None:
        """Learn the device's current links: their names (addresses and routes carry only
        indexes) and what planning reads of them (to tell a real change from noise)."""
        from runner.drivers import links

        def dump(ip: links.IPRoute) -> list[tuple[int, str, object]]:
            return [(int(x["index"]), str(x.get_attr("IFLA_IFNAME")),
                     (bool(x["flags"] & IFF_UP), x.get_attr("IFLA_OPERSTATE"),
                      x.get_attr("IFLA_MTU"))) for x in ip.get_links()]

        for idx, name, state in links.in_netns(None, dump):
            self._names[(DEVICE, idx)] = name
            self._uplink_state[name] = state
