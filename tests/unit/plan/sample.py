"""A two-uplink, four-NI site shared by the plan and render tests.

alpha and beta use the same subnet on eth0, gamma the same subnet on eth1,
delta is air-gapped. VPN_NIS adds two VPN NIs with that subnet too: echo (PSK,
on eth0) and foxtrot (certificates, on eth1), with the same remote subnet.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from runner.model.types import (
    CertAuth,
    Dhcp,
    DhcpRange,
    Dns,
    NetworkInstance,
    NIType,
    PortMap,
    Protocol,
    PskAuth,
    Reservation,
    Resources,
    StaticHost,
    SupervisorConfig,
    Uplink,
    Vpn,
)
from runner.plan.facts import Facts, UplinkFacts
from runner.plan.site import Plan, build

A = IPv4Address

CONFIG = SupervisorConfig(uplinks=(Uplink("eth0", "eth0"), Uplink("eth1", "eth1")))

FACTS = Facts(
    uplinks={
        "eth0": UplinkFacts("eth0", "eth0", (IPv4Interface("198.51.100.2/24"),),
                            A("198.51.100.1"), 1500, True),
        "eth1": UplinkFacts("eth1", "eth1", (IPv4Interface("203.0.113.2/24"),),
                            A("203.0.113.1"), 1400, True),
    },
    resolvers=(A("192.0.2.53"), A("192.0.2.54")),
)


def _dhcp(*reservations: Reservation) -> Dhcp:
    return Dhcp(DhcpRange(A("10.1.0.100"), A("10.1.0.199")), 3600, reservations)


ALPHA = NetworkInstance(
    name="alpha",
    type=NIType.LOCAL,
    subnet=IPv4Network("10.1.0.0/24"),
    gateway=A("10.1.0.1"),
    dhcp=_dhcp(Reservation("web", "52:54:00:00:01:10", A("10.1.0.10")),
               Reservation("db", "52:54:00:00:01:11", A("10.1.0.11"))),
    uplink="eth0",
    dns=Dns(domain="alpha.lan", static=(StaticHost("printer", (A("10.1.0.5"),)),
                                         StaticHost("ntp.alpha.lan",
                                                    (A("10.1.0.6"), A("10.1.0.7"))))),
    ntp=(A("10.1.0.6"),),
    port_maps=(PortMap("http", Protocol.TCP, 8080, "web", 80),
               PortMap("dns", Protocol.UDP, 5353, "10.1.0.11", 53)),
)

BETA = NetworkInstance(
    name="beta",
    type=NIType.LOCAL,
    subnet=IPv4Network("10.1.0.0/24"),
    gateway=A("10.1.0.1"),
    dhcp=_dhcp(Reservation("web", "52:54:00:00:02:10", A("10.1.0.10"))),
    uplink="eth0",
    mtu=1400,
    dns=Dns(upstream=(A("9.9.9.9"),)),
    port_maps=(PortMap("ssh", Protocol.TCP, 2222, "10.1.0.10", 22),),
    resources=Resources(memory=32 << 20, cpu=0.25, pids=64),
)

GAMMA = NetworkInstance(
    name="gamma",
    type=NIType.LOCAL,
    subnet=IPv4Network("10.1.0.0/24"),
    gateway=A("10.1.0.1"),
    dhcp=_dhcp(),
    uplink="eth1",
    port_maps=(PortMap("http", Protocol.TCP, 8080, "10.1.0.10", 80),),
)

DELTA = NetworkInstance(
    name="delta",
    type=NIType.LOCAL,
    subnet=IPv4Network("10.9.0.0/24"),
    gateway=A("10.9.0.1"),
    dhcp=Dhcp(DhcpRange(A("10.9.0.50"), A("10.9.0.60")), 600,
              (Reservation("sensor", "52:54:00:00:09:01", A("10.9.0.9")),)),
    dns=Dns(domain="lab.internal"),
)

NIS = (ALPHA, BETA, GAMMA, DELTA)

ECHO = NetworkInstance(
    name="echo",
    type=NIType.VPN,
    subnet=IPv4Network("10.1.0.0/24"),
    gateway=A("10.1.0.1"),
    dhcp=_dhcp(),
    uplink="eth0",
    vpn=Vpn(remote=A("198.18.1.2"), auth=PskAuth("/etc/secrets/echo.psk"),
            local_id="factory@edge", remote_id="hq",
            remote_subnets=(IPv4Network("10.99.1.0/24"),),
            ike_proposals=("aes256-sha256-modp2048",), esp_proposals=("aes256gcm16",)),
)

FOXTROT = NetworkInstance(
    name="foxtrot",
    type=NIType.VPN,
    subnet=IPv4Network("10.1.0.0/24"),
    gateway=A("10.1.0.1"),
    dhcp=_dhcp(),
    uplink="eth1",
    dns=Dns(domain="foxtrot.lan", upstream=(A("10.99.1.53"),)),
    vpn=Vpn(remote=A("198.18.2.2"),
            auth=CertAuth("/etc/secrets/edge.pem", "/etc/secrets/edge.key",
                          "/etc/secrets/ca.pem"),
            local_id="CN=edge, O=Factory", remote_id="hq.example",
            remote_subnets=(IPv4Network("10.99.1.0/24"), IPv4Network("10.99.2.0/24")),
            dpd=0),
)

VPN_NIS = (*NIS, ECHO, FOXTROT)


def site(nis: tuple[NetworkInstance, ...] = NIS, facts: Facts = FACTS,
         previous: dict[str, int] | None = None) -> Plan:
    return build(CONFIG, facts, nis, previous or {})


def with_eth0_address(address: str) -> Facts:
    eth0 = replace(FACTS.uplinks["eth0"], addresses=(IPv4Interface(address),))
    return replace(FACTS, uplinks={**FACTS.uplinks, "eth0": eth0})
