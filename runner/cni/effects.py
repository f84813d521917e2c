"""The effects a workload attachment needs beyond its items, over the drivers.

Before an attachment's address can be an item, the supervisor takes it: a DHCP
exchange from inside the container's netns over its freshly plugged veth. After
a detach (or a failed attach) the lease is released from the NI's side, which
works also when the container's netns is gone (and, with the NI's dnsmasq not
running, taken out of its lease file). And it looks up links: whether
a container's netns has an interface of a name, what a device interface is.
The supervisor's side (runner/supervisor/workloads.py) takes these as an
`Effects` value, so its logic is tested with fakes.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface
from typing import Protocol

from runner.dhcp.client import Lease
from runner.drivers import dhcp, links
from runner.drivers import netns as ns
from runner.drivers.links import LinkInfo
from runner.net import names


class Effects(Protocol):
    def lease(self, netns: str, ifname: str, mac: str, hostname: str,
              timeout: float) -> Lease:
        """A DHCP lease for `mac` from the DHCP server on `ifname`'s segment (DhcpError)."""
        ...

    def release(self, ni_netns: str, address: IPv4Interface, server: IPv4Address,
                mac: str) -> None:
        """DHCPRELEASE of `address` for `mac`, sent inside the NI's netns on its bridge."""

    def forget(self, lease_file: str, mac: str, ip: IPv4Address) -> None:
        """Remove a lease from dnsmasq's lease file (only while its dnsmasq is not running)."""

    def link(self, netns: str | None, ifname: str) -> LinkInfo | None:
        """The link `ifname` in a netns (a name or a path; None: the device's), or None."""
        ...


class DriverEffects:
    def lease(self, netns: str, ifname: str, mac: str, hostname: str,
              timeout: float) -> Lease:
        return dhcp.acquire(netns, ifname, mac, hostname, timeout)

    def release(self, ni_netns: str, address: IPv4Interface, server: IPv4Address,
                mac: str) -> None:
        dhcp.release_from_ni(ni_netns, names.BRIDGE_IF, Lease(address, server, "", 0), mac)

    def forget(self, lease_file: str, mac: str, ip: IPv4Address) -> None:
        dhcp.forget_lease(lease_file, mac, ip)

    def link(self, netns: str | None, ifname: str) -> LinkInfo | None:
        try:
            return links.in_netns(netns, lambda ip: links.get(ip, ifname))
        except ns.NoSuchNetns:
            return None
