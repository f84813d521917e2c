"""Read the live facts the planner needs: uplink addresses, gateways, MTU; resolvers."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

from runner.drivers import kernel, xfrm
from runner.drivers.links import index, ipr
from runner.model.types import IpsecBackend, SupervisorConfig
from runner.plan.facts import Facts, UplinkFacts

IFF_UP = 1


def read(config: SupervisorConfig, resolv_conf: str = "/etc/resolv.conf") -> Facts:
    """One netlink socket: a link request per uplink, one address and one route dump
    (the device netns holds a transit link per NI: no dump of every link)."""
    uplinks: dict[str, UplinkFacts] = {}
    with ipr() as ip:
        addrs = ip.get_addr(family=2)
        defaults = [r for r in ip.get_routes(family=2, table=254) if r["dst_len"] == 0]
        for up in config.uplinks:
            idx = index(ip, up.interface)
            if idx is None:
                uplinks[up.name] = UplinkFacts(up.name, up.interface, (), None, 1500, False,
                                               exists=False)
                continue
            link = ip.get_links(idx)[0]
            mine = tuple(sorted(
                IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
                for a in addrs if a["index"] == idx))
            gw = next((r.get_attr("RTA_GATEWAY") for r in defaults
                       if r.get_attr("RTA_OIF") == idx and r.get_attr("RTA_GATEWAY")), None)
            uplinks[up.name] = UplinkFacts(
                up.name, up.interface, mine, IPv4Address(gw) if gw else None,
                int(link.get_attr("IFLA_MTU") or 1500),
                bool(link["flags"] & IFF_UP) and link.get_attr("IFLA_OPERSTATE") != "DOWN",
            )
    kernel_esp = config.ipsec_backend is IpsecBackend.AUTO and xfrm.kernel_esp()
    return Facts(uplinks=uplinks, resolvers=read_resolvers(resolv_conf), kernel_esp=kernel_esp,
                 kernel=kernel.features())


def read_resolvers(path: str) -> tuple[IPv4Address, ...]:
    out: list[IPv4Address] = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return ()
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                addr = IPv4Address(words[1])
            except ValueError:
                continue
            if not addr.is_loopback:  # a host-local stub is unreachable from an NI
                out.append(addr)
    return tuple(out)
