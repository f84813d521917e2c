"""The app edge of one NI (pure): its intended items — the edge and ACL tables, one edge
port per attached app — and what the supervisor follows live for it (`Follow`: its
leases and its flow log).

Every attachment is an app port, declared or not; an attachment whose MAC is a
declared app's is that app (`attach --app` gives it that MAC), with its fixed
address allowed for good.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runner.net.appedge import AppPort
from runner.plan.layout import Layout
from runner.plan.ni import NIPlan
from runner.plan.site import Plan
from runner.reconcile import kinds as k
from runner.reconcile.items import Item
from runner.render import appedge

if TYPE_CHECKING:
    from runner.reconcile.build import AppPlug


def edge_tables(p: NIPlan) -> list[Item]:
    """The NI's edge and ACL tables (of its plan: the same whatever is attached)."""
    edge = p.edge
    if edge is None:
        return []
    ni, ns = p.name, p.netns
    return [
        k.EdgeTable(ni, ns, appedge.edge_ruleset(ni, (), lease_seconds=edge.lease_seconds),
                    tuple((a.mac, str(ip)) for a in edge.apps for ip in a.ips),
                    edge.lease_seconds),
        k.AclTable(ni, ns, appedge.acl_ruleset(edge.acls), edge.acls),
    ]


def edge_ports(p: NIPlan, plugs: Sequence[AppPlug]) -> list[Item]:
    """An edge port per attached app."""
    edge = p.edge
    if edge is None:
        return []
    out: list[Item] = []
    for a in plugs:
        app = edge.app_of(a.mac)
        port = AppPort(a.host_ifname, a.mac, app.name if app else None, app.ips if app else ())
        out.append(k.EdgePort(p.name, p.netns, port))
    return out


@dataclass(frozen=True)
class Follow:
    """What the supervisor follows of one NI whose netns exists (runner.supervisor.edgewatch).

    - leases: `lease_path`, each lease into table bridge edge (and, for an app with
      ACLs, its ingress dispatch: `acl_apps`, MAC -> app);
    - the flow log, when `listen`: records to `log_path` ("" for none: then it only
      keeps the host-name sets in step with DNS answers).
    `inode` is the netns's: a new one (the NI re-created) means starting anew.
    """

    ni: str
    netns: str
    inode: int
    lease_path: str
    acl_apps: tuple[tuple[str, str], ...]
    listen: bool
    log_path: str
    max_bytes: int
    keep: int
    apps: tuple[tuple[str, str, tuple[str, ...]], ...]  # declared: (name, MAC, fixed IPs)
    hosts: tuple[str, ...]
    labels: tuple[tuple[int, str], ...]  # rule id -> "<app> <direction> <index>"


FollowMemo = dict[str, tuple[NIPlan, int, Follow]]


def follows(plan: Plan, layout: Layout, live: Mapping[str, int],
            memo: FollowMemo | None = None) -> dict[str, Follow]:
    """What to follow of the planned NIs whose netns exists (`live`: NI -> netns inode).
    `memo` keeps each NI's, reused while its plan (the same object) and inode are."""
    out = {}
    for name, p in plan.nis.items():
        edge = p.edge
        if edge is None or name not in live:
            continue
        if memo is not None and (m := memo.get(name)) and m[0] is p and m[1] == live[name]:
            out[name] = m[2]
            continue
        f = edge.flow_log
        out[name] = Follow(
            ni=name, netns=p.netns, inode=live[name], lease_path=str(layout.leases_path(name)),
            acl_apps=tuple(sorted((a.mac, a.app) for a in edge.acls.apps)),
            listen=edge.listens, log_path=str(layout.flow_log_path(name)) if f.enabled else "",
            max_bytes=f.max_size, keep=f.keep,
            apps=tuple((a.name, a.mac, tuple(str(ip) for ip in a.ips)) for a in edge.apps),
            hosts=edge.hosts, labels=tuple(sorted(appedge.rule_labels(edge.acls).items())))
        if memo is not None:
            memo[name] = (p, live[name], out[name])
    if memo is not None:
        for gone in memo.keys() - out.keys():
            del memo[gone]
    return out
