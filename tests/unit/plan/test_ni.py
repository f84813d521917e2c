from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from runner.model.types import (
    DhcpRange,
    NetworkInstance,
    NIType,
    PortMap,
    Protocol,
    Reservation,
    Resources,
    StaticHost,
)
from runner.net import names
from runner.net.rules import NIPortMap
from runner.plan.errors import PlanError
from runner.plan.ni import NIPlan, plan_ni
from tests.unit.plan.sample import ALPHA, BETA, CONFIG, DELTA, ECHO, FACTS, GAMMA, site

A = IPv4Address


def _plan(ni: NetworkInstance, slot: int | None = 0) -> NIPlan:
    return plan_ni(ni, CONFIG, FACTS, None if ni.uplink is None else slot)


def test_ni_with_uplink() -> None:
    p = site().nis["beta"]
    assert (p.netns, p.container_id) == ("nr-beta", "ni-beta")
    assert p.transit is not None and p.transit.slot == 1
    assert (p.transit.device_if, p.transit.ni_if) == ("nr1", "uplink0")
    assert p.transit.ni_addr == IPv4Interface("169.254.100.6/30")
    assert p.bridge.name == "br0" and p.bridge.mac == names.bridge_mac("beta")
    assert p.bridge.address == IPv4Interface("10.1.0.1/24")
    assert p.uplink is not None and (p.uplink.name, p.uplink.interface) == ("eth0", "eth0")
    assert p.route_table == 1000
    assert p.resources == BETA.resources
    assert p.port_maps == (NIPortMap("ssh", Protocol.TCP, 2222, A("10.1.0.10"), 22),)
    assert set(p.files) == {"dnsmasq.conf", "dhcp-hosts", "hosts", "servers", "dhcp-opts",
                            "nftsets.conf"}
    assert p.sysctls["net/ipv4/ip_forward"] == "1"


def test_air_gapped_ni() -> None:
    p = site().nis["delta"]
    assert p.transit is None and p.uplink is None and p.route_table is None
    assert p.mtu == 1500


def test_port_map_target_by_reservation_name() -> None:
    assert _plan(ALPHA).port_maps[0] == NIPortMap("http", Protocol.TCP, 8080, A("10.1.0.10"), 80)


def test_mtu_from_manifest_else_uplink_else_default() -> None:
    plans = site().nis
    assert plans["beta"].mtu == 1400  # manifest
    assert plans["gamma"].mtu == 1400  # eth1's MTU
    assert plans["alpha"].mtu == 1500  # eth0's MTU
    no_facts = plan_ni(GAMMA, CONFIG, replace(FACTS, uplinks={}), 2)
    assert no_facts.mtu == 1500


RESTART_ONLY = {
    "subnet": dict(subnet=IPv4Network("10.1.0.0/16")),
    "gateway": dict(gateway=A("10.1.0.254")),
    "uplink": dict(uplink="eth1"),
    "type": dict(type=NIType.VPN, vpn=ECHO.vpn, port_maps=()),
    "dhcp range": dict(dhcp=replace(ALPHA.dhcp, range=DhcpRange(A("10.1.0.20"),
                                                                 A("10.1.0.30")))),
    "lease time": dict(dhcp=replace(ALPHA.dhcp, lease_time=60)),
    "domain": dict(dns=replace(ALPHA.dns, domain="other.lan")),
}

LIVE_ONLY = {
    "port map": dict(port_maps=ALPHA.port_maps[:1]),
    "port map target": dict(port_maps=(PortMap("http", Protocol.TCP, 8080, "db", 8080),)),
    "reservation": dict(dhcp=replace(ALPHA.dhcp, reservations=(
        Reservation("web", "52:54:00:00:01:99", A("10.1.0.10")),
        Reservation("db", "52:54:00:00:01:11", A("10.1.0.11"))))),
    "static dns": dict(dns=replace(ALPHA.dns, static=(StaticHost("nas", (A("10.1.0.8"),)),))),
    "upstream": dict(dns=replace(ALPHA.dns, upstream=(A("1.1.1.1"),))),
    "ntp": dict(ntp=()),
    "mtu": dict(mtu=1280),
    "limits": dict(resources=Resources(memory=128 << 20)),
}


@pytest.mark.parametrize("what", sorted(RESTART_ONLY))
def test_restart_key_changes_for_restart_changes(what: str) -> None:
    before, after = _plan(ALPHA), _plan(replace(ALPHA, **RESTART_ONLY[what]))  # type: ignore[arg-type]
    assert before.restart_key != after.restart_key


@pytest.mark.parametrize("what", sorted(LIVE_ONLY))
def test_live_changes_keep_restart_key(what: str) -> None:
    before, after = _plan(ALPHA), _plan(replace(ALPHA, **LIVE_ONLY[what]))  # type: ignore[arg-type]
    assert before.restart_key == after.restart_key
    assert before.live_key != after.live_key


def test_keys_are_stable_and_facts_changes_are_live() -> None:
    assert _plan(ALPHA) == _plan(ALPHA)
    other = replace(FACTS, resolvers=(A("192.0.2.99"),))
    changed = plan_ni(ALPHA, CONFIG, other, 0)
    assert changed.restart_key == _plan(ALPHA).restart_key
    assert changed.live_key != _plan(ALPHA).live_key
    moved = _plan(ALPHA, slot=5)
    assert (moved.restart_key, moved.live_key != _plan(ALPHA).live_key) == (
        _plan(ALPHA).restart_key, True)


def test_vpn_ni_does_not_forward_apps_in_clear() -> None:
    p = _plan(ECHO)
    assert 'iifname "br0" oifname "uplink0" accept' not in p.nft
    assert 'iifname "br0" oifname "uplink0" drop' in p.nft


@pytest.mark.parametrize("ni, slot, message", [
    (replace(ALPHA, uplink="wlan0"), 0, "uplink 'wlan0' is not configured"),
    (replace(ALPHA, type=NIType.SWITCH), 0, "switch"),
    (replace(DELTA, port_maps=BETA.port_maps, dhcp=BETA.dhcp, subnet=BETA.subnet,
             gateway=BETA.gateway), None, "port maps need an uplink"),
    (ALPHA, None, "transit slot"),
    (replace(ALPHA, subnet=IPv4Network("169.254.0.0/16"), gateway=A("169.254.0.1")), 0,
     "overlaps the transit pool"),
    (replace(ALPHA, port_maps=(*ALPHA.port_maps, PortMap("x", Protocol.TCP, 8080, "db", 1))),
     0, "port maps http and x both use tcp/8080"),
    (replace(ALPHA, port_maps=(PortMap("x", Protocol.TCP, 1, "10.2.0.1", 1),)), 0,
     "outside 10.1.0.0/24"),
])
def test_unplannable_ni(ni: NetworkInstance, slot: int | None, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        plan_ni(ni, CONFIG, FACTS, slot)


def test_ni_default_route_goes_to_the_device_end_of_its_transit_link() -> None:
    plans = site().nis
    assert [str(r) for r in plans["beta"].routes] == ["default via 169.254.100.5 dev uplink0"]
    assert plans["delta"].routes == ()
