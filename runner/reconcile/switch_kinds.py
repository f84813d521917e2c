"""The item kinds of switch NIs (pure values; see items.py and docs/switch-ni.md).

    rank  kind       object                                     lives in / depends on
    3     vlan       <uplink>.<id>: VLAN N of an uplink (device) the uplink (external)
    5     shim       nrs<hex>: the device's macvlan of an uplink the uplink (external)
    11    swport     mv<hex>: an app's macvlan of the segment    the NI's netns, the uplink
                     (in the NI netns)                           (or its VLAN link)
    12    porttable  table netdev|bridge ap<hex> in the NI:      the NI's netns, the app's
                     the app's cross-connect and learning        plug and port

The uplink itself is never written: it is an external item the others depend on.
A VLAN link and a shim belong to the device (owner ""): shared by the switch NIs
of an uplink (of a VLAN), they exist while one needs them and go with the last.
Besides these, a switch NI is made of the common kinds: state dir, netns, sysctls,
an empty config dir, its task (no service), a plug per app (a veth, on br0 only
when air-gapped) and, air-gapped, a bridge without address.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from runner.reconcile.items import Change, Item
from runner.reconcile.kinds import NftTable, netns_id, uplink_id


def vlan_id(name: str) -> str:
    return f"{VlanLink.KIND}:{name}"


def shim_id(name: str) -> str:
    return f"{ShimLink.KIND}:{name}"


def swport_id(netns: str, name: str) -> str:
    return f"{SwitchPort.KIND}:{netns}/{name}"


@dataclass(frozen=True)
class VlanLink(Item):
    """An 802.1Q sub-interface of an uplink in the device netns, up, with the uplink's MTU."""

    KIND = "vlan"
    RANK = 3
    RECREATE_ON = ("parent", "vlan")
    name: str
    parent: str  # the uplink's interface
    uplink: str  # the uplink's name (its external item)
    vlan: int
    mtu: int

    @property
    def key(self) -> str:
        return self.name

    def deps(self) -> tuple[str, ...]:
        return (uplink_id(self.uplink),)

    def describe(self) -> str:
        return f"vlan {self.name}: VLAN {self.vlan} of {self.parent}"

    def changes(self, old: Any) -> list[Change]:
        return [Change("MTU", f"mtu {old.mtu} -> {self.mtu}")] if old.mtu != self.mtu else []


@dataclass(frozen=True)
class ShimLink(Item):
    """The device's macvlan on an uplink with untagged switch NIs: a fixed MAC, no
    address (`addresses` is what a read finds: it must be none), sysctls that keep it
    talking to the apps only (ARP answered only for hosts routed to it, never asked: no
    broadcast solicitation), IPv6 off; a permanent neighbour entry per routed app (see
    runner.plan.switch)."""

    KIND = "shim"
    RANK = 5
    RECREATE_ON = ("parent", "mac")
    name: str
    parent: str  # the uplink's interface
    uplink: str  # the uplink's name (its external item)
    mac: str
    mtu: int
    addresses: tuple[IPv4Interface, ...]
    sysctls: tuple[tuple[str, str], ...]  # path under /proc/sys -> value
    neighbours: tuple[tuple[IPv4Address, str], ...] = ()  # (IP, MAC) of routed apps

    @property
    def key(self) -> str:
        return self.name

    def deps(self) -> tuple[str, ...]:
        return (uplink_id(self.uplink),)

    def describe(self) -> str:
        return f"shim {self.name} on {self.parent} ({self.mac})"

    def changes(self, old: Any) -> list[Change]:
        out = []
        if old.addresses != self.addresses:
            out.append(Change("switch shim", "addresses " + (", ".join(map(str, old.addresses))
                                                            or "(none)") + " -> "
                              + (", ".join(map(str, self.addresses)) or "(none)")))
        if old.mtu != self.mtu:
            out.append(Change("MTU", f"mtu {old.mtu} -> {self.mtu}"))
        if old.sysctls != self.sysctls:
            out.append(Change("switch shim", "sysctls"))
        before, now = set(old.neighbours), set(self.neighbours)
        out += [Change("switch shim", f"- neighbour {ip} at {mac}") for ip, mac in
                sorted(before - now)]
        out += [Change("switch shim", f"+ neighbour {ip} at {mac}") for ip, mac in
                sorted(now - before)]
        return out


@dataclass(frozen=True)
class SwitchPort(Item):
    """An app's macvlan of the segment's lower device (bridge mode, the app's MAC), made
    in the device netns straight into the NI netns, up with allmulticast."""

    KIND = "swport"
    RANK = 11
    RECREATE_ON = ("lower", "mac")
    ni: str
    netns: str  # the NI's
    name: str  # mv<hex>
    lower: str  # in the device netns: the uplink's interface or its VLAN link
    lower_item: str  # the id of the lower's item (the uplink, or the VLAN link)
    mac: str
    mtu: int

    @property
    def key(self) -> str:
        return f"{self.netns}/{self.name}"

    def deps(self) -> tuple[str, ...]:
        return (netns_id(self.netns), self.lower_item)

    @property
    def inside(self) -> str | None:
        return netns_id(self.netns)  # the kernel deletes it with the netns

    def describe(self) -> str:
        return f"port {self.name} in {self.netns}: macvlan of {self.lower} ({self.mac})"

    def changes(self, old: Any) -> list[Change]:
        return [Change("MTU", f"mtu {old.mtu} -> {self.mtu}")] if old.mtu != self.mtu else []


@dataclass(frozen=True)
class PortTable(NftTable):
    """An app port's nft table (runner.render.switch.port_table): made after the links
    it names, and made again with them (a netdev chain is bound to its devices)."""

    KIND = "porttable"
    RANK = 12
    links: tuple[str, ...] = ()  # ids of the plug and the port it cross-connects
    # nft commands that put back what its sets learned before (a table made anew after
    # its port was lost starts empty): carried along, never a reason for a change
    seed: str = field(default="", compare=False)

    def deps(self) -> tuple[str, ...]:
        return (*super().deps(), *self.links)

    def changes(self, old: Any) -> list[Change]:
        return [Change("apps", "port table changed")]
