"""Which IPv4 addresses and networks a field may hold: the rules in one place.

Every address field of manifests and the supervisor config asks here, and the
answer says why not: "224.0.0.0/24 is multicast (224.0.0.0/4)". Link-local
(169.254.0.0/16) is refused where it makes no sense (an NI subnet, a VPN peer
or remote subnet) and allowed where devices really use it: the transit pool,
and DNS or NTP servers (clouds serve both on 169.254.169.x).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

LINK_LOCAL = IPv4Network("169.254.0.0/16")
LIMITED_BROADCAST = IPv4Address("255.255.255.255")

# (network, what an address in it is, a short name); the first that applies says why
_SPECIAL: tuple[tuple[IPv4Network, str, str], ...] = (
    (IPv4Network("0.0.0.0/8"), "in 0.0.0.0/8 ('this network'), which is never routed",
     "'this network'"),
    (IPv4Network("127.0.0.0/8"), "loopback (127.0.0.0/8), which never leaves the host",
     "loopback"),
    (LINK_LOCAL, "link-local (169.254.0.0/16), which routers do not forward", "link-local"),
    (IPv4Network("224.0.0.0/4"), "multicast (224.0.0.0/4): for groups, not hosts", "multicast"),
    (IPv4Network("255.255.255.255/32"), "the limited broadcast address",
     "the limited broadcast address"),
    (IPv4Network("240.0.0.0/4"), "reserved (class E, 240.0.0.0/4): hosts do not route it",
     "reserved, class E"),
)


def address_problem(ip: IPv4Address, link_local: bool = False) -> str | None:
    """Why `ip` cannot be a host to send packets to, or None.
    `link_local`: allow 169.254.0.0/16."""
    for net, what, _ in _SPECIAL:
        if ip in net and not (link_local and net == LINK_LOCAL):
            return f"{ip} is {what}"
    return None


def network_problem(net: IPv4Network, link_local: bool = False) -> str | None:
    """Why `net` cannot be a network of hosts (an NI subnet, a remote subnet, the
    transit pool), or None. `link_local`: allow 169.254.0.0/16."""
    for special, what, short in _SPECIAL:
        if link_local and special == LINK_LOCAL:
            continue
        if net.subnet_of(special):
            return f"{net} is {what}"
        if net.overlaps(special):
            return f"{net} overlaps {special} ({short})"
    return None
