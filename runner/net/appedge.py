"""The app edge of an NI as plain values: app ports (anti-spoofing) and app ACLs.

`runner.render.appedge` turns them into two nft tables of the NI netns:
`bridge edge` (who may send what from an app port) and `inet acl` (where an
app with ACLs may talk to). Nothing here reads the kernel or a manifest.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from runner.net import names
from runner.net.errors import NetValueError

_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
# a DNS name as dnsmasq's nftset= takes it: lowercase labels joined by dots
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")
_APP = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")


def check_mac(mac: str) -> str:
    """A unicast MAC in lower case with colons, else NetValueError."""
    if not _MAC.fullmatch(mac):
        raise NetValueError(f"MAC {mac!r} is not six lower-case hex bytes separated by ':'")
    if int(mac[:2], 16) & 1:
        raise NetValueError(f"MAC {mac} is a multicast address")
    return mac


def check_host(host: str) -> str:
    if not _HOST.fullmatch(host):
        raise NetValueError(f"host name {host!r} is not a DNS name of lowercase labels")
    return host


def check_app(app: str) -> str:
    if not _APP.fullmatch(app):
        raise NetValueError(f"app name {app!r} is not a DNS label")
    return app


def host_set(host: str) -> str:
    """The nft set (in table inet acl) of a host name's addresses: stable, whatever the other
    hosts are, so a change of the ACLs keeps what DNS already filled in."""
    return "h_" + hashlib.sha256(check_host(host).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class AppPort:
    """One app port on the NI bridge: the identity its frames must carry.

    `ips` are the app's declared (reserved) addresses, allowed for good; a leased
    address is added live as a `Lease`. An undeclared app has no `app` name and
    sends IPv4 only from what it leased.
    """

    port: str  # the bridge port (NI end of the app's veth, or a VM tap)
    mac: str
    app: str | None = None  # the declared app, None for an undeclared attachment
    ips: tuple[IPv4Address, ...] = ()

    def __post_init__(self) -> None:
        names.check_ifname(self.port)
        check_mac(self.mac)
        if self.app is not None:
            check_app(self.app)


@dataclass(frozen=True)
class Lease:
    """An address dnsmasq leased to a MAC, allowed until the lease ends."""

    mac: str
    ip: IPv4Address
    seconds: int  # what is left of the lease; 0: no end (an infinite lease)

    def __post_init__(self) -> None:
        check_mac(self.mac)
        if self.seconds < 0:
            raise NetValueError(f"lease of {self.ip}: {self.seconds} s left")


def leases_from_dnsmasq(text: str, now: float) -> list[Lease]:
    """The live leases of a dnsmasq lease file (`<expiry> <mac> <ip> <name> <client id>`).

    An expiry of 0 is an infinite lease; leases already over and lines that are
    not IPv4 Ethernet leases are left out.
    """
    out = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 3 or not words[0].isdigit():
            continue
        expiry, mac = int(words[0]), words[1].lower()
        try:
            ip = IPv4Address(words[2])
            left = 0 if expiry == 0 else int(expiry - now)
            if expiry and left <= 0:
                continue
            out.append(Lease(check_mac(mac), ip, left))
        except (ValueError, NetValueError):
            continue
    return out


class SpoofCase(enum.IntEnum):
    """Why the edge dropped a frame; the number keys the per-port drop counters."""

    MAC = 1  # source MAC is not the port's
    IP = 2  # IPv4 source is not the app's
    ARP = 3  # ARP sender (MAC or IP) is not the app's
    DHCP_SERVER = 4  # a DHCP server reply (UDP source port 67) from an app
    RA = 5  # an IPv6 router advertisement or redirect, or a DHCPv6 server reply
    VLAN = 6  # a VLAN-tagged frame (its inner header would not be checked)


class Direction(enum.StrEnum):
    EGRESS = "egress"  # flows the app starts
    INGRESS = "ingress"  # flows others start towards the app


class Action(enum.StrEnum):
    ALLOW = "allow"
    DROP = "drop"
    LIMIT = "limit"  # allow, at most at a rate (one token bucket per rule)


class AclProtocol(enum.StrEnum):
    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"


class RateUnit(enum.StrEnum):
    PACKETS = "packets"
    BYTES = "bytes"


class Per(enum.StrEnum):
    SECOND = "second"
    MINUTE = "minute"
    HOUR = "hour"


@dataclass(frozen=True)
class Limit:
    rate: int  # units per `per`
    unit: RateUnit = RateUnit.PACKETS
    per: Per = Per.SECOND
    burst: int = 0  # in `unit`; 0: nft's default (5 packets, or one second of bytes)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 0:
            raise NetValueError(f"limit rate {self.rate} burst {self.burst} must be positive")


@dataclass(frozen=True)
class AclRule:
    """One ordered rule of an app: the first one that matches a new flow decides it.

    A rule with neither `remote` nor `host` matches any remote; with no
    `protocol`, any protocol (and then no ports).
    """

    direction: Direction
    action: Action
    remote: IPv4Network | None = None
    host: str | None = None  # this DNS name and every name under it
    protocol: AclProtocol | None = None
    ports: tuple[int, int] | None = None  # remote port (egress) or app port (ingress), a range
    limit: Limit | None = None

    def __post_init__(self) -> None:
        if self.remote is not None and self.host is not None:
            raise NetValueError("an ACL rule matches a remote address or a host, not both")
        if self.host is not None:
            check_host(self.host)
        if self.ports is not None:
            lo, hi = self.ports
            if self.protocol not in (AclProtocol.TCP, AclProtocol.UDP):
                raise NetValueError("ports need protocol tcp or udp")
            if not 1 <= lo <= hi <= 65535:
                raise NetValueError(f"port range {lo}-{hi} is not within 1-65535")
        if (self.action is Action.LIMIT) != (self.limit is not None):
            raise NetValueError("a limit, and only a limit, rule needs its rate")


@dataclass(frozen=True)
class AclPortMap:
    """A port map to the app: an ingress allow of its DNATed flows (as in EVE)."""

    name: str
    protocol: AclProtocol  # tcp or udp
    target_port: int


@dataclass(frozen=True)
class AppAcl:
    """A declared app with ACLs: default-deny but for DHCP and DNS to its gateway."""

    app: str
    mac: str
    ips: tuple[IPv4Address, ...]  # reserved and leased: ingress is dispatched by address
    rules: tuple[AclRule, ...]
    port_maps: tuple[AclPortMap, ...] = ()

    def __post_init__(self) -> None:
        check_app(self.app)
        check_mac(self.mac)


@dataclass(frozen=True)
class NIAcls:
    """What table inet acl of one NI must do. Apps without ACLs are not in it."""

    ni: str
    apps: tuple[AppAcl, ...] = ()
    dns_log: bool = True  # copy DNS replies to apps to the flow log (nflog)
    host_timeout: int = 3600  # s an address of a host stays allowed unless refreshed

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for a in self.apps:
            if a.app in seen:
                raise NetValueError(f"NI {self.ni}: app {a.app} has ACLs twice")
            seen.add(a.app)
