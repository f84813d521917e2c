"""Links on an uplink's layer-2 segment (switch NIs): macvlans and 802.1Q VLAN links.

The uplink is only ever named as the lower device of these; nothing of it is
written. A macvlan can be made in the device netns straight into another netns
(an app's port goes into its NI at birth, never visible in the device netns).
Every netlink error is raised as a LinkError naming the operation and the object.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from ipaddress import IPv4Address

from pyroute2 import IPRoute

from runner.drivers import links
from runner.drivers import netns as ns
from runner.drivers.links import LinkError, call, index

IFF_UP, IFF_ALLMULTI = 0x1, 0x200
NUD_PERMANENT = 0x80
AF_INET = 2


@dataclass(frozen=True)
class SubLink:
    """A macvlan or VLAN link as read back."""

    name: str
    kind: str  # "macvlan", "vlan", or whatever else holds the name
    mac: str
    mtu: int
    up: bool
    allmulti: bool
    lower: int | None  # the lower device's index (in the netns it lives in)
    mode: str  # macvlan: "bridge", ...; "" otherwise
    vlan: int | None  # vlan: its id


def lower_index(ip: IPRoute, lower: str, what: str) -> int:
    idx = index(ip, lower)
    if idx is None:
        raise LinkError(f"{what}{ns.where()}: its lower device {lower} does not exist")
    return idx


def add_macvlan(ip: IPRoute, name: str, lower: str, mac: str, mtu: int,
                into: str | None = None) -> None:
    """A bridge-mode macvlan `name` of `lower` (here) with `mac`; `into`: the netns (name
    or path) it is made in, else here."""
    what = f"create macvlan {name} of {lower}" + (f" in {into}" if into else "")
    spec: dict[str, object] = {"ifname": name, "kind": "macvlan",
                               "link": lower_index(ip, lower, what),
                               "macvlan_mode": "bridge", "address": mac, "mtu": mtu}
    fd = os.open(ns.path(into), os.O_RDONLY) if into else None
    try:
        if fd is not None:
            spec["net_ns_fd"] = fd
        call(what, ip.link, "add", **spec)
    finally:
        if fd is not None:
            os.close(fd)


def add_vlan(ip: IPRoute, name: str, parent: str, vlan: int, mtu: int) -> None:
    what = f"create vlan {name} (VLAN {vlan} of {parent})"
    call(what, ip.link, "add", ifname=name, kind="vlan", link=lower_index(ip, parent, what),
         vlan_id=vlan, mtu=mtu)


def set_allmulticast(ip: IPRoute, name: str) -> None:
    idx = lower_index(ip, name, f"set allmulticast on {name}")
    call(f"set allmulticast on {name}", ip.link, "set", index=idx, flags=IFF_ALLMULTI,
         change=IFF_ALLMULTI)


def read(ip: IPRoute, name: str) -> SubLink | None:
    idx = index(ip, name)
    if idx is None:
        return None
    link = call(f"read link {name}", ip.get_links, idx)[0]
    info = link.get_attr("IFLA_LINKINFO")
    kind = str(info.get_attr("IFLA_INFO_KIND") or "") if info else ""
    data = info.get_attr("IFLA_INFO_DATA") if info else None
    mode = str(data.get_attr("IFLA_MACVLAN_MODE") or "") if data and kind == "macvlan" else ""
    vlan = data.get_attr("IFLA_VLAN_ID") if data and kind == "vlan" else None
    flags = int(link["flags"])
    return SubLink(name=name, kind=kind, mac=str(link.get_attr("IFLA_ADDRESS") or "").lower(),
                   mtu=int(link.get_attr("IFLA_MTU") or 0), up=bool(flags & IFF_UP),
                   allmulti=bool(flags & IFF_ALLMULTI), lower=link.get_attr("IFLA_LINK"),
                   mode=mode, vlan=int(vlan) if vlan is not None else None)


def lower_of(lower: str) -> int | None:
    """The index of `lower` in the device netns (the caller's), None if it is not there."""
    return links.in_netns(None, lambda ip: index(ip, lower))


Neighbour = tuple[IPv4Address, str]  # (IP, MAC)


def permanent_neighbours(ip: IPRoute, name: str) -> set[Neighbour]:
    """The permanent IPv4 neighbour entries of link `name` (here)."""
    idx = lower_index(ip, name, f"read neighbours of {name}")
    found = call(f"read neighbours of {name}", ip.get_neighbours, family=AF_INET, ifindex=idx)
    return {(IPv4Address(n.get_attr("NDA_DST")), str(n.get_attr("NDA_LLADDR") or "").lower())
            for n in found if n["state"] & NUD_PERMANENT and n["ifindex"] == idx}


def sync_neighbours(ip: IPRoute, name: str, wanted: Collection[Neighbour]) -> None:
    """Exactly `wanted` as the permanent neighbour entries of link `name`."""
    idx = lower_index(ip, name, f"set neighbours of {name}")
    have = permanent_neighbours(ip, name)
    for addr, mac in sorted(set(wanted) - have):
        call(f"add neighbour {addr} at {mac} on {name}", ip.neigh, "replace", dst=str(addr),
             lladdr=mac, ifindex=idx, state=NUD_PERMANENT, family=AF_INET)
    stale = {addr for addr, _ in have} - {addr for addr, _ in wanted}
    for addr in sorted(stale):
        call(f"remove neighbour {addr} from {name}", ip.neigh, "del", dst=str(addr),
             ifindex=idx, family=AF_INET)
