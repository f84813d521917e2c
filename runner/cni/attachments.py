"""The supervisor's side of CNI attachments, as pure values and rules.

What an attachment made through CNI is (a record kept in the desired state),
the names and MAC it gets, whether its port mappings may be had, what it adds
to its NI (pinned dhcp-hosts lines, port maps), which ones a GC removes, and
how its intended state differs from an observed one. No I/O here: the
procedure (runner/cni/procedure.py) and the drivers do the effects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from runner.cni.api import AttachmentKey, PortMapping
from runner.model.types import NetworkInstance, NIType, PortMap, Protocol
from runner.net import names
from runner.render.dnsmasq import pinned_host


@dataclass(frozen=True)
class CniAttachment:
    """One attachment made through CNI, as the supervisor stores it."""

    ni: str
    key: AttachmentKey
    netns: str
    mac: str
    host_ifname: str
    hostname: str = ""
    address: IPv4Interface | None = None  # from the pinned lease
    server: IPv4Address | None = None  # the DHCP server that gave it (the NI's gateway)
    port_mappings: tuple[PortMapping, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "ni": self.ni, "network": self.key.network, "containerId": self.key.container_id,
            "ifname": self.key.ifname, "netns": self.netns, "mac": self.mac,
            "hostIfname": self.host_ifname, "hostname": self.hostname,
            "address": str(self.address) if self.address else "",
            "server": str(self.server) if self.server else "",
            "portMappings": [{"hostPort": p.host_port, "containerPort": p.container_port,
                              "protocol": p.protocol, "hostIP": p.host_ip}
                             for p in self.port_mappings],
        }

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> CniAttachment:
        return CniAttachment(
            ni=d["ni"], key=AttachmentKey(d["network"], d["containerId"], d["ifname"]),
            netns=d["netns"], mac=d["mac"], host_ifname=d["hostIfname"],
            hostname=d.get("hostname", ""),
            address=IPv4Interface(d["address"]) if d.get("address") else None,
            server=IPv4Address(d["server"]) if d.get("server") else None,
            port_mappings=tuple(PortMapping(p["hostPort"], p["containerPort"], p["protocol"],
                                            p.get("hostIP", ""))
                                for p in d.get("portMappings", ())))


def _digest(ni: str, key: AttachmentKey) -> bytes:
    text = f"nirunner/cni/{ni}/{key.network}/{key.container_id}/{key.ifname}"
    return hashlib.sha256(text.encode()).digest()


def mac_for(ni: str, key: AttachmentKey) -> str:
    """A stable, locally administered unicast MAC for an attachment without one."""
    d = _digest(ni, key)
    return ":".join(f"{b:02x}" for b in (0x02, *d[:5]))


def host_ifname_for(ni: str, key: AttachmentKey) -> str:
    """The attachment's port on the NI's bridge (ap<8 hex>, like other apps)."""
    return names.app_if(f"{ni}/cni/{key.network}/{key.container_id}/{key.ifname}")


def new_record(ni: str, key: AttachmentKey, netns: str, mac: str = "", hostname: str = "",
               port_mappings: tuple[PortMapping, ...] = ()) -> CniAttachment:
    names.check_ni_name(ni)
    names.check_ifname(key.ifname)
    return CniAttachment(ni=ni, key=key, netns=netns, mac=(mac or mac_for(ni, key)).lower(),
                         host_ifname=host_ifname_for(ni, key), hostname=hostname,
                         port_mappings=port_mappings)


# -- port mappings ------------------------------------------------------------------------

def port_map_problems(ni: NetworkInstance, uplink_addr: IPv4Address | None,
                      nis: Mapping[str, NetworkInstance], records: Iterable[CniAttachment],
                      wanted: Sequence[PortMapping]) -> tuple[list[str], list[str]]:
    """(invalid, conflicts) for the port mappings an attachment asks for.

    Uplink ports are one space per uplink: manifests' port maps of every NI on
    that uplink and the mappings of every CNI attachment on those NIs count.
    """
    if not wanted:
        return [], []
    if ni.type == NIType.VPN or ni.uplink is None:
        kind = "a VPN NI" if ni.type == NIType.VPN else "an air-gapped NI"
        return [f"NI {ni.name} is {kind}: it takes no port mappings"], []
    invalid = [f"hostIP {p.host_ip} is not uplink {ni.uplink}'s address "
               f"{uplink_addr or '(none yet)'}"
               for p in wanted if p.host_ip and p.host_ip != str(uplink_addr)]
    taken: dict[tuple[str, int], str] = {}
    for other in nis.values():
        if other.uplink == ni.uplink:
            for pm in other.port_maps:
                taken[(str(pm.protocol), pm.uplink_port)] = f"port map {other.name}/{pm.name}"
    for r in records:
        if r.ni in nis and nis[r.ni].uplink == ni.uplink:
            for p in r.port_mappings:
                taken[(p.protocol, p.host_port)] = (f"container {r.key.container_id} "
                                                    f"(network {r.key.network})")
    conflicts = []
    seen: set[tuple[str, int]] = set()
    for p in wanted:
        k = (p.protocol, p.host_port)
        if k in seen:
            conflicts.append(f"{p.protocol} {p.host_port} is asked for twice")
        elif k in taken:
            conflicts.append(f"{p.protocol} {p.host_port} on uplink {ni.uplink} is mapped "
                             f"already, by {taken[k]}")
        seen.add(k)
    return invalid, conflicts


def port_maps(records: Iterable[CniAttachment], ni: str) -> tuple[PortMap, ...]:
    """The NI's port maps that its CNI attachments add (targets: their addresses)."""
    out = []
    for r in records:
        if r.ni != ni or r.address is None:
            continue
        tag = hashlib.sha256(f"{r.key}".encode()).hexdigest()[:8]
        for p in r.port_mappings:
            out.append(PortMap(name=f"cni-{tag}-{p.protocol}{p.host_port}",
                               protocol=Protocol(p.protocol), uplink_port=p.host_port,
                               target=str(r.address.ip), target_port=p.container_port))
    return tuple(out)


def pinned_hosts(records: Iterable[CniAttachment], ni: str) -> list[str]:
    """dhcp-hosts lines that keep the NI's CNI attachments' leases (infinite)."""
    return [pinned_host(r.mac, r.address.ip, r.hostname)
            for r in records if r.ni == ni and r.address is not None]


def gc_victims(records: Iterable[CniAttachment], ni: str, network: str,
               valid: Iterable[AttachmentKey]) -> list[CniAttachment]:
    keep = set(valid)
    return [r for r in records if r.ni == ni and r.key.network == network
            and r.key not in keep]


# -- drift -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Observed:
    """What the kernel and dnsmasq show for one attachment (read by a driver)."""

    host_if: bool = False  # the bridge port exists in the NI's netns
    host_if_master: str = ""  # its bridge
    netns: bool = False  # the container's netns exists
    peer_mac: str = ""  # of key.ifname in the container's netns; "" if missing
    addresses: tuple[IPv4Interface, ...] = ()
    default_gw: IPv4Address | None = None
    lease: tuple[str, str, str] | None = None  # (expiry, mac, ip) from dnsmasq's lease file
    uplink_ports: frozenset[tuple[str, int]] = field(default_factory=frozenset)  # DNATs found


def drift(r: CniAttachment, o: Observed, gateway: IPv4Address | None) -> list[str]:
    """Intended against observed, one sentence per difference; [] when all is as intended."""
    p = []
    if not o.netns:
        return [f"netns {r.netns} is gone"]
    if not o.host_if:
        p.append(f"veth {r.host_ifname}: missing in NI {r.ni}")
    elif o.host_if_master != names.BRIDGE_IF:
        p.append(f"veth {r.host_ifname}: not on {names.BRIDGE_IF}")
    if not o.peer_mac:
        p.append(f"{r.key.ifname}: missing in {r.netns}")
    elif o.peer_mac != r.mac:
        p.append(f"{r.key.ifname}: MAC {o.peer_mac}, intended {r.mac}")
    if r.address is not None:
        if r.address not in o.addresses:
            p.append(f"{r.key.ifname}: address {r.address} missing")
        if gateway is not None and o.default_gw != gateway:
            p.append(f"default route via {gateway} missing")
        if o.lease is None:
            p.append(f"lease of {r.address.ip}: not in dnsmasq's lease file")
        elif o.lease != ("0", r.mac, str(r.address.ip)):
            p.append(f"lease of {r.address.ip}: {' '.join(o.lease)}, intended pinned "
                     f"(0 {r.mac} {r.address.ip})")
    for pm in r.port_mappings:
        if (pm.protocol, pm.host_port) not in o.uplink_ports:
            p.append(f"port mapping {pm.protocol} {pm.host_port}: not in the NI's nft table")
    return p
