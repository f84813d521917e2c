from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from runner.net.appedge import (
    AclProtocol,
    AclRule,
    Action,
    AppAcl,
    AppPort,
    Direction,
    Lease,
    Limit,
    NIAcls,
    check_host,
    check_mac,
    host_set,
)
from runner.net.errors import NetValueError

MAC = "02:00:00:00:00:10"


@pytest.mark.parametrize("mac", ["02:00:00:00:00:1", "02-00-00-00-00-10", "02:00:00:00:00:1A",
                                 "01:00:5e:00:00:01", '02:00:00:00:00:10"'])
def test_bad_macs(mac: str) -> None:
    with pytest.raises(NetValueError):
        check_mac(mac)


@pytest.mark.parametrize("host", ["Example.com", "*.example.com", "a..b", "-a.b", "a b",
                                  "a/b", "x" * 64 + ".com", 'a"b', ""])
def test_bad_hosts(host: str) -> None:
    with pytest.raises(NetValueError):
        check_host(host)


def test_host_set_is_stable_and_short() -> None:
    assert host_set("www.example.test") == host_set("www.example.test")
    assert host_set("www.example.test") != host_set("example.test")
    assert len(host_set("a" * 60 + ".example.test")) == 14


@pytest.mark.parametrize("kwargs, message", [
    ({"remote": IPv4Network("10.0.0.0/8"), "host": "a.test"}, "not both"),
    ({"ports": (80, 80)}, "protocol tcp or udp"),
    ({"protocol": AclProtocol.ICMP, "ports": (1, 2)}, "protocol tcp or udp"),
    ({"protocol": AclProtocol.TCP, "ports": (90, 80)}, "1-65535"),
    ({"protocol": AclProtocol.TCP, "ports": (0, 80)}, "1-65535"),
    ({"limit": Limit(10)}, "only a limit"),
])
def test_bad_rules(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(NetValueError, match=message):
        AclRule(Direction.EGRESS, Action.ALLOW, **kwargs)  # type: ignore[arg-type]


def test_limit_rule_needs_its_rate() -> None:
    with pytest.raises(NetValueError, match="only a limit"):
        AclRule(Direction.EGRESS, Action.LIMIT)
    with pytest.raises(NetValueError):
        Limit(0)


def test_ports_apps_and_leases_are_checked() -> None:
    with pytest.raises(NetValueError):
        AppPort("a" * 16, MAC)
    with pytest.raises(NetValueError):
        AppPort("ap1", MAC, app="Bad_Name")
    with pytest.raises(NetValueError):
        Lease(MAC, IPv4Address("10.0.0.1"), -1)
    app = AppAcl("plc", MAC, (), ())
    with pytest.raises(NetValueError, match="twice"):
        NIAcls("n", (app, app))


def test_leases_from_a_dnsmasq_lease_file() -> None:
    from runner.net.appedge import leases_from_dnsmasq

    text = ("1000 02:00:00:00:00:11 10.1.0.123 hmi 01:02:00:00:00:00:11\n"
            "0 02:00:00:00:00:12 10.1.0.124 * *\n"
            "500 02:00:00:00:00:13 10.1.0.125 old *\n"  # over
            "duid 00:01:00:01\n"
            "1000 not-a-mac 10.1.0.126 x *\n"
            "1000 02:00:00:00:00:14 fd00::1 v6 *\n")
    assert leases_from_dnsmasq(text, now=600.0) == [
        Lease("02:00:00:00:00:11", IPv4Address("10.1.0.123"), 400),
        Lease("02:00:00:00:00:12", IPv4Address("10.1.0.124"), 0)]
