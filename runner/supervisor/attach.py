"""Plug an app's network namespace into an NI: a veth from the app netns to br0.

The app end gets a stable MAC (derived from the NI, netns and ifname unless
given), so a re-plugged app gets its old DHCP lease back.
"""

from __future__ import annotations

import hashlib
import os
import re

from pyroute2.netlink.exceptions import NetlinkError

from runner.drivers import links
from runner.errors import NirunnerError
from runner.net import names
from runner.supervisor.store import Attachment

_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


class AttachError(NirunnerError):
    pass


def _mac_for(key: str) -> str:
    h = hashlib.sha256(key.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, h[0], h[1], h[2], h[3], h[4]))


def plug(ni: str, netns: str, ifname: str, mac: str, hostname: str, mtu: int) -> Attachment:
    if not os.path.exists(netns):
        raise AttachError(f"attach to NI {ni}: no network namespace at {netns}")
    names.check_ifname(ifname)
    key = f"{ni}/{os.path.realpath(netns)}/{ifname}"
    mac = (mac or _mac_for(key)).lower()
    if not _MAC.fullmatch(mac) or int(mac[:2], 16) & 1:
        raise AttachError(f"attach to NI {ni}: {mac!r} is not a unicast MAC address")
    if hostname and not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", hostname):
        raise AttachError(f"attach to NI {ni}: {hostname!r} is not a valid hostname")
    a = Attachment(ni=ni, netns=netns, ifname=ifname, host_ifname=names.app_if(key),
                   mac=mac, hostname=hostname)
    ensure(a, mtu)
    return a


def ensure(a: Attachment, mtu: int) -> None:
    """Create the veth if missing; plug it into br0; both ends up. Idempotent."""
    ni_ns = names.netns(a.ni)
    if not os.path.exists(a.netns) or not os.path.exists(f"/run/netns/{ni_ns}"):
        return

    def ni_side(ip: links.IPRoute) -> None:
        if links.index(ip, a.host_ifname) is None:
            fd = os.open(a.netns, os.O_RDONLY)
            try:
                ip.link("add", ifname=a.host_ifname, kind="veth", mtu=mtu,
                        peer={"ifname": a.ifname, "net_ns_fd": fd, "address": a.mac,
                              "mtu": mtu})
            except NetlinkError as e:
                raise AttachError(
                    f"attach {a.netns} {a.ifname} to NI {a.ni}: {e}") from e
            finally:
                os.close(fd)
        links.ensure_up(ip, a.host_ifname, mtu, master=names.BRIDGE_IF)

    def app_side(ip: links.IPRoute) -> None:
        links.ensure_up(ip, "lo")
        links.ensure_up(ip, a.ifname)

    links.in_netns(ni_ns, ni_side)
    links.in_netns(a.netns, app_side)


def unplug(a: Attachment) -> None:
    links.delete(a.host_ifname, names.netns(a.ni))
