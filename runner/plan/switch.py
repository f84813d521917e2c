"""The plan of switch NIs: apps straight on an uplink's layer-2 segment (issue 16).

Chosen by measurement (docs/switch-ni.md): the device's uplink is never touched. Each
app of a switch NI gets, besides its veth (ap<hex>), a macvlan (mv<hex>, bridge mode,
the app's MAC) of the segment's lower device: the uplink itself, or VLAN N of it (an
802.1Q sub-interface nirunner owns, shared by the switch NIs on that VLAN). The two
are cross-connected in the NI netns by nft netdev `fwd` in a table of the app's own,
which also enforces the app's MAC, drops DHCP answers from apps, and learns the app's
addresses in sets (DHCP ACKs from the segment, the app's ARP). No
bridge: two macvlans of one lower on one bridge form a loop through that lower.

The device reaches its apps (and they the uplink's address: port maps of local NIs)
through one macvlan shim per uplink with untagged switch NIs: strict rp_filter and
arp_filter (it answers ARP for the device's addresses only to hosts routed to it), no
ARP requests of its own, and a /32 route per app address leased from the segment's
DHCP server, in the main table and the uplink's table, with the uplink's address as
source. The shim has no address: the device's own address on two interfaces would
make the kernel's per-interface address checks (nft `fib daddr . iif`) depend on the
order the two were added. An air-gapped switch NI is a bridge br0 (fixed MAC, no address)
with the apps' veths as ports, and the same per-app table in the bridge family.

Pure: the live inputs are Facts (uplinks, kernel features) and the learned bindings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Interface
from typing import ClassVar

from runner.model.types import NetworkInstance, NIType, Resources, SupervisorConfig
from runner.net import names
from runner.net.routing import Route
from runner.net.rules import DeviceRules
from runner.plan.errors import PlanError
from runner.plan.facts import Binding, Facts, KernelFeature
from runner.plan.ni import DEFAULT_MTU, UplinkRef

__all__ = ["Binding", "Segment", "Shim", "SwitchApp", "SwitchDevicePlan", "SwitchPlan",
           "SwitchPort", "SwitchSpec", "VlanLink", "app_addresses", "app_bindings",
           "plan_switch", "plan_switch_device", "spec_of", "with_shims"]

# In the NI netns. The ports carry the apps' MACs: with IPv6 on, they would take the
# apps' own link-local addresses and answer neighbour solicitations for them.
SWITCH_SYSCTLS: dict[str, str] = {
    "net/ipv6/conf/all/disable_ipv6": "1",
    "net/ipv6/conf/default/disable_ipv6": "1",
}
# On the shim, in the device netns: the segment must never learn the device's address
# at the shim's MAC. The shim answers ARP only for hosts routed to it (the apps):
# strict rp_filter does it alone where conf/all/rp_filter is 0 or 1 (measured), and
# arp_filter also where a distribution sets all to 2 (loose: the effective value is the
# max). It never asks: an ARP request goes out to the whole segment, and every host that
# knows the device's address (its gateway!) would take the shim's MAC for it and send
# the device's own traffic there, where strict rp_filter drops it (measured: the
# device's flow to its gateway stalled 14 s after the device first talked to an app).
# So no broadcast solicitations (mcast_solicit 0), and a permanent neighbour entry per
# routed app instead (its MAC is in its lease). No IPv6: the segment would see the
# shim's MAC in its neighbour discovery.
SHIM_SYSCTLS = (("net/ipv4/conf/{}/rp_filter", "1"), ("net/ipv4/conf/{}/arp_filter", "1"),
                ("net/ipv4/neigh/{}/mcast_solicit", "0"),
                ("net/ipv6/conf/{}/disable_ipv6", "1"))


@dataclass(frozen=True)
class SwitchSpec:
    """What a switch NI's manifest says (see spec_of)."""

    name: str
    uplink: str | None  # None: air-gapped
    vlan: int | None = None  # None: the untagged segment
    resources: Resources = field(default_factory=Resources)


def spec_of(ni: NetworkInstance) -> SwitchSpec:
    if ni.type is not NIType.SWITCH:
        raise PlanError(f"NI {ni.name}: a {ni.type} NI is not a switch NI")
    return SwitchSpec(ni.name, ni.uplink, ni.vlan, ni.resources)


@dataclass(frozen=True)
class SwitchApp:
    """An app attached to a switch NI."""

    key: str  # stable: "<ni>/<app>", as for app_if
    mac: str  # lower-case, colon separated
    app_if: str = ""  # its veth's NI end when already named (an attachment's); else app_if(key)


@dataclass(frozen=True)
class VlanLink:
    """An 802.1Q sub-interface of an uplink, in the device netns (owned by nirunner)."""

    name: str
    parent: str  # the uplink's interface (an external item)
    vlan: int
    mtu: int


@dataclass(frozen=True)
class Segment:
    """The layer-2 segment a switch NI's ports hang off."""

    uplink: UplinkRef
    lower: str  # device-netns interface the macvlans are made on: the uplink's or vlan.name
    vlan: VlanLink | None
    mtu: int


@dataclass(frozen=True)
class SwitchPort:
    """One app's plug: its veth's NI end and, on a segment, its macvlan."""

    key: str  # the app's key ("<ni>/<app>")
    app_if: str  # ap<hex>, NI end of the app's veth (the app end becomes its interface)
    port_if: str | None  # mv<hex> on segment.lower, moved into the NI netns; None: air-gapped
    mac: str
    table: str  # its nft table in the NI netns: netdev <app_if> or bridge <app_if>


@dataclass(frozen=True)
class SwitchPlan:
    name: str
    netns: str
    container_id: str
    segment: Segment | None  # None: air-gapped
    bridge_mac: str | None  # air-gapped: br0's fixed MAC (no address); else None
    ports: tuple[SwitchPort, ...]
    mtu: int
    sysctls: dict[str, str]
    resources: Resources
    # the leases its ports learned (facts): a port table made anew starts with them
    learned: tuple[Binding, ...] = ()

    # What a switch NI has in common with the others' NIPlan (status, metrics, rolls read
    # these of any NI): no transit link, VPN, routes or port maps; a task with no service.
    type: ClassVar[NIType] = NIType.SWITCH
    transit: ClassVar[None] = None
    vpn: ClassVar[None] = None
    routes: ClassVar[tuple[Route, ...]] = ()
    port_maps: ClassVar[tuple[()]] = ()
    restart_key: ClassVar[str] = "switch"  # the task reads nothing at start

    @property
    def uplink(self) -> UplinkRef | None:
        return self.segment.uplink if self.segment else None

    @property
    def vlan(self) -> int | None:
        return self.segment.vlan.vlan if self.segment and self.segment.vlan else None


@dataclass(frozen=True)
class Shim:
    """The device's macvlan on an uplink that has untagged switch NIs."""

    name: str
    parent: str  # the uplink's interface
    mac: str
    serves: tuple[IPv4Address, ...]  # the uplink's addresses: what apps reach through it
    mtu: int
    sysctls: dict[str, str]  # path under /proc/sys -> value
    neighbours: tuple[tuple[IPv4Address, str], ...] = ()  # routed apps: (IP, MAC), permanent


@dataclass(frozen=True)
class SwitchDevicePlan:
    """The device netns's part of all switch NIs."""

    vlans: tuple[VlanLink, ...]
    shims: tuple[Shim, ...]
    routes: tuple[Route, ...]  # learned app addresses /32 via their uplink's shim
    route_tables: tuple[int, ...]  # tables those routes are synced in


def plan_switch(spec: SwitchSpec, apps: Sequence[SwitchApp], config: SupervisorConfig,
                facts: Facts) -> SwitchPlan:
    """The NI side of switch NI `spec` with `apps` plugged."""
    segment = _segment(spec, config, facts)
    mtu = segment.mtu if segment else DEFAULT_MTU
    family = "bridge" if segment is None else "netdev"
    ports = []
    seen_macs: dict[str, str] = {}
    for app in sorted(apps, key=lambda a: a.key):
        if app.mac in seen_macs:
            raise PlanError(f"NI {spec.name}: apps {seen_macs[app.mac]} and {app.key} both "
                            f"use MAC {app.mac}")
        seen_macs[app.mac] = app.key
        app_if = app.app_if or names.app_if(app.key)
        ports.append(SwitchPort(
            key=app.key,
            app_if=app_if,
            port_if=None if segment is None else names.switch_port_for(app_if),
            mac=app.mac,
            table=f"{family} {app_if}",
        ))
    return SwitchPlan(
        name=spec.name,
        netns=names.netns(spec.name),
        container_id=names.container_id(spec.name),
        segment=segment,
        bridge_mac=names.bridge_mac(spec.name) if segment is None else None,
        ports=tuple(ports),
        mtu=mtu,
        sysctls=dict(SWITCH_SYSCTLS),
        resources=spec.resources,
        learned=tuple(facts.learned.get(spec.name, ())),
    )


def _segment(spec: SwitchSpec, config: SupervisorConfig, facts: Facts) -> Segment | None:
    if spec.uplink is None:
        if spec.vlan is not None:
            raise PlanError(f"NI {spec.name}: vlan {spec.vlan} needs an uplink")
        return None
    for feature in (KernelFeature.MACVLAN, KernelFeature.NETDEV_FWD):
        if not facts.kernel.has(feature):
            raise PlanError(f"NI {spec.name}: a switch NI on an uplink needs "
                            f"{feature.value}: {facts.kernel.why_not(feature)}")
    uplink = _uplink_ref(spec, config)
    found = facts.uplink(uplink.name)
    mtu = found.mtu if found else DEFAULT_MTU
    if spec.vlan is None:
        return Segment(uplink, uplink.interface, None, mtu)
    names.check_vlan(spec.vlan)
    if not facts.kernel.has(KernelFeature.VLAN):
        raise PlanError(f"NI {spec.name}: vlan {spec.vlan} needs 802.1Q VLAN devices: "
                        f"{facts.kernel.why_not(KernelFeature.VLAN)}")
    vlan = VlanLink(names.vlan_if(uplink.interface, spec.vlan), uplink.interface, spec.vlan, mtu)
    return Segment(uplink, vlan.name, vlan, mtu)


def _uplink_ref(spec: SwitchSpec, config: SupervisorConfig) -> UplinkRef:
    for index, u in enumerate(config.uplinks):
        if u.name == spec.uplink:
            return UplinkRef(u.name, names.check_ifname(u.interface), names.uplink_table(index))
    known = ", ".join(u.name for u in config.uplinks) or "none"
    raise PlanError(f"NI {spec.name}: uplink {spec.uplink!r} is not configured (known: {known})")


def plan_switch_device(switches: Iterable[SwitchPlan], facts: Facts,
                       learned: Mapping[str, Sequence[Binding]]) -> SwitchDevicePlan:
    """VLAN links, shims and app routes in the device netns for all switch NIs;
    `learned` holds each switch NI's bindings (by NI name)."""
    vlans: dict[str, VlanLink] = {}
    shims: dict[str, Shim] = {}
    neighbours: dict[str, set[tuple[IPv4Address, str]]] = {}  # by shim
    routes: list[Route] = []
    tables: set[int] = set()
    macs: dict[tuple[str, str], str] = {}  # (lower, MAC) -> NI: a macvlan's MAC is unique
    for sw in sorted(switches, key=lambda s: s.name):
        seg = sw.segment
        if seg is None:
            continue
        for port in sw.ports:
            other = macs.setdefault((seg.lower, port.mac), sw.name)
            if other != sw.name:
                raise PlanError(f"NI {sw.name}: MAC {port.mac} is already used on "
                                f"{seg.lower} by NI {other}")
        if seg.vlan is not None:
            vlans[seg.vlan.name] = seg.vlan
            continue  # the device has no address on a VLAN it only carries
        found = facts.uplink(seg.uplink.name)
        own = tuple(a.ip for a in found.addresses) if found else ()
        shim = shims.get(seg.uplink.interface)
        if shim is None:
            shim = Shim(
                name=names.shim_if(seg.uplink.interface),
                parent=seg.uplink.interface,
                mac=names.shim_mac(seg.uplink.interface),
                serves=own,
                mtu=seg.mtu,
                sysctls={key.format(names.shim_if(seg.uplink.interface)): value
                         for key, value in SHIM_SYSCTLS},
            )
            shims[seg.uplink.interface] = shim
        tables |= {names.MAIN_TABLE, seg.uplink.table}
        for b in app_leases(sw, learned.get(sw.name, ()), facts):
            neighbours.setdefault(shim.name, set()).add((b.ip, b.mac))
            for table in (names.MAIN_TABLE, seg.uplink.table):
                routes.append(Route(table, IPv4Interface(f"{b.ip}/32").network,
                                    dev=shim.name, src=shim.serves[0]))
    return SwitchDevicePlan(tuple(vlans[k] for k in sorted(vlans)),
                            tuple(replace(shims[k], neighbours=tuple(sorted(
                                neighbours.get(shims[k].name, ())))) for k in sorted(shims)),
                            tuple(sorted(set(routes), key=str)), tuple(sorted(tables)))


def app_addresses(sw: SwitchPlan, bindings: Iterable[Binding], facts: Facts
                  ) -> list[IPv4Address]:
    """The addresses the device routes to `sw`'s apps (see app_leases)."""
    return sorted({b.ip for b in app_leases(sw, bindings, facts)})


def app_leases(sw: SwitchPlan, bindings: Iterable[Binding], facts: Facts) -> list[Binding]:
    """The leases the device routes to `sw`'s apps: from the segment's DHCP server to one
    of its ports' MACs (an app cannot forge an ACK: its own are dropped), inside the
    uplink's subnets, not the device's own; the newest lease per MAC.
    Addresses only seen in an app's traffic are shown but get no route: any app could
    claim any address, and the route would take the device's traffic to that host."""
    if sw.segment is None or sw.segment.vlan is not None:
        return []
    found = facts.uplink(sw.segment.uplink.name)
    if found is None:
        return []
    nets = [a.network for a in found.addresses]
    own = {a.ip for a in found.addresses} | ({found.gateway} if found.gateway else set())
    macs = {p.mac for p in sw.ports}
    newest: dict[str, Binding] = {}
    for b in bindings:
        if b.source != "dhcp" or b.mac not in macs or b.ip in own:
            continue
        if not any(b.ip in n and b.ip not in (n.network_address, n.broadcast_address)
                   for n in nets):
            continue
        if b.mac not in newest or b.expires_ms > newest[b.mac].expires_ms:
            newest[b.mac] = b
    return sorted(newest.values(), key=lambda b: (int(b.ip), b.mac))


def app_bindings(sw: SwitchPlan, learned: Iterable[Binding]) -> dict[str, list[Binding]]:
    """What status shows per app (by key): the bindings its NI's port tables learned for
    the app's own MAC, leases first, newest first."""
    learned = list(learned)
    out = {}
    for port in sw.ports:
        mine = [b for b in learned if b.mac == port.mac]
        out[port.key] = sorted(mine, key=lambda b: (b.source != "dhcp", -b.expires_ms,
                                                    int(b.ip)))
    return out


def with_shims(rules: DeviceRules, shims: Iterable[Shim]) -> DeviceRules:
    """table inet nirunner with each shim as one more interface of its uplink: in the
    uplink interfaces (input, forward, masquerade), in the iifs of that uplink's port-map
    DNATs, paired with the transit links of NIs on that uplink, and with the uplink's
    addresses as the only local ones its apps reach."""
    by_parent: dict[str, list[str]] = {}
    local: list[tuple[str, IPv4Address]] = []
    for s in shims:
        by_parent.setdefault(s.parent, []).append(s.name)
        local += [(s.name, ip) for ip in s.serves]
    if not by_parent:
        return rules

    def extra(ifname: str) -> list[str]:
        return by_parent.get(ifname, [])

    uplinks = [*rules.uplink_ifs, *(s for u in rules.uplink_ifs for s in extra(u))]
    pairs = [*rules.transit_uplinks,
             *((t, s) for t, u in rules.transit_uplinks for s in extra(u))]
    dnats = []
    for d in rules.dnats:
        added = [s for i in d.iifs for s in extra(i)]
        dnats.append(replace(d, iifs=(*d.iifs, *added)) if added else d)
    return replace(rules, uplink_ifs=tuple(dict.fromkeys(uplinks)),
                   transit_uplinks=tuple(dict.fromkeys(pairs)), dnats=tuple(dnats),
                   shim_local=tuple(local))
