"""Readiness on real packets, from inside lab namespaces: a DHCP answer on the NI's
bridge, a lease taken and configured (in-process: runner.drivers.dhcp), a TCP
connection through the NAT.

Everything here runs in a thread that has entered the app's netns (setns(2)
changes only the calling thread; children it spawns inherit that netns), so a
check costs no `ip netns exec` and the same check is used for nirunner, the
floor and CNI.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from pyroute2 import IPRoute

from runner.drivers import dhcp
from runner.drivers import netns as ns
from runner.lab.topology import INET_IP

T = TypeVar("T")
SO_BINDTODEVICE = 25
INET_PORT = 7000


def in_netns(netns: str, fn: Callable[[], T]) -> T:
    """fn() in a thread that entered /run/netns/<netns>."""
    return ns.run_in(netns, fn)


def _mac(ifname: str) -> bytes:
    with IPRoute() as ip:
        idx = ip.link_lookup(ifname=ifname)[0]
        addr = ip.get_links(idx)[0].get_attr("IFLA_ADDRESS")
    return bytes.fromhex(addr.replace(":", ""))


def _discover(xid: int, mac: bytes) -> bytes:
    # BOOTREQUEST, ethernet, broadcast flag (so the OFFER comes to 255.255.255.255)
    head = struct.pack("!BBBBIHHIIII", 1, 1, 6, 0, xid, 0, 0x8000, 0, 0, 0, 0)
    chaddr = mac + b"\0" * 10
    return (head + chaddr + b"\0" * 192 + b"\x63\x82\x53\x63"
            + b"\x35\x01\x01" + b"\x37\x03\x01\x03\x06" + b"\xff")


def _is_offer(pkt: bytes, xid: int) -> bool:
    if len(pkt) < 244 or pkt[0] != 2 or struct.unpack("!I", pkt[4:8])[0] != xid:
        return False
    opts = pkt[240:]
    i = 0
    while i + 1 < len(opts) and opts[i] != 255:
        if opts[i] == 0:
            i += 1
            continue
        code, length = opts[i], opts[i + 1]
        if code == 53 and length == 1:
            return opts[i + 2] == 2
        i += 2 + length
    return False


def dhcp_offer(ifname: str, deadline: float, every: float = 0.01) -> float:
    """Send DHCPDISCOVER every `every` seconds until an OFFER comes; its time."""
    mac = _mac(ifname)
    xid = random.getrandbits(32)
    pkt = _discover(xid, mac)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, ifname.encode())
        s.bind(("0.0.0.0", 68))
        while time.monotonic() < deadline:
            try:
                s.sendto(pkt, ("255.255.255.255", 67))
            except OSError:
                pass  # the link may not be up yet
            end = time.monotonic() + every
            while (left := end - time.monotonic()) > 0:
                s.settimeout(left)
                try:
                    data = s.recv(1500)
                except (TimeoutError, OSError):
                    break
                if _is_offer(data, xid):
                    return time.monotonic()
        raise TimeoutError(f"no DHCP offer on {ifname}")
    finally:
        s.close()


def take_lease(app_netns: str, ifname: str = "eth0", hostname: str = "app",
               timeout: float = 15.0) -> str:
    """A whole DHCP exchange (DISCOVER, OFFER, REQUEST, ACK), then the lease put on the
    interface with its default route, as a DHCP client would; in-process
    (runner.drivers.dhcp, from any thread). It replaced busybox udhcpc and the lab's
    script, whose process start-ups cost ~90 ms that every side of a check paid alike."""
    mac = ":".join(f"{b:02x}" for b in in_netns(app_netns, lambda: _mac(ifname)))
    lease = dhcp.acquire(app_netns, ifname, mac, hostname, timeout=max(1.0, timeout))
    dhcp.configure(app_netns, ifname, lease.address, lease.gateway, lease.mtu)
    return str(lease.address.ip)


def tcp_works(host: str, port: int, deadline: float, every: float = 0.01) -> float:
    """Connect (and get the lab server's reply) until it works; its time."""
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5) as c:
                c.settimeout(1.0)
                c.sendall(b"x\n")
                if c.recv(256):
                    return time.monotonic()
        except OSError as e:
            last = e
        time.sleep(every)
    raise TimeoutError(f"no TCP to {host}:{port}: {last}")


@dataclass
class Ready:
    app: str
    offer: float = 0.0  # monotonic times
    lease: float = 0.0
    tcp: float = 0.0
    ip: str = ""


class NotReady(RuntimeError):
    pass


def check_app(app_netns: str, deadline: float, ifname: str = "eth0") -> Ready:
    """DHCP answer, lease, TCP through the NAT to the inet host: all from the app."""
    def body() -> Ready:
        r = Ready(app_netns)
        with IPRoute() as ip:
            if not ip.link_lookup(ifname=ifname):
                have = [str(x.get_attr("IFLA_IFNAME")) for x in ip.get_links()]
                raise NotReady(f"{app_netns}: no {ifname} (links: {', '.join(have)})")
        r.offer = dhcp_offer(ifname, deadline)
        r.ip = take_lease(app_netns, ifname, "app", deadline - time.monotonic())
        r.lease = time.monotonic()
        r.tcp = tcp_works(INET_IP, INET_PORT, deadline)
        return r

    try:
        return in_netns(app_netns, body)
    except NotReady:
        raise
    except Exception as e:
        raise NotReady(f"{app_netns}: {type(e).__name__}: {e}") from e


def check_all(apps: Iterable[str], deadline: float, workers: int = 16) -> list[Ready]:
    apps = list(apps)
    with ThreadPoolExecutor(min(workers, max(1, len(apps)))) as pool:
        return list(pool.map(lambda a: check_app(a, deadline), apps))


def plug(ni_netns: str, app_netns: str, host_if: str, mac: str, mtu: int = 1500,
         bridge: str = "br0") -> None:
    """What `nirunner attach` does, by hand (for the floor and CNI): a veth from the
    app into the NI's bridge, both ends up."""
    def ni_side() -> None:
        fd = os.open(ns.path(app_netns), os.O_RDONLY)
        try:
            with IPRoute() as ip:
                ip.link("add", ifname=host_if, kind="veth", mtu=mtu,
                        peer={"ifname": "eth0", "net_ns_fd": fd, "address": mac, "mtu": mtu})
                idx = ip.link_lookup(ifname=host_if)[0]
                br = ip.link_lookup(ifname=bridge)[0]
                ip.link("set", index=idx, master=br, state="up")
        finally:
            os.close(fd)

    def app_side() -> None:
        with IPRoute() as ip:
            for name in ("lo", "eth0"):
                ip.link("set", index=ip.link_lookup(ifname=name)[0], state="up")

    in_netns(ni_netns, ni_side)
    in_netns(app_netns, app_side)
