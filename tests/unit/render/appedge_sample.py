"""App-edge values shared by the renderer's tests: an NI with three apps."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from runner.net.appedge import (
    AclPortMap,
    AclProtocol,
    AclRule,
    Action,
    AppAcl,
    AppPort,
    Direction,
    Lease,
    Limit,
    NIAcls,
    RateUnit,
)

PLC_MAC, HMI_MAC, CAM_MAC = "02:00:00:00:00:10", "02:00:00:00:00:11", "02:00:00:00:00:12"
PLC_IP = IPv4Address("10.1.0.10")

PORTS = (
    AppPort("ap0a1b2c3d", PLC_MAC, "plc", (PLC_IP,)),
    AppPort("ap11223344", HMI_MAC, "hmi"),
    AppPort("vmtap0", CAM_MAC),  # undeclared: leases only
)
LEASES = (Lease(HMI_MAC, IPv4Address("10.1.0.123"), 3600),)

PLC_RULES = (
    AclRule(Direction.EGRESS, Action.ALLOW, host="www.example.test",
            protocol=AclProtocol.TCP, ports=(80, 80)),
    AclRule(Direction.EGRESS, Action.DROP, remote=IPv4Network("192.0.2.0/24")),
    AclRule(Direction.EGRESS, Action.LIMIT, remote=IPv4Network("198.51.100.0/24"),
            protocol=AclProtocol.UDP, ports=(5000, 5010),
            limit=Limit(1250000, RateUnit.BYTES, burst=125000)),
    AclRule(Direction.INGRESS, Action.DROP, remote=IPv4Network("203.0.113.0/24"),
            protocol=AclProtocol.TCP, ports=(80, 80)),
    AclRule(Direction.EGRESS, Action.ALLOW, protocol=AclProtocol.ICMP),
)
HMI_RULES = (
    AclRule(Direction.EGRESS, Action.ALLOW, remote=IPv4Network("10.1.0.10/32")),
    AclRule(Direction.EGRESS, Action.LIMIT, host="updates.example.test",
            limit=Limit(100)),
)


def acls(plc_rules: tuple[AclRule, ...] = PLC_RULES) -> NIAcls:
    return NIAcls("factory", (
        AppAcl("plc", PLC_MAC, (PLC_IP,), plc_rules,
               (AclPortMap("plc-web", AclProtocol.TCP, 80),)),
        AppAcl("hmi", HMI_MAC, (IPv4Address("10.1.0.123"),), HMI_RULES),
    ))
