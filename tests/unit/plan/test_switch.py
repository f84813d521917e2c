from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest

from runner.net import names
from runner.net.routing import Route
from runner.plan.errors import PlanError
from runner.plan.facts import KernelFeature, KernelFeatures
from runner.plan.switch import (
    Binding,
    SwitchApp,
    SwitchSpec,
    app_addresses,
    app_bindings,
    plan_switch,
    plan_switch_device,
    with_shims,
)
from tests.unit.plan.sample import CONFIG, FACTS, site

A = IPv4Address
PLC = SwitchApp("plant/plc", "02:00:00:00:0e:10")
HMI = SwitchApp("plant/hmi", "02:00:00:00:0e:11")
NO_VLAN = replace(FACTS, kernel=KernelFeatures((
    (KernelFeature.VLAN, "Error: Unknown device type."),
    (KernelFeature.VLAN_BRIDGE, "RTNETLINK answers: Operation not supported"))))


def plant(vlan: int | None = None, apps: tuple[SwitchApp, ...] = (PLC, HMI), facts=FACTS,
          uplink: str | None = "eth1", name: str = "plant"):
    return plan_switch(SwitchSpec(name, uplink, vlan), apps, CONFIG, facts)


def test_untagged_switch_ni_puts_a_macvlan_per_app_on_the_uplink() -> None:
    p = plant()
    assert (p.netns, p.container_id) == ("nr-plant", "ni-plant")
    assert p.segment is not None and p.segment.lower == "eth1" and p.segment.vlan is None
    assert p.segment.uplink.table == names.uplink_table(1)
    assert p.mtu == 1400  # the uplink's (sample facts)
    assert p.bridge_mac is None
    by_mac = {port.mac: port for port in p.ports}
    plc = by_mac[PLC.mac]
    assert plc.app_if == names.app_if("plant/plc")
    assert plc.port_if == names.switch_port_if("plant/plc")
    assert plc.port_if[2:] == plc.app_if[2:]  # ap<hex> and mv<hex> read as a pair
    assert plc.table == f"netdev {plc.app_if}"
    assert p.sysctls["net/ipv6/conf/default/disable_ipv6"] == "1"


def test_air_gapped_switch_ni_is_a_bridge_without_address() -> None:
    p = plant(uplink=None)
    assert p.segment is None and p.bridge_mac == names.bridge_mac("plant")
    assert all(port.port_if is None and port.table.startswith("bridge ap") for port in p.ports)


def test_vlan_on_a_kernel_without_8021q_is_refused_with_the_kernels_answer() -> None:
    with pytest.raises(PlanError) as e:
        plant(vlan=100, facts=NO_VLAN)
    assert str(e.value) == ("NI plant: vlan 100 needs 802.1Q VLAN devices: this kernel has no "
                            "802.1Q VLAN devices (Error: Unknown device type.)")
    assert plant(facts=NO_VLAN).segment is not None  # untagged works there


def test_vlan_segment_is_a_sub_interface_of_the_uplink() -> None:
    p = plant(vlan=100)
    assert p.segment is not None and p.segment.vlan is not None
    assert p.segment.lower == p.segment.vlan.name == "eth1.100"
    assert (p.segment.vlan.parent, p.segment.vlan.vlan, p.segment.vlan.mtu) == ("eth1", 100, 1400)


@pytest.mark.parametrize("vlan", [0, 4095, -1])
def test_vlan_ids_out_of_range_are_refused(vlan: int) -> None:
    with pytest.raises(Exception, match="out of range 1-4094"):
        plant(vlan=vlan)


def test_vlan_without_uplink_and_unknown_uplink_are_refused() -> None:
    with pytest.raises(PlanError, match="vlan 7 needs an uplink"):
        plant(vlan=7, uplink=None)
    with pytest.raises(PlanError, match=r"uplink 'eth9' is not configured \(known: eth0, eth1\)"):
        plant(uplink="eth9")


def test_switch_on_an_uplink_needs_macvlan_and_netdev_fwd() -> None:
    facts = replace(FACTS, kernel=KernelFeatures(((KernelFeature.MACVLAN, "Unknown device"),)))
    with pytest.raises(PlanError, match="needs macvlan devices: this kernel has no macvlan"):
        plant(facts=facts)
    assert plant(uplink=None, facts=facts).segment is None  # air-gapped needs neither


def test_one_mac_per_segment() -> None:
    with pytest.raises(PlanError, match="apps plant/hmi and plant/plc both use MAC"):
        plant(apps=(PLC, replace(HMI, mac=PLC.mac)))
    other = plant(name="line2", apps=(replace(HMI, key="line2/x", mac=PLC.mac),))
    with pytest.raises(PlanError, match="MAC 02:00:00:00:0e:10 is already used on eth1 by NI"):
        plan_switch_device([plant(), other], FACTS, {})
    tagged = plant(vlan=20, name="line3", apps=(replace(HMI, key="line3/x", mac=PLC.mac),))
    plan_switch_device([plant(), tagged], FACTS, {})  # another segment: fine


LEASE = Binding(PLC.mac, A("203.0.113.114"), "dhcp", 3_000_000)


def test_one_shim_per_uplink_with_untagged_switch_nis_and_routes_to_leased_apps() -> None:
    line2 = plant(name="line2", apps=(SwitchApp("line2/x", "02:00:00:00:0e:20"),))
    tagged = plant(vlan=100, name="line3", apps=(SwitchApp("line3/x", "02:00:00:00:0e:30"),))
    d = plan_switch_device([plant(), line2, tagged], FACTS, {"plant": [LEASE]})
    assert [v.name for v in d.vlans] == ["eth1.100"]
    (shim,) = d.shims
    assert shim.name == names.shim_if("eth1") and shim.parent == "eth1"
    assert shim.mac == names.shim_mac("eth1")
    assert shim.serves == (A("203.0.113.2"),)  # its routes' source; it has no address
    assert shim.sysctls[f"net/ipv4/conf/{shim.name}/rp_filter"] == "1"
    assert shim.sysctls[f"net/ipv4/conf/{shim.name}/arp_filter"] == "1"
    net = IPv4Network("203.0.113.114/32")
    src = A("203.0.113.2")
    assert d.routes == (Route(names.MAIN_TABLE, net, dev=shim.name, src=src),
                        Route(names.uplink_table(1), net, dev=shim.name, src=src))
    assert d.route_tables == (names.MAIN_TABLE, names.uplink_table(1))


def test_only_fresh_leases_inside_the_segment_get_routes() -> None:
    p = plant()
    bindings = [
        LEASE,
        Binding(PLC.mac, A("203.0.113.120"), "dhcp", 10_000),  # an older lease of plc
        Binding(HMI.mac, A("203.0.113.130"), "seen"),  # only seen: no route
        Binding(HMI.mac, A("192.0.2.10"), "dhcp"),  # outside eth1's subnet
        Binding(HMI.mac, A("203.0.113.1"), "dhcp"),  # the gateway
        Binding(HMI.mac, A("203.0.113.2"), "dhcp"),  # the device itself
        Binding(HMI.mac, A("203.0.113.255"), "dhcp"),  # broadcast
        Binding("02:00:00:00:ff:ff", A("203.0.113.140"), "dhcp"),  # not an app of plant
    ]
    assert app_addresses(p, bindings, FACTS) == [A("203.0.113.114")]
    assert app_addresses(plant(uplink=None), [LEASE], FACTS) == []


def test_shims_join_their_uplink_in_the_device_ruleset() -> None:
    rules = site().device.nft_rules
    shim = plan_switch_device([plant()], FACTS, {}).shims[0]
    out = with_shims(rules, [shim])
    assert out.uplink_ifs == (*rules.uplink_ifs, shim.name)
    gamma = [t for t, u in rules.transit_uplinks if u == "eth1"]
    assert [(t, s) for t, s in out.transit_uplinks if s == shim.name] == [(t, shim.name)
                                                                          for t in gamma]
    for before, after in zip(rules.dnats, out.dnats, strict=True):
        assert after.iifs == (before.iifs + (shim.name,) if "eth1" in before.iifs
                              else before.iifs)
    assert any(shim.name in d.iifs for d in out.dnats)  # gamma's port map on eth1
    assert out.shim_local == ((shim.name, A("203.0.113.2")),)
    assert with_shims(rules, []) is rules


def test_status_shows_each_apps_own_bindings_leases_first() -> None:
    p = plant()
    plc_if = names.app_if(PLC.key)
    seen = Binding(PLC.mac, A("203.0.113.114"), "seen", 500_000)
    old = Binding(PLC.mac, A("203.0.113.120"), "dhcp", 10_000)
    stranger = Binding("02:00:00:00:ff:ff", A("203.0.113.99"), "seen")
    assert p.ports[0].app_if == plc_if or p.ports[1].app_if == plc_if
    got = app_bindings(p, [seen, old, stranger, LEASE])
    assert got == {PLC.key: [LEASE, old, seen], HMI.key: []}
