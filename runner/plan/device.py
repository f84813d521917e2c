"""The plan of the device netns: route tables, ip rules, sysctls and table inet nirunner.

Routing: each uplink i has table 1000+i with its default route, its connected
subnets, `throw <transit pool>` (transit /30s are connected routes of the main
table) and an unreachable default of last resort, so NI traffic never leaks to
another uplink when its own has no route. `iif nr<slot> lookup <table>` sends
an NI's traffic to its uplink's table; the `local` rule moves from priority 0
to 32000 so that NI traffic to another uplink's address leaves through the
NI's own uplink and hairpins outside the box.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runner.model.types import SupervisorConfig
from runner.net import names
from runner.net.routing import (
    DEFAULT,
    DEFAULT_LOCAL_RULE,
    FALLBACK_METRIC,
    LOCAL_RULE,
    Route,
    RouteType,
    Rule,
)
from runner.net.rules import DeviceDnat, DeviceRules
from runner.plan.errors import PlanError
from runner.plan.facts import Facts
from runner.plan.ni import NIPlan, UplinkRef
from runner.plan.switch import SwitchDevicePlan, with_shims
from runner.plan.transit import TransitLink
from runner.render import nft

NO_SWITCHES = SwitchDevicePlan((), (), (), ())


@dataclass(frozen=True)
class DevicePlan:
    uplink_tables: dict[str, int]  # uplink name -> route table
    routes: tuple[Route, ...]
    rules: tuple[Rule, ...]  # rules that must exist
    absent_rules: tuple[Rule, ...]  # rules that must not exist (the local rule at 0)
    sysctls: dict[str, str]  # path under /proc/sys -> value, in the device netns
    nft_rules: DeviceRules
    nft: str  # table inet nirunner, for `nft -f`
    # switch NIs' VLAN links, shims and app routes (those are in `routes` too)
    switch: SwitchDevicePlan = NO_SWITCHES


def _sysctls(config: SupervisorConfig) -> dict[str, str]:
    out = {"net/ipv4/ip_forward": "1"}
    for u in config.uplinks:
        # cross-uplink hairpin: a packet from the other uplink's address comes back in
        out[f"net/ipv4/conf/{u.interface}/accept_local"] = "1"
        # port maps on an uplink that is not the main table's default route
        out[f"net/ipv4/conf/{u.interface}/rp_filter"] = "2"
    return out


def _routes(config: SupervisorConfig, facts: Facts) -> list[Route]:
    routes: list[Route] = []
    for index, u in enumerate(config.uplinks):
        table = names.uplink_table(index)
        found = facts.uplink(u.name)
        if found is not None and found.up:
            if found.gateway is not None:
                routes.append(Route(table, DEFAULT, gateway=found.gateway, dev=u.interface))
            for net in dict.fromkeys(a.network for a in found.addresses):
                routes.append(Route(table, net, dev=u.interface))
        routes.append(Route(table, config.transit_pool, RouteType.THROW))
        routes.append(Route(table, DEFAULT, RouteType.UNREACHABLE, metric=FALLBACK_METRIC))
    return routes


@dataclass(frozen=True)
class _Linked:
    """An NI with a transit link (so with an uplink)."""

    plan: NIPlan
    transit: TransitLink
    uplink: UplinkRef


def _linked(nis: Sequence[NIPlan]) -> list[_Linked]:
    out = [_Linked(p, p.transit, p.uplink) for p in nis
           if p.transit is not None and p.uplink is not None]
    return sorted(out, key=lambda x: x.transit.slot)


def _dnats(config: SupervisorConfig, facts: Facts, linked: list[_Linked]) -> list[DeviceDnat]:
    dnats: list[DeviceDnat] = []
    for u in config.uplinks:
        members = [x for x in linked if x.uplink.name == u.name]
        iifs = (u.interface, *(x.transit.device_if for x in members))
        found = facts.uplink(u.name)
        daddrs = tuple(dict.fromkeys(a.ip for a in found.addresses)) if found else ()
        owner: dict[tuple[str, int], str] = {}
        for x in members:
            for pm in x.plan.port_maps:
                key = (str(pm.protocol), pm.port)
                if key in owner:
                    raise PlanError(f"NI {x.plan.name}: port map {pm.name} uses "
                                    f"{pm.protocol}/{pm.port} on uplink {u.name}, "
                                    f"already used by NI {owner[key]}")
                owner[key] = x.plan.name
                dnats.append(DeviceDnat(x.plan.name, pm.name, u.name, pm.protocol, pm.port,
                                        iifs, daddrs, x.transit.ni_addr.ip,
                                        x.transit.device_if))
    return dnats


def plan_device(config: SupervisorConfig, facts: Facts, nis: Sequence[NIPlan],
                switch: SwitchDevicePlan = NO_SWITCHES) -> DevicePlan:
    """The device netns's part for `nis` (already planned, with their transit slots)
    and for the switch NIs (`switch`: their shims join their uplinks in the ruleset)."""
    for u in config.uplinks:
        names.check_ifname(u.interface)
    linked = _linked(nis)
    rules = [Rule(names.transit_rule_priority(x.transit.slot), x.uplink.table,
                  x.transit.device_if) for x in linked]
    nft_rules = with_shims(DeviceRules(
        transit_ifs=tuple(x.transit.device_if for x in linked),
        uplink_ifs=tuple(dict.fromkeys(u.interface for u in config.uplinks)),
        transit_uplinks=tuple((x.transit.device_if, x.uplink.interface) for x in linked),
        dnats=tuple(_dnats(config, facts, linked)),
        vpn_transit_ifs=tuple(x.transit.device_if for x in linked if x.plan.vpn is not None),
        transit_pool=str(config.transit_pool),
        port_map_subnets=tuple((x.transit.device_if, x.plan.bridge.address.network)
                               for x in linked if x.plan.port_maps),
    ), switch.shims)
    return DevicePlan(
        uplink_tables={u.name: names.uplink_table(i) for i, u in enumerate(config.uplinks)},
        routes=(*_routes(config, facts), *switch.routes),
        rules=(*rules, LOCAL_RULE),
        absent_rules=(DEFAULT_LOCAL_RULE,),
        sysctls=_sysctls(config),
        nft_rules=nft_rules,
        nft=nft.device_ruleset(nft_rules),
        switch=switch,
    )
