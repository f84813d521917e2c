from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest

from runner.model.types import Dhcp, DhcpRange, PortMap, Protocol
from runner.net.routing import FALLBACK_METRIC, Route, RouteType, Rule
from runner.plan.errors import PlanError
from runner.plan.facts import Facts
from tests.unit.plan.sample import ALPHA, BETA, DELTA, FACTS, GAMMA, NIS, site, with_eth0_address

A = IPv4Address
N = IPv4Network
POOL = N("169.254.100.0/22")
DEFAULT = N("0.0.0.0/0")


def test_route_tables_per_uplink() -> None:
    d = site().device
    assert d.uplink_tables == {"eth0": 1000, "eth1": 1001}
    assert d.routes == (
        Route(1000, DEFAULT, gateway=A("198.51.100.1"), dev="eth0"),
        Route(1000, N("198.51.100.0/24"), dev="eth0"),
        Route(1000, POOL, RouteType.THROW),
        Route(1000, DEFAULT, RouteType.UNREACHABLE, metric=FALLBACK_METRIC),
        Route(1001, DEFAULT, gateway=A("203.0.113.1"), dev="eth1"),
        Route(1001, N("203.0.113.0/24"), dev="eth1"),
        Route(1001, POOL, RouteType.THROW),
        Route(1001, DEFAULT, RouteType.UNREACHABLE, metric=FALLBACK_METRIC),
    )
    assert str(d.routes[0]) == "default via 198.51.100.1 dev eth0 table 1000"
    assert str(d.routes[2]) == "throw 169.254.100.0/22 table 1000"


def test_a_down_or_unknown_uplink_keeps_only_throw_and_unreachable() -> None:
    down = replace(FACTS.uplinks["eth1"], up=False)
    facts = replace(FACTS, uplinks={"eth0": FACTS.uplinks["eth0"], "eth1": down})
    for f in (facts, replace(FACTS, uplinks={"eth0": FACTS.uplinks["eth0"]})):
        routes = [r for r in site(facts=f).device.routes if r.table == 1001]
        assert [r.type for r in routes] == [RouteType.THROW, RouteType.UNREACHABLE]


def test_rules_send_each_transit_link_to_its_uplink_table_and_move_local() -> None:
    d = site().device
    assert d.rules == (
        Rule(1000, 1000, "nr0"), Rule(1001, 1000, "nr1"), Rule(1002, 1001, "nr2"),
        Rule(32000, 255),
    )
    assert d.absent_rules == (Rule(0, 255),)
    assert [str(r) for r in d.rules[-2:]] == ["1002: iif nr2 lookup 1001",
                                              "32000: from all lookup local"]


def test_device_sysctls() -> None:
    s = site().device.sysctls
    assert s["net/ipv4/ip_forward"] == "1"
    assert s["net/ipv4/conf/eth1/accept_local"] == "1"
    assert s["net/ipv4/conf/eth1/rp_filter"] == "2"


def test_transit_sets() -> None:
    r = site().device.nft_rules
    assert r.transit_ifs == ("nr0", "nr1", "nr2")
    assert r.uplink_ifs == ("eth0", "eth1")
    assert r.transit_uplinks == (("nr0", "eth0"), ("nr1", "eth0"), ("nr2", "eth1"))


def test_port_map_dnat_iifs_are_the_uplink_and_nis_sharing_it() -> None:
    dnats = {(d.ni, d.name): d for d in site().device.nft_rules.dnats}
    assert set(dnats) == {("alpha", "http"), ("alpha", "dns"), ("beta", "ssh"),
                          ("gamma", "http")}
    assert dnats["alpha", "http"].iifs == ("eth0", "nr0", "nr1")  # gamma's nr2 is not in it
    assert dnats["beta", "ssh"].iifs == ("eth0", "nr0", "nr1")
    assert dnats["gamma", "http"].iifs == ("eth1", "nr2")
    assert dnats["alpha", "http"].daddrs == (A("198.51.100.2"),)
    assert dnats["alpha", "http"].to == A("169.254.100.2")
    assert dnats["beta", "ssh"].to == A("169.254.100.6")
    assert (dnats["gamma", "http"].protocol, dnats["gamma", "http"].port) == (Protocol.TCP, 8080)


def test_uplink_address_change_changes_only_the_dnat_daddr() -> None:
    before = site().device
    after = site(facts=with_eth0_address("198.51.100.77/24")).device
    old = before.nft.splitlines()
    new = after.nft.splitlines()
    changed = [(a, b) for a, b in zip(old, new, strict=True) if a != b]
    assert len(changed) == 3  # alpha/http, alpha/dns, beta/ssh
    for a, b in changed:
        assert a.replace("ip daddr 198.51.100.2 ", "ip daddr 198.51.100.77 ") == b
    plans = site(facts=with_eth0_address("198.51.100.77/24")).nis
    assert {n: p.nft for n, p in plans.items()} == {n: p.nft for n, p in site().nis.items()}


def test_uplink_without_address_has_no_dnat() -> None:
    eth0 = replace(FACTS.uplinks["eth0"], addresses=())
    facts = replace(FACTS, uplinks={**FACTS.uplinks, "eth0": eth0})
    d = site(facts=facts).device
    assert "198.51.100" not in d.nft
    assert "gamma/http" in d.nft


def test_same_port_on_two_nis_of_one_uplink_is_refused() -> None:
    clash = replace(BETA, port_maps=(PortMap("web", Protocol.TCP, 8080, "web", 80),))
    with pytest.raises(PlanError, match="tcp/8080 on uplink eth0, already used by NI alpha"):
        site(nis=(ALPHA, clash))
    udp = replace(BETA, port_maps=(PortMap("web", Protocol.UDP, 8080, "web", 80),))
    assert len(site(nis=(ALPHA, udp)).device.nft_rules.dnats) == 3


def test_duplicate_ni_names_are_refused() -> None:
    with pytest.raises(PlanError, match="given twice"):
        site(nis=(ALPHA, ALPHA))


def test_no_nis_still_moves_local_and_renders() -> None:
    d = site(nis=(), facts=Facts()).device
    assert d.rules == (Rule(32000, 255),)
    assert "elements" not in d.nft.split("set uplink_ifs")[0]


def test_slots_are_kept_across_builds() -> None:
    first = site()
    again = site(nis=(GAMMA, DELTA), previous=first.slots)
    assert again.slots == {"gamma": 2}
    back = site(nis=NIS, previous=again.slots)
    assert back.slots == {"alpha": 0, "beta": 1, "gamma": 2}
    assert DELTA.name not in back.slots


def test_port_map_clients_inside_the_ni_subnet_are_masqueraded_towards_it() -> None:
    # an NI whose subnet is eth1's own, with a port map on eth0; one without port maps
    same = replace(ALPHA, name="same", subnet=N("203.0.113.0/24"), gateway=A("203.0.113.1"),
                   dhcp=Dhcp(DhcpRange(A("203.0.113.100"), A("203.0.113.199")), 600),
                   port_maps=(PortMap("web", Protocol.TCP, 8081, "203.0.113.10", 80),))
    quiet = replace(DELTA, name="quiet", uplink="eth1")
    plan = site(nis=(*NIS, same, quiet))
    rules = plan.device.nft_rules
    by_if = {x.transit.device_if: n for n, x in plan.nis.items() if x.transit}
    assert {by_if[i]: str(net) for i, net in rules.port_map_subnets} == {
        "alpha": "10.1.0.0/24", "beta": "10.1.0.0/24", "gamma": "10.1.0.0/24",
        "same": "203.0.113.0/24"}  # not quiet nor delta: no port maps
    text = plan.device.nft
    nr = plan.nis["same"].transit.device_if  # type: ignore[union-attr]
    assert f'"{nr}" . 203.0.113.0/24' in text
    # only DNATed flows towards the NI: the NI's own traffic out keeps its NAT as before
    assert "oifname . ip saddr @port_map_subnets ct status dnat masquerade" in text
