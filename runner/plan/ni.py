"""The plan of one NI: its netns, links, addresses, config files, ruleset and sysctls.

`restart_key` fingerprints what the running task cannot take live (type, subnet,
gateway, uplink, dnsmasq.conf, and a VPN NI's strongswan.conf): when it changes
the task must be restarted. `live_key` fingerprints everything that is applied
to a running NI (files dnsmasq re-reads on SIGHUP, the VPN connection charon
reloads over VICI, the NI ruleset, sysctls, MTU, transit link, limits).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from runner.model.types import NetworkInstance, NIType, PortMap, Resources, SupervisorConfig
from runner.net import names
from runner.net.routing import DEFAULT, Route
from runner.net.rules import NIPortMap, NIRules, NIVpnRules
from runner.plan import edge as edge_plan
from runner.plan.edge import EdgePlan
from runner.plan.errors import PlanError
from runner.plan.facts import Facts
from runner.plan.transit import TransitLink, link
from runner.plan.vpn import VpnPlan, plan_vpn
from runner.render import appedge, dnsmasq, nft, swanctl

DEFAULT_MTU = 1500

# Written by the supervisor into the NI netns (/proc/sys is read-only in the task).
# Keys are paths under /proc/sys, so interface names with dots stay unambiguous.
NI_SYSCTLS: dict[str, str] = {
    "net/ipv4/ip_forward": "1",
    "net/ipv4/conf/all/rp_filter": "1",
    "net/ipv4/conf/default/rp_filter": "1",
    # the device netns may redirect a same-NI hairpin "to ourselves": ignore that
    "net/ipv4/conf/all/accept_redirects": "0",
    "net/ipv4/conf/default/accept_redirects": "0",
}


@dataclass(frozen=True)
class PinnedLease:
    """An attachment's lease that the NI's dnsmasq keeps forever (dhcp-hosts, `infinite`)."""

    mac: str
    ip: IPv4Address
    hostname: str = ""
    owner: str = ""  # who holds it, for messages: "container c1 (network factory)"


@dataclass(frozen=True)
class NIWorkloads:
    """What the workloads attached through CNI add to their NI: pinned leases, port maps."""

    pins: tuple[PinnedLease, ...] = ()
    port_maps: tuple[PortMap, ...] = ()


@dataclass(frozen=True)
class BridgePlan:
    name: str  # br0
    mac: str  # fixed, see names.bridge_mac
    address: IPv4Interface  # the gateway, with the subnet's prefix


@dataclass(frozen=True)
class UplinkRef:
    name: str  # as in manifests, e.g. "eth0"
    interface: str  # kernel interface in the device netns
    table: int  # its route table in the device netns


@dataclass(frozen=True)
class NIPlan:
    name: str
    type: NIType
    netns: str
    container_id: str
    transit: TransitLink | None  # None: air-gapped
    bridge: BridgePlan
    mtu: int
    uplink: UplinkRef | None  # None: air-gapped
    port_maps: tuple[NIPortMap, ...]
    routes: tuple[Route, ...]  # in the NI netns, besides the connected ones
    files: dict[str, str]  # config dir (/etc/nirunner in the task): name -> content
    nft: str  # table inet ni, for `nft -f` in the NI netns
    sysctls: dict[str, str]  # path under /proc/sys -> value, in the NI netns
    resources: Resources
    restart_key: str
    live_key: str
    vpn: VpnPlan | None = None  # VPN NIs only
    edge: EdgePlan | None = None  # its apps, their ACLs, the flow log (see runner.plan.edge)

    @property
    def route_table(self) -> int | None:
        return None if self.uplink is None else self.uplink.table


def _fingerprint(*parts: object) -> str:
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _uplink(ni: NetworkInstance, config: SupervisorConfig) -> UplinkRef | None:
    if ni.uplink is None:
        return None
    for index, u in enumerate(config.uplinks):
        if u.name == ni.uplink:
            return UplinkRef(u.name, names.check_ifname(u.interface), names.uplink_table(index))
    known = ", ".join(u.name for u in config.uplinks) or "none"
    raise PlanError(f"NI {ni.name}: uplink {ni.uplink!r} is not configured (known: {known})")


def _subnet(ni: NetworkInstance) -> tuple[IPv4Network, IPv4Address]:
    """The NI's subnet and gateway; a switch NI has none (runner.plan.switch plans it)."""
    if ni.subnet is None or ni.gateway is None:
        raise PlanError(f"NI {ni.name}: a {ni.type} NI has no subnet of its own")
    return ni.subnet, ni.gateway


def _port_maps(ni: NetworkInstance, extra: tuple[PortMap, ...] = ()) -> tuple[NIPortMap, ...]:
    subnet = _subnet(ni)[0]
    seen: dict[tuple[str, int], str] = {}
    out = []
    for pm in (*ni.port_maps, *extra):
        key = (str(pm.protocol), pm.uplink_port)
        if key in seen:
            raise PlanError(f"NI {ni.name}: port maps {seen[key]} and {pm.name} both use "
                            f"{pm.protocol}/{pm.uplink_port}")
        seen[key] = pm.name
        target = ni.target_ip(pm)
        if target not in subnet:
            raise PlanError(f"NI {ni.name}: port map {pm.name} targets {target}, "
                            f"outside {subnet}")
        out.append(NIPortMap(pm.name, pm.protocol, pm.uplink_port, target, pm.target_port))
    return tuple(out)


def _pins(ni: NetworkInstance, w: NIWorkloads) -> tuple[tuple[str, IPv4Address, str], ...]:
    subnet = _subnet(ni)[0]
    for pin in w.pins:
        if pin.ip not in subnet:
            raise PlanError(f"NI {ni.name}: {pin.owner or pin.mac} holds {pin.ip}, outside "
                            f"subnet {subnet}: detach it first")
    return tuple(sorted((p.mac, p.ip, p.hostname) for p in w.pins))


def plan_ni(
    ni: NetworkInstance, config: SupervisorConfig, facts: Facts, slot: int | None,
    workloads: NIWorkloads = NIWorkloads(),
) -> NIPlan:
    """The plan of `ni`; `slot` is its transit slot (None if and only if air-gapped);
    `workloads`: what its CNI attachments add (pinned leases, port maps)."""
    if ni.type is NIType.SWITCH:
        raise PlanError(f"NI {ni.name}: a switch NI is planned by runner.plan.switch")
    subnet, gateway = _subnet(ni)
    uplink = _uplink(ni, config)
    if (uplink is None) != (slot is None):
        raise PlanError(f"NI {ni.name}: a transit slot is needed exactly when it has an uplink")
    if subnet.overlaps(config.transit_pool):
        raise PlanError(f"NI {ni.name}: subnet {subnet} overlaps the transit pool "
                        f"{config.transit_pool}")
    transit = None if slot is None else link(config.transit_pool, slot)
    port_maps = _port_maps(ni, workloads.port_maps)
    pins = _pins(ni, workloads)
    if port_maps and uplink is None:
        raise PlanError(f"NI {ni.name}: port maps need an uplink")

    found = facts.uplink(uplink.name) if uplink else None
    mtu = ni.mtu or (found.mtu if found else DEFAULT_MTU)
    upstream: tuple[IPv4Address, ...] = ()
    if ni.type is NIType.VPN:
        # only through the tunnel (the manifest checks that they are behind it);
        # the device's resolvers are reachable only in clear, so never by default
        upstream = ni.dns.upstream or ()
    elif uplink is not None:
        upstream = ni.dns.upstream if ni.dns.upstream is not None else facts.resolvers

    edge = edge_plan.plan_edge(ni, port_maps)
    files = dnsmasq.render(ni, upstream, mtu, pins, appedge.dnsmasq_nftsets(edge.acls))
    vpn: VpnPlan | None = None
    vpn_rules: NIVpnRules | None = None
    if ni.type is NIType.VPN:
        vpn, vpn_files = plan_vpn(ni, config.ipsec_backend, facts.kernel_esp)
        files |= vpn_files
        vpn_rules = NIVpnRules(kernel_esp=vpn.tun is None, tun=vpn.tun)
    rules = NIRules(
        ni=ni.name,
        uplink=uplink is not None,
        forward_out=ni.type is NIType.LOCAL,  # a VPN NI's apps never leave in clear
        port_maps=port_maps,
        vpn=vpn_rules,
    )
    ruleset = nft.ni_ruleset(rules)
    bridge = BridgePlan(
        names.BRIDGE_IF,
        names.bridge_mac(ni.name),
        IPv4Interface(f"{gateway}/{subnet.prefixlen}"),
    )
    sysctls = dict(NI_SYSCTLS) | edge_plan.sysctls(edge)
    routes: tuple[Route, ...] = ()
    if transit is not None:
        routes = (Route(names.MAIN_TABLE, DEFAULT, gateway=transit.device_addr.ip,
                        dev=transit.ni_if),)
    restart = [str(ni.type), str(ni.subnet), str(ni.gateway), ni.uplink, files[dnsmasq.CONF]]
    live: list[object] = [
        {k: v for k, v in files.items() if k not in (dnsmasq.CONF, swanctl.CONF)},
        ruleset, sysctls, mtu, transit, uplink, bridge, routes, ni.resources,
    ]
    if vpn is not None:
        restart.append(files[swanctl.CONF])
        live.append(vpn)
    restart_key = _fingerprint(*restart)
    live_key = _fingerprint(*live)
    return NIPlan(
        name=ni.name,
        type=ni.type,
        netns=names.netns(ni.name),
        container_id=names.container_id(ni.name),
        transit=transit,
        bridge=bridge,
        mtu=mtu,
        uplink=uplink,
        port_maps=port_maps,
        routes=routes,
        files=files,
        nft=ruleset,
        sysctls=sysctls,
        resources=ni.resources,
        restart_key=restart_key,
        live_key=live_key,
        vpn=vpn,
        edge=edge,
    )
