"""The rules of attachments made through CNI and of taps, as pure functions.

What an attachment gets (a stable MAC and bridge port name), whether its port
mappings may be had, what it adds to its NI's plan (a pinned dhcp-hosts line,
port maps), which ones a GC removes, and whether an NI can take attachments
(from its status). No I/O here: the supervisor (runner/supervisor/workloads.py)
does the effects as reconciler items.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from ipaddress import IPv4Address
from typing import Any

from runner.cni.api import AttachmentKey, PortMapping, Readiness
from runner.model.types import NetworkInstance, NIType, PortMap, Protocol
from runner.net import names
from runner.plan.ni import NIWorkloads, PinnedLease
from runner.supervisor.store import CNI, TAP, Attachment


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


def tap_host_ifname(ni: str, interface: str) -> str:
    """A taken interface's name inside the NI (ap<8 hex>: the NI's app ports)."""
    return names.app_if(f"{ni}/tap/{interface}")


def key_of(a: Attachment) -> AttachmentKey:
    """The key the API names an attachment by: CNI's (network, container, ifname); a
    tap's is ("", "", its interface)."""
    if a.kind == CNI:
        return AttachmentKey(a.network, a.container_id, a.ifname)
    return AttachmentKey("", "", a.ifname)


def find(records: Iterable[Attachment], ni: str, key: AttachmentKey) -> Attachment | None:
    """The CNI attachment (or, for a key without network and container, the tap) `key`."""
    kind = TAP if not key.network and not key.container_id else CNI
    return next((a for a in records if a.ni == ni and a.kind == kind and key_of(a) == key),
                None)


def owner(a: Attachment) -> str:
    """Who an attachment is, for messages."""
    if a.kind == CNI:
        return f"container {a.container_id} (network {a.network})"
    if a.kind == TAP:
        return f"interface {a.ifname}"
    return f"{a.netns} {a.ifname}"


# -- port mappings ------------------------------------------------------------------------

def port_map_problems(ni: NetworkInstance, uplink_addrs: Collection[IPv4Address],
                      nis: Mapping[str, NetworkInstance], records: Iterable[Attachment],
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
    shown = ", ".join(str(a) for a in uplink_addrs) or "(none yet)"
    invalid = [f"hostIP {p.host_ip} is not an address of uplink {ni.uplink} ({shown})"
               for p in wanted if p.host_ip and IPv4Address(p.host_ip) not in uplink_addrs]
    taken: dict[tuple[str, int], str] = {}
    for other in nis.values():
        if other.uplink == ni.uplink:
            for pm in other.port_maps:
                taken[(str(pm.protocol), pm.uplink_port)] = f"port map {other.name}/{pm.name}"
    for r in records:
        if r.ni in nis and nis[r.ni].uplink == ni.uplink:
            for p in r.port_mappings:
                taken[(p.protocol, p.host_port)] = owner(r)
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


def port_map_name(a: Attachment, p: PortMapping) -> str:
    """`cni-<container id, 12>-<proto><port>`: unique per NI (one owner per uplink port)."""
    return f"cni-{a.container_id[:12]}-{p.protocol}{p.host_port}"


def port_maps(records: Iterable[Attachment], ni: str) -> tuple[PortMap, ...]:
    """The NI's port maps that its CNI attachments add (targets: their addresses)."""
    return tuple(PortMap(name=port_map_name(r, p), protocol=Protocol(p.protocol),
                         uplink_port=p.host_port, target=str(r.address.ip),
                         target_port=p.container_port)
                 for r in records if r.ni == ni and r.address is not None
                 for p in r.port_mappings)


def pins(records: Iterable[Attachment], ni: str) -> tuple[PinnedLease, ...]:
    """The leases the NI's dnsmasq keeps forever for its CNI attachments."""
    return tuple(PinnedLease(r.mac, r.address.ip, r.hostname, owner(r))
                 for r in records if r.ni == ni and r.address is not None)


def plan_inputs(records: Sequence[Attachment]) -> dict[str, NIWorkloads]:
    """What the attachments add to each NI's plan, by NI name."""
    out = {}
    for ni in dict.fromkeys(r.ni for r in records):
        w = NIWorkloads(pins(records, ni), port_maps(records, ni))
        if w.pins or w.port_maps:
            out[ni] = w
    return out


def gc_victims(records: Iterable[Attachment], ni: str, network: str,
               valid: Iterable[AttachmentKey]) -> list[Attachment]:
    """The CNI attachments of `network` in NI `ni` that the runtime no longer has."""
    keep = set(valid)
    return [r for r in records if r.kind == CNI and r.ni == ni and r.network == network
            and key_of(r) not in keep]


# -- readiness -------------------------------------------------------------------------------

def readiness(st: Mapping[str, Any]) -> Readiness:
    """Can an NI take attachments, from its `status` object: its task and dnsmasq run.

    Not ready while attached apps lost DHCP and DNS (dnsmasq is not running) is
    `degraded`; not ready for another reason (containerd away, the task starting)
    is not.
    """
    services = st.get("services") or {}
    running = st.get("state") == "running" or (
        st.get("state") == "degraded" and services.get("dnsmasq") == "running")
    if running:
        return Readiness(True)
    plugged = bool(st.get("attached") or st.get("apps"))
    reason = f"{st.get('state', 'unknown')}: {st.get('reason') or 'no reason given'}"
    return Readiness(False, reason, degraded=plugged and services.get("dnsmasq") != "running")
