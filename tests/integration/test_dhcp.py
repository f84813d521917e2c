"""The attachment DHCP driver against a real dnsmasq on a bridge in lab namespaces:
take a lease from inside an app's netns, configure it, pin it, release it."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from concurrent import futures
from ipaddress import IPv4Address, IPv4Interface

import pytest

from runner.dhcp.packet import DhcpError
from runner.drivers import dhcp
from runner.lab.dhcpserver import BRIDGE, MiniNI
from runner.lab.topology import sh
from runner.render.dnsmasq import pinned_host
from tests.integration.conftest import RUN_ID

pytestmark = pytest.mark.integration


@pytest.fixture
def lan() -> Iterator[MiniNI]:
    ni = MiniNI(f"nrt{RUN_ID}d")
    try:
        yield ni.start()
    finally:
        ni.stop()


def mac(i: int) -> str:
    return f"02:00:00:00:01:{i:02x}"


def resolve(netns: str, server: str, name: str) -> list[str]:
    res = sh(sys.executable, "-m", "runner.lab.dnsq", server, name, netns=netns, check=False)
    return res.stdout.split()


def test_lease_configure_pin_release(lan: MiniNI) -> None:
    app = lan.add_netns(f"{lan.prefix}-a1")
    lan.plug(app, mac(1))
    t0 = time.monotonic()
    lease = dhcp.acquire(app, "eth0", mac(1), hostname="web1")
    took = time.monotonic() - t0
    assert lease.address.network == IPv4Interface(f"{lan.gateway}/24").network
    assert 100 <= int(str(lease.address.ip).rsplit(".", 1)[1]) <= 199
    assert lease.gateway == IPv4Address(lan.gateway) and lease.lease_time == 3600
    assert lease.domain == "lab.test" and lease.dns == (IPv4Address(lan.gateway),)
    assert took < 2.0, f"a lease took {took:.2f}s (no-ping missing?)"
    ((_, lmac, lip, lname, _),) = lan.lease_lines()
    assert (lmac, lip, lname) == (mac(1), str(lease.address.ip), "web1")

    # configured as static: address and default route, and traffic flows
    dhcp.configure(app, "eth0", lease.address, lease.gateway, lease.mtu)
    addrs = sh("ip", "-4", "-o", "addr", "show", "eth0", netns=app).stdout
    assert str(lease.address) in addrs
    assert f"default via {lan.gateway}" in sh("ip", "route", netns=app).stdout
    assert sh("ping", "-c1", "-W2", lan.gateway, netns=app, check=False).returncode == 0
    dhcp.configure(app, "eth0", lease.address, lease.gateway, lease.mtu)  # idempotent
    seen = dhcp.read_configured(f"/run/netns/{app}", "eth0")
    assert seen is not None and seen.mac == mac(1) and seen.up
    assert (seen.addresses, seen.gateway) == ((lease.address,), IPv4Address(lan.gateway))
    assert dhcp.read_configured(f"/run/netns/{app}", "nosuch0") is None

    # the lease's name is in the NI's DNS, as for any app
    other = lan.add_netns(f"{lan.prefix}-a2")
    lan.plug(other, mac(2))
    got = dhcp.acquire(other, "eth0", mac(2))
    dhcp.configure(other, "eth0", got.address, got.gateway, got.mtu)
    assert resolve(other, lan.gateway, "web1.lab.test") == [str(lease.address.ip)]

    # pinned: a reservation with an infinite lease time, then one more REQUEST
    lan.set_hosts([pinned_host(mac(1), lease.address.ip, "web1")])
    pinned = dhcp.pin(app, "eth0", mac(1), lease.address, hostname="web1")
    assert pinned.infinite and pinned.address == lease.address
    assert [x[0] for x in lan.lease_lines() if x[1] == mac(1)] == ["0"]  # 0: never expires

    # detach: the container (and its netns) may be gone; released from the NI's side
    lan.set_hosts([])
    sh("ip", "netns", "del", app)
    lan.made.remove(app)
    dhcp.release_from_ni(lan.netns, BRIDGE, pinned, mac(1))
    lan.wait_leases(lambda ls: all(x[1] != mac(1) for x in ls), "the lease to be released")
    assert resolve(other, lan.gateway, "web1.lab.test") == []
    assert [x[1] for x in lan.lease_lines()] == [mac(2)]  # the other one untouched
    # without the reservation, dnsmasq gives the address for its lease time only
    with pytest.raises(DhcpError, match="not forever"):
        dhcp.pin(other, "eth0", mac(2), got.address, timeout=0.5)


def test_release_from_the_client_side(lan: MiniNI) -> None:
    app = lan.add_netns(f"{lan.prefix}-a3")
    lan.plug(app, mac(3))
    lease = dhcp.acquire(app, "eth0", mac(3))
    assert len(lan.lease_lines()) == 1
    dhcp.release_from_client(app, "eth0", mac(3), lease)
    lan.wait_leases(lambda ls: ls == [], "the lease to be released")
    dhcp.deconfigure(app, "eth0")


def _packet_sockets(netns: str) -> int:
    """The packet sockets open in `netns` (/proc/net/packet, read from inside it)."""
    from runner.drivers import netns as ns

    return ns.run_in(netns, lambda: len(open("/proc/net/packet").read().splitlines()) - 1)


def test_each_exchange_closes_its_packet_socket(lan: MiniNI) -> None:
    """The close is left to a thread (it waits for an RCU grace period): it still
    happens, exchange after exchange, in each app's netns."""
    apps = []
    for i in range(2):
        app = lan.add_netns(f"{lan.prefix}-s{i}")
        lan.plug(app, mac(0x30 + i))
        apps.append(app)
    for _ in range(3):
        for i, app in enumerate(apps):
            dhcp.acquire(app, "eth0", mac(0x30 + i))
    deadline = time.monotonic() + 5
    while any(_packet_sockets(a) for a in apps) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [_packet_sockets(a) for a in apps] == [0, 0]


def test_twenty_at_once_get_twenty_addresses(lan: MiniNI) -> None:
    apps = []
    for i in range(20):
        app = lan.add_netns(f"{lan.prefix}-c{i}")
        lan.plug(app, mac(0x40 + i))
        apps.append(app)
    with futures.ThreadPoolExecutor(max_workers=20) as pool:
        leases = list(pool.map(lambda ia: dhcp.acquire(ia[1], "eth0", mac(0x40 + ia[0])),
                               enumerate(apps)))
    ips = {str(lease.address.ip) for lease in leases}
    assert len(ips) == 20
    assert {x[2] for x in lan.lease_lines()} == ips


def test_no_server_is_a_clear_error() -> None:
    quiet = MiniNI(f"nrt{RUN_ID}q", subnet="10.9.1")
    try:
        quiet.start(dhcp=False)
        app = quiet.add_netns(f"{quiet.prefix}-a")
        quiet.plug(app, mac(9))
        t0 = time.monotonic()
        with pytest.raises(DhcpError, match="no lease within 1.5s"):
            dhcp.acquire(app, "eth0", mac(9), timeout=1.5)
        assert time.monotonic() - t0 < 3
        with pytest.raises(DhcpError, match="packet socket"):
            dhcp.acquire(app, "nosuch0", mac(9), timeout=1)
    finally:
        quiet.stop()
