from __future__ import annotations

from ipaddress import IPv4Address

from runner.render.dnsmasq import pinned_host


def test_pinned_host_line() -> None:
    ip = IPv4Address("10.1.0.57")
    line = pinned_host("02:00:00:00:00:21", ip, "web1")
    assert line == "02:00:00:00:00:21,10.1.0.57,web1,infinite"
    assert pinned_host("02:00:00:00:00:21", ip) == "02:00:00:00:00:21,10.1.0.57,infinite"
