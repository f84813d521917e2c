"""The attach procedure's Effects over the drivers, with the supervisor's part as hooks.

The veth, the DHCP exchange, the address and the release are driver work and
live here; storing the record, writing the NI's dhcp-hosts with the pin and
reloading dnsmasq, and the port maps belong to the supervisor (reconciler
items), which passes them in as `NiHooks`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

from pyroute2.netlink.exceptions import NetlinkError

from runner.cni.attachments import CniAttachment
from runner.dhcp.client import Lease
from runner.drivers import dhcp, links
from runner.errors import NirunnerError
from runner.net import names


class InterfaceExists(NirunnerError):
    """The container's netns has an interface of the requested name already (CNI: error)."""


class NiHooks(Protocol):
    def pin(self, r: CniAttachment) -> None:
        """Store r and its pinned dhcp-hosts line; dnsmasq has re-read the file on return."""

    def unpin(self, r: CniAttachment) -> None:
        ...

    def map_ports(self, r: CniAttachment) -> None:
        ...

    def unmap_ports(self, r: CniAttachment) -> None:
        ...


@dataclass
class DriverEffects:
    hooks: NiHooks
    ni_netns: str  # name of the NI's netns (nr-<ni>)
    mtu: int
    lease_timeout: float = 10.0

    def plug(self, r: CniAttachment) -> None:
        if not os.path.exists(r.netns):
            raise NirunnerError(f"no network namespace at {r.netns}")
        if links.in_netns(r.netns, lambda ip: links.index(ip, r.key.ifname)) is not None:
            raise InterfaceExists(f"{r.netns} has an interface {r.key.ifname} already")

        def ni_side(ip: links.IPRoute) -> None:
            fd = os.open(r.netns, os.O_RDONLY)
            try:
                ip.link("add", ifname=r.host_ifname, kind="veth", mtu=self.mtu,
                        peer={"ifname": r.key.ifname, "net_ns_fd": fd, "address": r.mac,
                              "mtu": self.mtu})
            except NetlinkError as e:
                raise links.LinkError(f"veth {r.host_ifname} <-> {r.netns}/{r.key.ifname}: "
                                      f"{e}") from e
            finally:
                os.close(fd)
            links.ensure_up(ip, r.host_ifname, self.mtu, master=names.BRIDGE_IF)

        def container_side(ip: links.IPRoute) -> None:
            links.ensure_up(ip, "lo")
            links.ensure_up(ip, r.key.ifname)

        links.in_netns(self.ni_netns, ni_side)
        links.in_netns(r.netns, container_side)

    def unplug(self, r: CniAttachment) -> None:
        links.delete(r.host_ifname, self.ni_netns)  # takes the container's end with it

    def lease(self, r: CniAttachment) -> Lease:
        return dhcp.acquire(r.netns, r.key.ifname, r.mac, r.hostname, self.lease_timeout)

    def configure(self, r: CniAttachment, lease: Lease) -> None:
        dhcp.configure(r.netns, r.key.ifname, lease)

    def pin(self, r: CniAttachment) -> Lease:
        assert r.address is not None
        self.hooks.pin(r)
        return dhcp.acquire(r.netns, r.key.ifname, r.mac, r.hostname, self.lease_timeout,
                            reboot=r.address.ip)

    def unpin(self, r: CniAttachment) -> None:
        self.hooks.unpin(r)

    def map_ports(self, r: CniAttachment) -> None:
        self.hooks.map_ports(r)

    def unmap_ports(self, r: CniAttachment) -> None:
        self.hooks.unmap_ports(r)

    def release(self, r: CniAttachment) -> None:
        if r.address is None or r.server is None:
            return
        dhcp.release_from_ni(self.ni_netns, names.BRIDGE_IF,
                             Lease(r.address, r.server, "", 0), r.mac)
