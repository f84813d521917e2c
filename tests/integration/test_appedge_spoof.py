"""Anti-spoofing at the NI bridge on real frames (table bridge edge, loaded by hand).

Each attack is first made without the table, to show it does harm in this lab,
then with it: blocked, and counted for the attacker's port. Traffic of the
well-behaved apps and the port map go on as before.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from runner.flowlog import counters
from runner.lab.edgelab import BRIDGE_MAC, GATEWAY, SERVERS, UPLINK, WAN_GW, EdgeLab
from runner.lab.topology import sh, wait_for
from runner.lab.witness import unwitness, witness, witnessed
from runner.net.appedge import AppPort, Lease
from runner.render import appedge
from tests.integration.conftest import RUN_ID

pytestmark = pytest.mark.integration

PLC = ("plc", "02:00:00:00:00:10", "10.1.0.10")
HMI = ("hmi", "02:00:00:00:00:11", "10.1.0.11")
ROGUE = ("rogue", "02:00:00:00:00:66", "10.1.0.66")


@pytest.fixture(scope="module")
def lab() -> Iterator[EdgeLab]:
    lab = EdgeLab(f"nrt{RUN_ID}e")
    try:
        lab.build()
        for name, mac, ip in (PLC, HMI, ROGUE):
            lab.app(name, mac, ip)
        lab.serve(lab.apps["plc"].netns, "tcp", 80, "plc")
        lab.serve(lab.apps["rogue"].netns, "tcp", 80, "rogue")
        lab.serve(lab.wan, "tcp", 80, "inet")
        yield lab
    finally:
        lab.teardown()


def edge_on(lab: EdgeLab) -> None:
    """The plc is declared with its address; the hmi and the rogue hold leases."""
    plc, hmi, rogue = (lab.apps[n] for n in ("plc", "hmi", "rogue"))
    ports = [AppPort(plc.port, plc.mac, "plc", (IPv4Address(plc.ip),)),
             AppPort(hmi.port, hmi.mac, "hmi"), AppPort(rogue.port, rogue.mac)]
    lab.nft(appedge.edge_ruleset("lab", ports))
    for a in (hmi, rogue):  # learned live, as from dnsmasq
        lab.nft(appedge.lease_set(Lease(a.mac, IPv4Address(a.ip), 600)))


def edge_off(lab: EdgeLab) -> None:
    lab.nft("table bridge edge {}\ndelete table bridge edge\n")


def drops(lab: EdgeLab, app: str) -> dict[str, int]:
    text = lab.nft_json("set", "bridge", "edge", "drops")
    return counters.edge_drops(text).get(lab.apps[app].port, {})


def test_ordinary_traffic_is_unaffected(lab: EdgeLab) -> None:
    edge_on(lab)
    plc, hmi = lab.apps["plc"], lab.apps["hmi"]
    assert lab.ping(plc.netns, GATEWAY) and lab.ping(hmi.netns, GATEWAY)
    assert lab.connect(plc.netns, SERVERS[0], 80) == f"inet sees {UPLINK}"
    assert lab.connect(hmi.netns, plc.ip, 80) == f"plc sees {hmi.ip}"
    assert lab.connect(lab.wan, UPLINK, 8080) == f"plc sees {WAN_GW}"
    assert drops(lab, "plc") == {} and drops(lab, "hmi") == {}


def test_another_apps_address_is_dropped(lab: EdgeLab) -> None:
    rogue = lab.apps["rogue"]
    witness(lab.ni, f"ip saddr 10.1.0.10 ether saddr {rogue.mac}", "prerouting")
    sh("ip", "addr", "add", "10.1.0.10/32", "dev", "eth0", netns=rogue.netns)
    try:
        for on in (False, True):
            (edge_on if on else edge_off)(lab)
            before = witnessed(lab.ni)
            sh("ping", "-c2", "-i0.2", "-W1", "-I", "10.1.0.10", GATEWAY, netns=rogue.netns,
               check=False)
            arrived = witnessed(lab.ni) - before
            assert (arrived == 0) if on else (arrived > 0)
        assert drops(lab, "rogue").get("ip", 0) >= 2
    finally:
        sh("ip", "addr", "del", "10.1.0.10/32", "dev", "eth0", netns=rogue.netns, check=False)
        unwitness(lab.ni)


def test_gratuitous_arp_for_another_address_cannot_take_the_port_map(lab: EdgeLab) -> None:
    plc, rogue = lab.apps["plc"], lab.apps["rogue"]
    try:
        for on in (False, True):
            (edge_on if on else edge_off)(lab)
            sh("ip", "neigh", "flush", "dev", "br0", netns=lab.ni)
            assert lab.ping(lab.ni, plc.ip)  # the NI learns the plc's MAC
            assert lab.neigh_mac(lab.ni, plc.ip) == plc.mac
            # the rogue takes the plc's address and announces it
            sh("ip", "addr", "add", "10.1.0.10/32", "dev", "eth0", netns=rogue.netns)
            lab.spoof(rogue, "arp", "--sender-ip", plc.ip)
            taken = lab.neigh_mac(lab.ni, plc.ip) == rogue.mac
            reply = lab.connect(lab.wan, UPLINK, 8080)
            sh("ip", "addr", "del", "10.1.0.10/32", "dev", "eth0", netns=rogue.netns)
            if on:
                assert not taken and reply == f"plc sees {WAN_GW}"
            else:
                assert taken and reply == f"rogue sees {WAN_GW}"
        assert drops(lab, "rogue").get("arp", 0) >= 3
    finally:
        sh("ip", "addr", "del", "10.1.0.10/32", "dev", "eth0", netns=rogue.netns, check=False)
        sh("ip", "neigh", "flush", "dev", "br0", netns=lab.ni)


def test_gateway_arp_poisoning_is_dropped(lab: EdgeLab) -> None:
    plc, rogue = lab.apps["plc"], lab.apps["rogue"]
    for on in (False, True):
        (edge_on if on else edge_off)(lab)
        sh("ip", "neigh", "flush", "dev", "eth0", netns=plc.netns)
        assert lab.ping(plc.netns, GATEWAY)
        assert lab.neigh_mac(plc.netns, GATEWAY) == BRIDGE_MAC
        time.sleep(1.1)  # past the neighbour's locktime, so a reply may override it
        lab.spoof(rogue, "arp", "--sender-ip", GATEWAY, "--target-ip", plc.ip,
                  "--to", plc.mac, "--reply")
        poisoned = lab.neigh_mac(plc.netns, GATEWAY) == rogue.mac
        assert poisoned is not on
    assert drops(lab, "rogue").get("arp", 0) >= 3
    sh("ip", "neigh", "flush", "dev", "eth0", netns=plc.netns)
    assert lab.connect(plc.netns, SERVERS[0], 80) == f"inet sees {UPLINK}"


def test_rogue_dhcp_server_is_dropped(lab: EdgeLab) -> None:
    plc, rogue = lab.apps["plc"], lab.apps["rogue"]
    witness(plc.netns, "udp sport 67 udp dport 68")
    for on in (False, True):
        (edge_on if on else edge_off)(lab)
        before = witnessed(plc.netns)
        lab.spoof(rogue, "dhcp-offer", "--yiaddr", "10.1.0.99")
        arrived = witnessed(plc.netns) - before
        assert (arrived == 0) if on else (arrived >= 3)
    assert drops(lab, "rogue").get("dhcp_server", 0) >= 3


def _link_local_ready(netns: str) -> bool:
    out = sh("ip", "-6", "addr", "show", "dev", "eth0", "scope", "link", netns=netns).stdout
    return "inet6" in out and "tentative" not in out


def test_rogue_router_advertisement_is_dropped(lab: EdgeLab) -> None:
    plc, rogue = lab.apps["plc"], lab.apps["rogue"]
    wait_for(lambda: _link_local_ready(rogue.netns) and _link_local_ready(plc.netns), 10,
             "IPv6 link-local addresses")
    for on in (False, True):
        (edge_on if on else edge_off)(lab)
        sh("ip", "-6", "route", "flush", "default", netns=plc.netns, check=False)
        lab.spoof(rogue, "ra")
        time.sleep(0.3)
        routes = sh("ip", "-6", "route", "show", "default", netns=plc.netns).stdout
        assert ("fe80::" in routes) is not on, routes
    assert drops(lab, "rogue").get("ra", 0) >= 3


def test_frames_from_another_mac_are_dropped(lab: EdgeLab) -> None:
    rogue = lab.apps["rogue"]
    sh("ip", "link", "set", "eth0", "address", "02:00:00:00:00:67", netns=rogue.netns)
    try:
        for on in (False, True):
            (edge_on if on else edge_off)(lab)
            sh("ip", "neigh", "flush", "dev", "br0", netns=lab.ni)
            assert lab.ping(rogue.netns, GATEWAY) is not on
        assert drops(lab, "rogue").get("mac", 0) >= 1
    finally:
        sh("ip", "link", "set", "eth0", "address", rogue.mac, netns=rogue.netns)
    assert lab.ping(rogue.netns, GATEWAY)  # its own MAC and leased address: fine again


def test_unplugging_a_port_and_a_lease_ending_take_effect_live(lab: EdgeLab) -> None:
    edge_on(lab)
    hmi = lab.apps["hmi"]
    assert lab.ping(hmi.netns, GATEWAY)
    lease = Lease(hmi.mac, IPv4Address(hmi.ip), 600)
    lab.nft(appedge.lease_delete(lease))
    assert not lab.ping(hmi.netns, GATEWAY)
    lab.nft(appedge.lease_set(Lease(hmi.mac, IPv4Address(hmi.ip), 2)))
    assert lab.ping(hmi.netns, GATEWAY)
    time.sleep(2.5)  # the lease ran out: the kernel removed the address
    assert not lab.ping(hmi.netns, GATEWAY)
    lab.nft(appedge.lease_set(lease))
    port = AppPort(hmi.port, hmi.mac, "hmi")
    lab.nft(appedge.port_delete(port))  # unplugged: an unknown port gets nothing through
    assert drops(lab, "hmi") == {}
    assert not lab.ping(hmi.netns, GATEWAY)
    lab.nft(appedge.port_add(port))
    assert lab.ping(hmi.netns, GATEWAY)
