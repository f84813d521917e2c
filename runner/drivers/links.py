"""Links in a netns through netlink (pyroute2): veth pairs, bridges, addresses, MTU.

Every change is idempotent (read first, change only what differs), and every
netlink error is raised once as a LinkError naming the operation, the object and
the netns: "add address 10.1.0.1/24 to br0 in nr-site: File exists".
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Interface
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from runner.drivers import netns as ns
from runner.drivers import readcache
from runner.drivers.rtnl import Rtnl
from runner.errors import NirunnerError
from runner.net.names import check_ifname
from runner.testhooks import netlink_fault

T = TypeVar("T")
IFF_UP = 1


class LinkError(NirunnerError):
    pass


def _fail(what: str, e: NetlinkError) -> LinkError:
    return LinkError(f"{what}{ns.where()}: {os.strerror(e.code) if e.code else e}")


class LinkExists(LinkError):
    """The kernel's EEXIST: a link of that name is there already."""


def call(what: str, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """fn(*args, **kw), a netlink error raised as LinkError("<what> in <netns>: <reason>")."""
    try:
        fault = netlink_fault(what)
        if fault:
            raise NetlinkError(fault)
        return fn(*args, **kw)
    except NetlinkError as e:
        if e.code == errno.EEXIST:
            raise LinkExists(str(_fail(what, e))) from None
        raise _fail(what, e) from None


@contextlib.contextmanager
def ipr() -> Iterator[IPRoute]:
    """An rtnetlink socket in the calling thread's netns."""
    ip = IPRoute()
    try:
        yield ip
    finally:
        ip.close()


def in_netns(netns: str | None, fn: Callable[[IPRoute], T]) -> T:
    """Run fn with an rtnetlink socket of `netns` (a name or a path; None: here).

    The socket is made by a thread that entered the netns (pyroute2's own
    netns support forks the process, which a gRPC server must not do).
    """
    def body() -> T:
        with ipr() as ip:
            return fn(ip)

    return ns.run_in(netns, body) if netns else body()


def index(ip: IPRoute, ifname: str) -> int | None:
    # one RTM_GETLINK by name: link_lookup() would dump and parse every link
    try:
        return int(ip.link("get", ifname=ifname)[0]["index"])
    except NetlinkError as e:
        if e.code == errno.ENODEV:
            return None
        raise _fail(f"look up link {ifname}", e) from None


@dataclass(frozen=True)
class LinkInfo:
    index: int
    name: str
    kind: str  # veth, bridge, tun, ...
    mac: str
    mtu: int
    up: bool
    master: int | None  # the bridge's index
    peer: int | None  # a veth's peer index (in the peer's netns)
    addresses: tuple[IPv4Interface, ...]


def get(ip: IPRoute, ifname: str) -> LinkInfo | None:
    """The link and its IPv4 addresses, or None if there is none of that name."""
    idx = index(ip, ifname)
    if idx is None:
        return None
    link = call(f"read link {ifname}", ip.get_links, idx)[0]
    info = link.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info else ""
    addrs = call(f"read addresses of {ifname}", ip.get_addr, index=idx, family=2)
    return LinkInfo(
        index=idx, name=ifname, kind=str(kind or ""),
        mac=str(link.get_attr("IFLA_ADDRESS") or ""),
        mtu=int(link.get_attr("IFLA_MTU") or 0),
        up=bool(link["flags"] & IFF_UP),
        master=link.get_attr("IFLA_MASTER"),
        peer=link.get_attr("IFLA_LINK"),
        addresses=tuple(sorted(IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
                               for a in addrs)),
    )


def all_links(ip: IPRoute) -> dict[str, LinkInfo]:
    """Every link and its IPv4 addresses, by name: one dump of each (a batch of reads)."""
    addrs: dict[int, list[IPv4Interface]] = {}
    for a in call("read addresses", ip.get_addr, family=2):
        addrs.setdefault(int(a["index"]), []).append(
            IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"))
    out = {}
    for link in call("read links", ip.get_links):
        idx = int(link["index"])
        info = link.get_attr("IFLA_LINKINFO")
        name = str(link.get_attr("IFLA_IFNAME"))
        out[name] = LinkInfo(
            index=idx, name=name, kind=str((info.get_attr("IFLA_INFO_KIND") if info else "")
                                           or ""),
            mac=str(link.get_attr("IFLA_ADDRESS") or ""),
            mtu=int(link.get_attr("IFLA_MTU") or 0), up=bool(link["flags"] & IFF_UP),
            master=link.get_attr("IFLA_MASTER"), peer=link.get_attr("IFLA_LINK"),
            addresses=tuple(sorted(addrs.get(idx, ()))))
    return out


def read(netns: str | None, ifname: str) -> LinkInfo | None:
    """A link of a netns (None: here): inside a read batch from one dump of them all,
    else asked for by name (a dump per read made 100 NIs' apply quadratic: 43 % of
    the supervisor's CPU went into parsing the device's links)."""
    if readcache.active():
        return readcache.cached(("links", netns), lambda: in_netns(netns, all_links)).get(ifname)
    return in_netns(netns, lambda ip: get(ip, ifname))


def add_veth(nl: Rtnl, name: str, peer: str, peer_netns_path: str, mtu: int,
             peer_mac: str | None = None, up: bool = False, master: str | None = None
             ) -> None:
    """A veth pair: `name` here, `peer` created directly inside the other netns; `name`
    made up and on bridge `master` in the same request, if asked."""
    midx = None
    if master is not None:
        midx = call(f"look up link {master}", nl.link_index, master)
        if midx is None:
            raise LinkError(f"plug {name} into {master}{ns.where()}: no such bridge")
    fd = os.open(peer_netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        call(f"create veth {name} <-> {peer_netns_path} {peer}", nl.new_veth, name, peer, fd,
             mtu, peer_mac, up, midx)
    finally:
        os.close(fd)


LOOPBACK_INDEX = 1  # lo's, in every netns


def add_address(nl: Rtnl, ifname: str, addr: IPv4Interface) -> None:
    """Add an address to a link just made (no read first)."""
    idx = call(f"look up link {ifname}", nl.link_index, ifname)
    if idx is None:
        raise LinkError(f"add address {addr} to {ifname}{ns.where()}: no such link")
    call(f"add address {addr} to {ifname}", nl.add_address, idx, addr)


def set_up(nl: Rtnl, *ifnames: str) -> None:
    """Links up, without reading them first (up is idempotent): one request each, the
    link named in it (the kernel looks it up; ENODEV if there is none)."""
    for name in ifnames:
        if name == "lo":
            call("set lo up", nl.set_up, index=LOOPBACK_INDEX)
        else:
            call(f"set {name} up", nl.set_up, name)


def with_rtnl(netns: str | None, fn: Callable[[Rtnl], T]) -> T:
    """fn with a plain rtnetlink socket of `netns` (runner.drivers.rtnl): for the few
    requests that make an NI's or an app's links, without IPRoute's cost."""
    def body() -> T:
        with Rtnl() as nl:
            return fn(nl)

    return ns.run_in(netns, body) if netns else body()


def ensure_veth(device_if: str, peer_if: str, peer_netns: str, mtu: int) -> bool:
    """A veth pair: device_if here (the device netns), peer_if inside peer_netns."""
    with Rtnl() as nl:
        if call(f"look up link {device_if}", nl.link_index, device_if) is not None:
            return False
        add_veth(nl, device_if, peer_if, ns.path(peer_netns), mtu)
    return True


def ensure_bridge(ip: IPRoute, name: str, mac: str, mtu: int) -> int:
    """A bridge with a fixed MAC (else it takes its lowest port's MAC and changes)."""
    link = get(ip, name)
    if link is None:
        call(f"create bridge {name}", ip.link, "add", ifname=name, kind="bridge", address=mac,
             mtu=mtu)
        idx = index(ip, name)
        assert idx is not None
        return idx
    if link.mac != mac:
        call(f"set mac {mac} of {name}", ip.link, "set", index=link.index, address=mac)
    return link.index


def ensure_up(ip: IPRoute, ifname: str, mtu: int | None = None,
              addresses: tuple[IPv4Interface, ...] | None = None,
              master: str | None = None) -> None:
    """MTU, addresses (exactly these IPv4 ones, if given), bridge master and state up."""
    link = get(ip, ifname)
    if link is None:
        raise LinkError(f"set up link {ifname}{ns.where()}: it does not exist")
    changes: dict[str, object] = {}
    if mtu is not None and link.mtu != mtu:
        changes["mtu"] = mtu
    if master is not None:
        midx = index(ip, master)
        if midx is None:
            raise LinkError(f"plug {ifname} into {master}{ns.where()}: no such bridge")
        if link.master != midx:
            changes["master"] = midx
    if changes:
        what = ", ".join(f"{k} {v if k != 'master' else master}" for k, v in changes.items())
        call(f"set {what} of {ifname}", ip.link, "set", index=link.index, **changes)
    if addresses is not None:
        for addr in sorted(set(addresses) - set(link.addresses)):
            call(f"add address {addr} to {ifname}", ip.addr, "add", index=link.index,
                 address=str(addr.ip), prefixlen=addr.network.prefixlen)
        for addr in sorted(set(link.addresses) - set(addresses)):
            call(f"remove address {addr} from {ifname}", ip.addr, "del", index=link.index,
                 address=str(addr.ip), prefixlen=addr.network.prefixlen)
    if not link.up:
        call(f"set {ifname} up", ip.link, "set", index=link.index, state="up")


def delete(ifname: str, netns: str | None = None) -> bool:
    """Remove a link (a veth takes its peer with it); False if there was none."""
    def body(ip: IPRoute) -> bool:
        idx = index(ip, ifname)
        if idx is None:
            return False
        try:
            ip.link("del", index=idx)
        except NetlinkError as e:
            if e.code != errno.ENODEV:
                raise _fail(f"delete link {ifname}", e) from None
        return True

    return in_netns(netns, body)


def wait_gone(ifname: str, timeout: float = 5.0) -> None:
    """Netns teardown is asynchronous: wait until the link has vanished."""
    deadline = time.monotonic() + timeout
    with ipr() as ip:
        while index(ip, ifname) is not None:
            if time.monotonic() > deadline:
                raise LinkError(f"link {ifname} still exists {timeout:g}s after its netns went")
            time.sleep(0.01)


def present(ifnames: Iterable[str], netns: str | None = None) -> set[str]:
    """Which of `ifnames` exist: a lookup by name each, cheaper than a dump of a netns
    with hundreds of links (pyroute2 parses every attribute of every link)."""
    return in_netns(netns, lambda ip: {n for n in ifnames if index(ip, n) is not None})


def names(netns: str | None = None) -> list[str]:
    return in_netns(netns, lambda ip: sorted(str(link.get("ifname")) for link in ip.get_links()))


# -- taking an interface of another netns (a VM's tap) and giving it back -----------------

@dataclass(frozen=True)
class Borrowed:
    """What an interface was before it was taken, so it can be given back intact."""

    name: str
    mac: str
    mtu: int
    up: bool
    netns: str | None  # where it came from (name or path); None: the caller's netns


def _state(ip: IPRoute, ifname: str) -> tuple[int, str, int, bool]:
    idx = index(ip, ifname)
    if idx is None:
        raise LinkError(f"link {ifname} does not exist")
    link = ip.get_links(idx)[0]
    return idx, str(link.get("address")), int(link.get("mtu")), bool(link["flags"] & 1)


def _netns_fd(netns: str | None) -> int:
    """An fd of `netns`, or of the calling thread's own netns (the device netns)."""
    return os.open(ns.path(netns) if netns and not netns.startswith("/") else
                   netns or "/proc/thread-self/ns/net", os.O_RDONLY)


def move_to_netns(ifname: str, to_netns: str, new_name: str, master: str,
                  from_netns: str | None = None, mtu: int | None = None) -> Borrowed:
    """Take `ifname` from `from_netns` into `to_netns` as `new_name`, on bridge `master`, up.

    The device keeps its MAC and, unless `mtu` is given, its MTU; a process that
    holds it (a VM's tap fd) keeps it across the move. The Borrowed returned is
    the only record of the original state: keep it to give the interface back.
    """
    check_ifname(ifname)
    check_ifname(new_name)
    fd = _netns_fd(to_netns)
    try:
        def take(ip: IPRoute) -> Borrowed:
            idx, mac, old_mtu, up = _state(ip, ifname)
            try:
                ip.link("set", index=idx, state="down")
                ip.link("set", index=idx, net_ns_fd=fd, ifname=new_name)
            except NetlinkError as e:
                raise LinkError(f"move {ifname} into {to_netns} as {new_name}: {e}") from e
            return Borrowed(ifname, mac, old_mtu, up, from_netns)

        got = in_netns(from_netns, take)
    finally:
        os.close(fd)

    def plug(ip: IPRoute) -> None:
        ensure_up(ip, new_name, mtu, master=master)

    in_netns(to_netns, plug)
    return got


def give_back(b: Borrowed, cur_name: str, cur_netns: str) -> bool:
    """Return a taken interface to its netns, with its name, MAC, MTU and up state.

    False if it no longer exists where it was taken to (its owner removed it).
    """
    fd = _netns_fd(b.netns)
    try:
        def release(ip: IPRoute) -> bool:
            idx = index(ip, cur_name)
            if idx is None:
                return False
            try:
                ip.link("set", index=idx, state="down")
                ip.link("set", index=idx, master=0)
                ip.link("set", index=idx, net_ns_fd=fd, ifname=b.name)
            except NetlinkError as e:
                raise LinkError(f"give {cur_name} back to {b.netns or 'the device'} "
                                f"as {b.name}: {e}") from e
            return True

        moved = in_netns(cur_netns, release)
    finally:
        os.close(fd)
    if not moved:
        return False

    def restore(ip: IPRoute) -> None:
        idx, mac, mtu, _ = _state(ip, b.name)
        changes: dict[str, object] = {}
        if mac != b.mac:
            changes["address"] = b.mac
        if mtu != b.mtu:
            changes["mtu"] = b.mtu
        if changes:
            ip.link("set", index=idx, **changes)
        if b.up:
            ip.link("set", index=idx, state="up")

    in_netns(b.netns, restore)
    return True
