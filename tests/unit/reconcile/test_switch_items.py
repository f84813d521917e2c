"""Switch NIs in the whole plan and as items: what exists for them, what depends on
what, who owns the shim, what a learned lease changes, what a delete leaves."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest

from runner.model.types import NetworkInstance, NIType, Resources
from runner.net import names
from runner.net.routing import Route
from runner.plan.errors import PlanError
from runner.plan.facts import Binding, Facts, KernelFeature, KernelFeatures
from runner.plan.site import Plan, refuse
from runner.plan.site import build as plan_site
from runner.plan.switch import SwitchApp
from runner.reconcile import kinds as k
from runner.reconcile.build import AppPlug, build
from runner.reconcile.diff import check_ranks, diff
from runner.reconcile.items import Action
from runner.reconcile.report import result
from runner.reconcile.switch_kinds import PortTable, ShimLink, SwitchPort, VlanLink
from tests.unit.plan.sample import CONFIG, FACTS, NIS
from tests.unit.reconcile.test_reconcile import LAYOUT, UPLINKS

A = IPv4Address


def switch(name: str = "plant", uplink: str | None = "eth1", vlan: int | None = None
           ) -> NetworkInstance:
    return NetworkInstance(name, NIType.SWITCH, None, None, None, uplink=uplink, vlan=vlan,
                           resources=Resources(memory=32 << 20, cpu=0.1, pids=32))


PLC = AppPlug("plant", "/run/netns/plc", "eth0", names.app_if("plant/plc"),
              "02:00:00:00:0e:10")
HMI = AppPlug("plant", "/run/netns/hmi", "eth0", names.app_if("plant/hmi"),
              "02:00:00:00:0e:11")
LEASE = Binding(PLC.mac, A("203.0.113.114"), "dhcp", 3_000_000)
NO_VLAN = replace(FACTS, kernel=KernelFeatures((
    (KernelFeature.VLAN, "Error: Unknown device type."),)))


def apps(*plugs: AppPlug) -> dict[str, list[SwitchApp]]:
    out: dict[str, list[SwitchApp]] = {}
    for a in plugs:
        out.setdefault(a.ni, []).append(SwitchApp(f"{a.ni}/{a.host_ifname}", a.mac,
                                                  a.host_ifname))
    return out


def plan(*extra: NetworkInstance, plugs: tuple[AppPlug, ...] = (PLC, HMI),
         facts: Facts = FACTS) -> Plan:
    return plan_site(CONFIG, facts, [*NIS, *extra], {}, None, apps(*plugs))


def items(*extra: NetworkInstance, plugs: tuple[AppPlug, ...] = (PLC, HMI),
          facts: Facts = FACTS, present: tuple[str, ...] = ("eth0", "eth1")) -> dict:
    return build(plan(*extra, plugs=plugs, facts=facts), LAYOUT, "nirunner/ni:1", UPLINKS,
                 present, plugs, app_netns={PLC.netns: 71, HMI.netns: 72})


def test_switch_nis_are_planned_apart_with_no_transit_slot() -> None:
    p = plan(switch(), switch("island", uplink=None))
    assert set(p.switches) == {"plant", "island"} and not set(p.switches) & set(p.nis)
    assert "plant" not in p.slots and "island" not in p.slots
    assert p.of("plant") is p.switches["plant"] and p.of("alpha") is p.nis["alpha"]
    sw = p.switches["plant"]
    assert (sw.uplink and sw.uplink.name, sw.vlan, sw.transit, sw.routes) == ("eth1", None,
                                                                             None, ())
    assert [port.app_if for port in sw.ports] == sorted([PLC.host_ifname, HMI.host_ifname])
    assert all(port.port_if == "mv" + port.app_if[2:] for port in sw.ports)


def test_the_shim_joins_eth1_in_the_device_ruleset_and_leases_get_routes() -> None:
    p = plan(switch(), facts=replace(FACTS, learned={"plant": (LEASE,)}))
    (shim,) = p.device.switch.shims
    rules = p.device.nft_rules
    assert shim.name in rules.uplink_ifs
    assert ("nr2", shim.name) in rules.transit_uplinks  # gamma's transit link, on eth1
    assert f'"{shim.name}"' in p.device.nft
    net = IPv4Network("203.0.113.114/32")
    for table in (names.MAIN_TABLE, names.uplink_table(1)):
        assert Route(table, net, dev=shim.name, src=A("203.0.113.2")) in p.device.routes
    assert "iifname . ip daddr @shim_local accept" in p.device.nft
    assert plan().device.switch.shims == ()  # no switch NI, no shim
    assert plan().device.nft == plan_site(CONFIG, FACTS, list(NIS), {}).device.nft


def test_a_vlan_switch_ni_on_a_kernel_without_8021q_is_refused_alone() -> None:
    p = plan(switch("tagged", vlan=100), switch(), facts=NO_VLAN)
    why = ("NI tagged: vlan 100 needs 802.1Q VLAN devices: this kernel has no 802.1Q VLAN "
           "devices (Error: Unknown device type.)")
    assert p.refused == {"tagged": why}
    assert "plant" in p.switches and "alpha" in p.nis  # the others are built
    refuse(p, ["plant", "alpha"])
    with pytest.raises(PlanError, match="vlan 100 needs 802.1Q"):
        refuse(p, ["alpha", "tagged"])
    now = items(switch("tagged", vlan=100), facts=NO_VLAN, plugs=())
    assert not any(x.owner == "tagged" for x in now.values())
    assert not any(isinstance(x, VlanLink) for x in now.values())


def test_items_of_a_switch_ni_on_a_segment() -> None:
    now = items(switch())
    check_ranks(now)
    mine = {i: x for i, x in now.items() if x.owner == "plant"}
    kinds = sorted({x.KIND for x in mine.values()})
    assert kinds == ["files", "netns", "plug", "porttable", "statedir", "swport", "sysctls",
                     "task"]  # no bridge, veth, routes, rule or inet table of its own
    task = now["task:ni-plant"]
    assert isinstance(task, k.Task) and (task.ni_type, task.uplink) == ("switch", "eth1")
    assert now["files:plant"] == k.ConfigFiles("plant", str(LAYOUT.config_dir("plant")), ())
    plug = now[f"plug:plant/{PLC.host_ifname}"]
    assert isinstance(plug, k.Plug) and plug.bridge == ""
    assert plug.deps() == ("netns:nr-plant", f"appns:{PLC.netns}")
    port = now[f"swport:nr-plant/mv{PLC.host_ifname[2:]}"]
    assert isinstance(port, SwitchPort) and port.lower == "eth1" and port.mac == PLC.mac
    assert port.deps() == ("netns:nr-plant", "uplink:eth1") and port.mtu == 1400
    table = now[f"porttable:nr-plant/netdev {PLC.host_ifname}"]
    assert isinstance(table, PortTable) and set(table.deps()) == {"netns:nr-plant", plug.id,
                                                                  port.id}
    assert f'fwd to "{port.name}"' in table.text


def test_the_shim_is_the_devices_and_the_routes_of_both_tables_wait_for_it() -> None:
    now = items(switch(), switch("line2"), facts=replace(FACTS, learned={"plant": (LEASE,)}))
    shims = [x for x in now.values() if isinstance(x, ShimLink)]
    assert len(shims) == 1 and shims[0].owner == "" and shims[0].deps() == ("uplink:eth1",)
    shim = shims[0]
    assert dict(shim.sysctls) == {f"net/ipv4/conf/{shim.name}/rp_filter": "1",
                                  f"net/ipv4/conf/{shim.name}/arp_filter": "1",
                                  f"net/ipv4/neigh/{shim.name}/mcast_solicit": "0",
                                  f"net/ipv6/conf/{shim.name}/disable_ipv6": "1"}
    assert shim.addresses == ()  # none: eth1's address on two links confuses the kernel
    assert shim.neighbours == ((LEASE.ip, LEASE.mac),)  # the shim never asks the segment
    main = now["routes:device/254"]
    table = now[f"routes:device/{names.uplink_table(1)}"]
    assert isinstance(main, k.Routes) and isinstance(table, k.Routes)
    assert shim.id in main.after() and shim.id in table.after()
    assert shim.id not in main.deps() + table.deps()  # a new shim re-creates no routes
    host = IPv4Network("203.0.113.114/32")
    assert [r.dst for r in main.routes] == [host]
    assert host in [r.dst for r in table.routes]  # with the uplink's own routes, one owner
    assert any(r.gateway == A("203.0.113.1") for r in table.routes)


def test_a_new_lease_changes_only_the_devices_routes_and_shim_neighbours() -> None:
    before = items(switch())
    after = items(switch(), facts=replace(FACTS, learned={"plant": (LEASE,)}))
    d = diff(before, after)
    shim = f"shim:{names.shim_if('eth1')}"
    assert [f"{op.action} {op.id}" for op in d.ops] == [  # the neighbour before the routes
        f"modify {shim}", f"modify routes:device/{names.uplink_table(1)}",
        "modify routes:device/254"]
    assert d.ops[0].line().endswith(f"+ neighbour 203.0.113.114 at {PLC.mac}")
    assert result(d.ops, "plant").action == "unchanged"
    gone = diff(after, before)
    assert [op.id for op in gone.ops][0] == shim  # and gone before them: never an ARP


def test_first_switch_ni_creates_the_shim_the_last_one_deletes_it() -> None:
    none = items()
    one = items(switch())
    two = items(switch(), switch("line2"))
    d = diff(none, one, scope={"plant", ""})
    created = [op.id for op in d.ops if op.action is Action.CREATE]
    shim = next(i for i in created if i.startswith("shim:"))
    assert created.index(shim) < created.index(f"swport:nr-plant/mv{PLC.host_ifname[2:]}")
    assert "routes:device/254" in created  # empty, but the main table's owner from now on
    table = f"routes:device/{names.uplink_table(1)}"
    assert table not in [op.id for op in d.ops]  # ordered after the shim, not changed by it
    assert not [op for op in diff(one, two, scope={"line2", ""}).ops
                if op.id.startswith(("shim:", "routes:"))]  # shared
    gone = diff(one, none, scope={"plant", ""})
    deleted = [op.id for op in gone.ops if op.action is Action.DELETE]
    assert shim in deleted and "routes:device/254" in deleted
    assert deleted.index("routes:device/254") < deleted.index(shim)
    implied = {op.id for op in gone.ops if op.implied}
    assert f"swport:nr-plant/mv{PLC.host_ifname[2:]}" in implied  # with its netns


def test_a_missing_uplink_holds_back_the_ports_and_the_shim() -> None:
    gone = replace(FACTS, uplinks={**FACTS.uplinks, "eth1": replace(
        FACTS.uplinks["eth1"], addresses=(), exists=False)})
    now = items(switch(), facts=gone, present=("eth0",))
    d = diff({}, now, scope={"plant", ""})
    waiting = {x.id: why for x, why in d.pending}
    port = f"swport:nr-plant/mv{PLC.host_ifname[2:]}"
    assert waiting[port] == "uplink eth1"
    assert any(i.startswith("shim:") for i in waiting)
    assert f"porttable:nr-plant/netdev {PLC.host_ifname}" in waiting
    assert "task:ni-plant" not in waiting  # the NI itself is made


def test_vlan_items_on_a_kernel_with_8021q() -> None:
    now = items(switch("tagged", vlan=100), switch("other", vlan=200),
                plugs=(replace(PLC, ni="tagged"),))
    check_ranks(now)
    vlans = sorted(x.name for x in now.values() if isinstance(x, VlanLink))
    assert vlans == ["eth1.100", "eth1.200"]
    port = next(x for x in now.values() if isinstance(x, SwitchPort))
    assert (port.lower, port.deps()[1]) == ("eth1.100", "vlan:eth1.100")
    assert not any(isinstance(x, ShimLink) for x in now.values())  # no address on a VLAN


def test_air_gapped_switch_ni_is_a_bridge_without_address() -> None:
    island = AppPlug("island", "/run/netns/plc", "eth0", names.app_if("island/x"),
                     "02:00:00:00:0e:40")
    now = items(switch("island", uplink=None), plugs=(island,))
    bridge = now["bridge:nr-island/br0"]
    assert isinstance(bridge, k.Bridge) and bridge.address is None
    plug = now[f"plug:island/{island.host_ifname}"]
    assert isinstance(plug, k.Plug) and plug.bridge == "br0"
    assert not any(isinstance(x, SwitchPort) for x in now.values())
    table = now[f"porttable:nr-island/bridge {island.host_ifname}"]
    assert "bridge:nr-island/br0" not in table.deps() and plug.id in table.deps()


def test_changing_a_local_ni_into_a_switch_ni_rebuilds_it() -> None:
    alpha = next(ni for ni in NIS if ni.name == "alpha")
    before = items(plugs=())
    after = build(plan_site(CONFIG, FACTS, [*(n for n in NIS if n.name != "alpha"),
                                            replace(switch("alpha"), name="alpha")], {}),
                  LAYOUT, "nirunner/ni:1", UPLINKS, ("eth0", "eth1"))
    d = diff(before, after, scope={"alpha", ""})
    assert alpha.type is NIType.LOCAL
    lines = d.lines()
    assert any(line.startswith("- veth nr0") for line in lines)
    assert any(line.startswith("! task ni-alpha") for line in lines)
    files = next(op for op in d.ops if op.id == "files:alpha")
    assert files.action is Action.MODIFY and files.new is not None
    assert files.new.files == ()  # dnsmasq.conf goes: the new task starts no dnsmasq
