"""The intended items of switch NIs (pure): the NI side of each, and the device's part
of all of them (VLAN links, shims, the main table's app routes). See switch_kinds.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from runner.net import names
from runner.plan.device import DevicePlan
from runner.plan.layout import Layout
from runner.plan.switch import SwitchPlan
from runner.reconcile import kinds as k
from runner.reconcile.items import Item
from runner.reconcile.switch_kinds import (
    PortTable,
    ShimLink,
    SwitchPort,
    VlanLink,
    shim_id,
    swport_id,
    vlan_id,
)
from runner.render import switch as render

if TYPE_CHECKING:  # build.py imports this module
    from runner.reconcile.build import AppPlug


def switch_items(sw: SwitchPlan, layout: Layout, plugs: Sequence[AppPlug] = (),
                 app_netns: Mapping[str, int] | None = None) -> list[Item]:
    """Every item of switch NI `sw` but its task (build.task_item, as for every NI);
    `plugs`: its attachments (an app whose port the plan does not have is left out);
    `app_netns`: the apps' netns paths that exist -> inode."""
    app_netns = app_netns or {}
    ni, ns = sw.name, sw.netns
    out: list[Item] = [
        k.StateDir(ni, str(layout.ni_dir(ni))),
        k.Netns(ni, ns),
        k.Sysctls(ni, ns, tuple(sorted(sw.sysctls.items()))),
        # empty, but the task mounts it, and a former local NI's dnsmasq.conf must go
        k.ConfigFiles(ni, str(layout.config_dir(ni)), ()),
    ]
    bridge = ""
    if sw.segment is None:  # air-gapped: the apps' veths on a bridge without address
        assert sw.bridge_mac is not None
        bridge = names.BRIDGE_IF
        out.append(k.Bridge(ni, ns, bridge, sw.bridge_mac, sw.mtu, None))
    by_if = {a.host_ifname: a for a in plugs}
    for port in sw.ports:
        a = by_if.get(port.app_if)
        if a is None:
            continue
        inode = app_netns.get(a.netns)
        if inode is not None:
            out.append(k.AppNetns(a.netns, inode))
        plug = k.Plug(ni, ns, bridge, a.host_ifname, a.netns, a.ifname, a.mac, sw.mtu,
                      inode or 0)
        out.append(plug)
        links = [plug.id]
        if port.port_if is not None and sw.segment is not None:
            seg = sw.segment
            lower = vlan_id(seg.vlan.name) if seg.vlan else k.uplink_id(seg.uplink.name)
            sp = SwitchPort(ni, ns, port.port_if, seg.lower, lower, port.mac, sw.mtu)
            out.append(sp)
            links.append(sp.id)
        family, _, table = port.table.partition(" ")
        out.append(PortTable(ni, ns, family, table, render.port_table(sw, port),
                             links=tuple(links), seed=render.seed(port, sw.learned)))
    return out


def switch_device_items(d: DevicePlan, uplinks: Mapping[str, str]) -> list[Item]:
    """The device's items for switch NIs (`uplinks`: name -> interface): VLAN links and
    shims (they wait for their uplink's interface), and our routes of the main table to
    the apps' leases (those of the uplinks' tables are in the device's Routes items of
    those tables)."""
    by_if = {ifname: name for name, ifname in uplinks.items()}
    out: list[Item] = []
    for v in d.switch.vlans:
        out.append(VlanLink(v.name, v.parent, by_if[v.parent], v.vlan, v.mtu))
    for s in d.switch.shims:
        out.append(ShimLink(s.name, s.parent, by_if[s.parent], s.mac, s.mtu, (),
                            tuple(sorted(s.sysctls.items())), s.neighbours))
    if names.MAIN_TABLE in d.switch.route_tables:
        main = tuple(r for r in d.switch.routes if r.table == names.MAIN_TABLE)
        out.append(k.Routes("", None, names.MAIN_TABLE, main,
                            uplinks=tuple(shim_id(s.name) for s in d.switch.shims)))
    return out


def shims_of(d: DevicePlan, interface: str) -> tuple[str, ...]:
    """The ids of the shims on uplink interface `interface` (the uplink table's routes
    to switch apps go through them)."""
    return tuple(shim_id(s.name) for s in d.switch.shims if s.parent == interface)


__all__ = ["shims_of", "swport_id", "switch_device_items", "switch_items"]
