"""DHCP on the wire: take, configure and give back an attachment's lease.

How an attachment gets its address (CNI ADD, `attach --netns`): the supervisor
runs the exchange itself from inside the container's netns, on a packet socket
bound to the container's interface (the interface has no address yet, so the
client speaks in whole Ethernet frames; no DHCP client program is needed in
the container or on the device). It then puts the address, the default route
and the MTU on the interface by netlink, and pins the lease: a reservation
`mac,ip,name,infinite` in the NI's dhcp-hosts file, dnsmasq reloaded, and one
more REQUEST, whose ACK turns the lease infinite. The container keeps a static
address, nothing has to renew, and dnsmasq's lease file (and so DNS and
`status`) holds it for as long as it is attached. On detach the reservation
goes and the lease is released from the NI's side (`release_from_ni`), which
works also when the container's netns is gone.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

from pyroute2.netlink.exceptions import NetlinkError

from runner.dhcp import client, packet
from runner.dhcp.client import Exchange, Lease
from runner.dhcp.packet import DhcpError
from runner.drivers import files, links
from runner.drivers import netns as ns

ETH_P_IP = 0x0800
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)


class PacketSocket:
    """Raw IPv4 frames on one interface of a netns (AF_PACKET, CAP_NET_RAW).

    The socket is made by a thread inside the netns and stays bound to it, so
    the caller's thread never leaves its own netns.

    Each change of a packet socket's protocol hook waits for an RCU grace period in
    the kernel (synchronize_net: 8-16 ms here). Made with protocol 0, the socket gets
    its hook once, at bind, on that interface only (0.07 ms, against 8 ms when made
    with ETH_P_IP and then re-bound); closing it always waits (12-16 ms), so the close
    is left to a thread of its own and the caller goes on.
    """

    def __init__(self, ifname: str, netns: str | None = None) -> None:
        def make() -> socket.socket:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            try:
                s.bind((ifname, ETH_P_IP))
            except OSError:
                s.close()
                raise
            return s

        try:
            self.sock = ns.run_in(netns, make) if netns else make()
        except OSError as e:
            raise DhcpError(f"packet socket on {netns or 'this netns'}/{ifname}: {e}") from e
        self.name = f"{netns or ''}/{ifname}"

    def send(self, frame: bytes) -> None:
        self.sock.send(frame)

    def recv(self, timeout: float) -> bytes | None:
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        return self.sock.recv(65535) if ready else None

    def close(self) -> None:
        threading.Thread(target=self.sock.close, name="close-packet-socket",
                         daemon=True).start()

    def __enter__(self) -> PacketSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FdTransport:
    """Frames through a file descriptor: a tap's /dev/net/tun fd (IFF_TAP | IFF_NO_PI)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, frame: bytes) -> None:
        os.write(self.fd, frame)

    def recv(self, timeout: float) -> bytes | None:
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        return os.read(self.fd, 65535) if ready else None


def run(ex: Exchange, send: Callable[[bytes], None], recv: Callable[[float], bytes | None],
        timeout: float, where: str = "") -> Lease:
    """Drive an exchange over a frame transport until it is bound; DhcpError if not."""
    end = time.monotonic() + timeout
    for frame in ex.start(time.monotonic()):
        send(frame)
    while not ex.done:
        now = time.monotonic()
        if now >= end:
            raise DhcpError(f"DHCP on {where or ex.mac}: no lease within {timeout:g}s "
                            f"(state {ex.state})")
        raw = recv(min(ex.deadline, end) - now)
        out = ex.on_frame(raw, time.monotonic()) if raw else ex.on_timer(time.monotonic())
        for frame in out:
            send(frame)
    if ex.lease is None:
        raise DhcpError(f"DHCP on {where or ex.mac}: {ex.error}")
    return ex.lease


def acquire(netns: str, ifname: str, mac: str, hostname: str = "", timeout: float = 10.0,
            reboot: IPv4Address | None = None) -> Lease:
    """A lease for `mac` from the DHCP server on `ifname`'s segment (the NI's dnsmasq).

    With `reboot`, ask for that address again (after a reservation changed
    its lease time) instead of a new DISCOVER.
    """
    ex = Exchange(mac=mac, xid=int.from_bytes(os.urandom(4), "big"), hostname=hostname,
                  reboot=reboot)
    with PacketSocket(ifname, netns) as s:
        return run(ex, s.send, s.recv, timeout, f"{netns}/{ifname}")


def configure(netns: str, ifname: str, address: IPv4Interface, gateway: IPv4Address | None,
              mtu: int | None) -> None:
    """A lease as static configuration: exactly this address, the default route via
    `gateway` (none if None), the MTU; the interface up. Idempotent."""
    def body(ip: links.IPRoute) -> None:
        links.ensure_up(ip, "lo")
        links.ensure_up(ip, ifname, mtu, addresses=(address,))
        idx = links.index(ip, ifname)
        if gateway is not None and idx is not None:
            links.call(f"set default route via {gateway} on {ifname}", ip.route, "replace",
                       dst="0.0.0.0/0", gateway=str(gateway), oif=idx)

    links.in_netns(netns, body)


@dataclass(frozen=True)
class Configured:
    """An interface as `configure` leaves it, read back."""

    mac: str
    addresses: tuple[IPv4Interface, ...]
    gateway: IPv4Address | None  # of the main table's default route through it
    mtu: int
    up: bool


def read_configured(netns: str, ifname: str) -> Configured | None:
    """The interface's MAC, addresses, default route and MTU; None if it (or the netns)
    is not there."""
    def body(ip: links.IPRoute) -> Configured | None:
        link = links.get(ip, ifname)
        if link is None:
            return None
        gateway = None
        for r in links.call(f"read routes of {ifname}", ip.get_routes, family=socket.AF_INET,
                            table=254):
            if r["dst_len"] == 0 and r.get_attr("RTA_OIF") == link.index:
                gw = r.get_attr("RTA_GATEWAY")
                gateway = IPv4Address(gw) if gw else None
        return Configured(link.mac.lower(), link.addresses, gateway, link.mtu, link.up)

    try:
        return links.in_netns(netns, body)
    except ns.NoSuchNetns:
        return None


def pin(netns: str, ifname: str, mac: str, address: IPv4Interface, hostname: str = "",
        timeout: float = 3.0) -> Lease:
    """Ask the NI's dnsmasq for `address` again until its ACK says "forever".

    The pinned dhcp-hosts line was written and dnsmasq signalled just before;
    it re-reads the file asynchronously, so an ACK with the old lease time is
    asked again (bounded by `timeout`).
    """
    end = time.monotonic() + timeout
    while True:
        lease = acquire(netns, ifname, mac, hostname, max(0.5, end - time.monotonic()),
                        reboot=address.ip)
        if lease.address.ip != address.ip:
            raise DhcpError(f"pin {address.ip} in {netns}/{ifname}: dnsmasq answered "
                            f"{lease.address.ip}")
        if lease.infinite:
            return lease
        if time.monotonic() >= end:
            raise DhcpError(f"pin {address.ip} in {netns}/{ifname}: dnsmasq still gives it for "
                            f"{lease.lease_time}s, not forever, after {timeout:g}s")
        time.sleep(0.05)


def release_from_client(netns: str, ifname: str, mac: str, lease: Lease) -> None:
    """DHCPRELEASE from the container's own interface (needs its netns)."""
    frame = client.release_frame(lease, mac, int.from_bytes(os.urandom(4), "big"))
    with PacketSocket(ifname, netns) as s:
        s.send(frame)


def release_from_ni(ni_netns: str, bridge: str, lease: Lease, mac: str) -> None:
    """DHCPRELEASE from inside the NI's netns, as dnsmasq's own dhcp_release does it.

    A UDP datagram to the server's address on the bridge, with the socket bound
    to the bridge: it loops back locally, and the kernel reports the bridge as
    its incoming interface, so dnsmasq takes it as a release from that segment.
    Works when the container and its netns are gone.
    """
    payload = packet.encode(client.release(lease, mac, int.from_bytes(os.urandom(4), "big")))

    def body() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, bridge.encode())
            s.sendto(payload, (str(lease.server), packet.SERVER_PORT))

    try:
        ns.run_in(ni_netns, body)
    except OSError as e:
        raise DhcpError(f"release {lease.address.ip} in {ni_netns}: {e}") from e


def forget_lease(lease_file: str, mac: str, ip: IPv4Address) -> bool:
    """Remove a lease from dnsmasq's lease file while dnsmasq is not running (it reads
    the file at start; a released pinned lease would otherwise stay forever)."""
    path = Path(lease_file)
    try:
        lines = path.read_text().splitlines(keepends=True)
    except FileNotFoundError:
        return False
    keep = [x for x in lines if x.split()[1:3] != [mac, str(ip)]]
    return len(keep) != len(lines) and files.write_atomic(path, "".join(keep), durable=False)


def deconfigure(netns: str, ifname: str) -> None:
    """Remove the lease's address from the interface (the netns may be gone)."""
    if not os.path.exists(netns if netns.startswith("/") else ns.path(netns)):
        return

    def body(ip: links.IPRoute) -> None:
        idx = links.index(ip, ifname)
        if idx is not None:
            with contextlib.suppress(NetlinkError):
                ip.flush_addr(index=idx, family=socket.AF_INET)

    links.in_netns(netns, body)
