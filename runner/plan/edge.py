"""The app edge of one NI as a plan (pure): who its declared apps are, their ACLs, the
host names DNS fills in, and whether it keeps a flow log.

Every NI has an edge: table bridge edge (anti-spoofing at every app port,
declared or not) and table inet acl (the ACLs of the apps that have some, and
the copy of DNS answers the flow log and the host-name sets need).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from runner.model.types import FlowLog, NetworkInstance
from runner.net.appedge import AclPortMap, AclProtocol, AppAcl, NIAcls
from runner.net.rules import NIPortMap

# conntrack counts bytes and packets and stamps start and stop: what flow records need
FLOWLOG_SYSCTLS = ("net/netfilter/nf_conntrack_acct", "net/netfilter/nf_conntrack_timestamp")


@dataclass(frozen=True)
class DeclaredApp:
    """An app the manifest names: its MAC is its identity; `ips` its fixed address, if any."""

    name: str
    mac: str
    ips: tuple[IPv4Address, ...] = ()


@dataclass(frozen=True)
class EdgePlan:
    apps: tuple[DeclaredApp, ...]  # reservations and spec.apps
    acls: NIAcls  # apps with ACLs; their fixed addresses (leased ones are added live)
    flow_log: FlowLog
    lease_seconds: int = 0  # the NI's DHCP lease time (0: no DHCP)

    @property
    def hosts(self) -> tuple[str, ...]:
        """The ACLs' host names, whose sets dnsmasq fills."""
        return tuple(sorted({r.host for a in self.acls.apps for r in a.rules
                             if r.host is not None}))

    @property
    def listens(self) -> bool:
        """Whether a collector reads the NI's netns: for the flow log, or to keep the
        host-name sets in step with DNS answers (their TTLs)."""
        return self.flow_log.enabled or bool(self.hosts)

    def app_of(self, mac: str) -> DeclaredApp | None:
        return next((a for a in self.apps if a.mac == mac), None)


def plan_edge(ni: NetworkInstance, port_maps: Sequence[NIPortMap]) -> EdgePlan:
    apps = tuple(DeclaredApp(a.name, a.mac, (a.ip,) if a.ip else ()) for a in ni.declared())
    acl_apps = []
    for a in ni.apps:
        if a.acls is None:
            continue
        ips = (a.ip,) if a.ip else ()
        maps = tuple(AclPortMap(pm.name, AclProtocol(str(pm.protocol)), pm.target_port)
                     for pm in port_maps if pm.target in ips)
        acl_apps.append(AppAcl(a.name, a.mac, ips, a.acls, maps))
    hosts = any(r.host for a in acl_apps for r in a.rules)
    acls = NIAcls(ni.name, tuple(acl_apps), dns_log=ni.flow_log.enabled or hosts)
    return EdgePlan(apps, acls, ni.flow_log, ni.dhcp.lease_time if ni.dhcp else 0)


def sysctls(edge: EdgePlan) -> dict[str, str]:
    """conntrack accounting and timestamps on with the flow log, off without it."""
    on = "1" if edge.flow_log.enabled else "0"
    return {key: on for key in FLOWLOG_SYSCTLS}
