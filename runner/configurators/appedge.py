"""The app edge's tables: table bridge edge, its app ports, and table inet acl.

- The edge table is made whole (with the leases the lease file has now) and only
  ever re-created; its ports are element operations.
- The ACL table is changed in one transaction that keeps its host-name sets; the
  leased addresses of apps with ACLs are put back into its ingress map in the same
  transaction. Its tag is a rule's comment (a kept table's comment cannot change).
- Both run under the NI's edge lock (runner.supervisor.edgewatch), which the lease
  follower and the host-name refreshes take too.
"""

from __future__ import annotations

import time
from dataclasses import replace
from ipaddress import IPv4Address

from runner.drivers import edge as edge_driver
from runner.drivers import netns as ns
from runner.drivers import nft
from runner.drivers.edge import EdgeView
from runner.net import names
from runner.net.appedge import Lease, NIAcls
from runner.plan.layout import Layout
from runner.reconcile.kinds import AclTable, EdgePort, EdgeTable
from runner.render import appedge
from runner.supervisor.edgewatch import EdgeWatch
from runner.supervisor.leasesync import read_file

DIFFERS = "(not the table nirunner applied)"


def _delete_table(family: str, table: str, netns: str) -> None:
    try:
        nft.delete_table(family, table, netns)
    except ns.NoSuchNetns:  # it went with its netns
        pass


def _leases(layout: Layout, ni: str) -> list[Lease]:
    return [lease for lease, _ in read_file(layout.leases_path(ni), time.time()).values()]


class EdgeTableConf:
    parallel = False

    def __init__(self, watch: EdgeWatch, layout: Layout) -> None:
        self.watch, self.layout = watch, layout

    def create(self, item: EdgeTable) -> EdgeTable:
        fixed = set(item.fixed)
        with self.watch.lock(item.ni):
            leases = [x for x in _leases(self.layout, item.ni) if (x.mac, str(x.ip)) not in fixed]
            text = appedge.edge_ruleset(item.ni, (), leases, lease_seconds=item.lease_seconds)
            nft.apply_table(text, "bridge", names.EDGE_NFT_TABLE, item.netns, tag_of=item.text)
        return item

    def modify(self, old: EdgeTable, new: EdgeTable) -> EdgeTable:
        return self.create(new)

    def delete(self, item: EdgeTable) -> None:
        _delete_table(*edge_driver.EDGE, item.netns)

    def read(self, item: EdgeTable) -> EdgeTable | None:
        try:
            found = nft.read_tag("bridge", names.EDGE_NFT_TABLE, item.netns)
        except ns.NoSuchNetns:
            return None
        if found is None:
            return None
        return item if found == nft.tag(item.text) else replace(item, text=DIFFERS)


class EdgePortConf:
    """An app port's elements; reads share one listing of the table per netns and pass."""

    parallel = False

    def __init__(self, watch: EdgeWatch) -> None:
        self.watch = watch
        self._views: dict[str, EdgeView | None] | None = None

    def create(self, item: EdgePort) -> EdgePort:
        with self.watch.lock(item.ni):
            nft.apply(appedge.port_add(item.port), item.netns,
                      f"register app port {item.port.port} in table bridge edge")
        return item

    def modify(self, old: EdgePort, new: EdgePort) -> EdgePort:
        return self.create(new)

    def delete(self, item: EdgePort) -> None:
        with self.watch.lock(item.ni):
            try:
                if nft.read_tag("bridge", names.EDGE_NFT_TABLE, item.netns) is None:
                    return  # its table went: so did its elements
                nft.apply(appedge.port_delete(item.port), item.netns,
                          f"unregister app port {item.port.port} from table bridge edge")
            except ns.NoSuchNetns:
                pass

    def prepare(self) -> None:
        self._views = {}

    def done_reading(self) -> None:
        self._views = None

    def read(self, item: EdgePort) -> EdgePort | None:
        views = self._views if self._views is not None else {}
        if item.netns not in views:
            views[item.netns] = edge_driver.read_edge(item.netns)
        view = views[item.netns]
        p = item.port
        if view is None or p.port not in view.ports or (p.port, p.mac) not in view.port_mac:
            return None
        if any((p.mac, str(ip)) not in view.fixed for ip in p.ips):
            return None
        return item


class AclTableConf:
    parallel = False

    def __init__(self, watch: EdgeWatch, layout: Layout) -> None:
        self.watch, self.layout = watch, layout

    def create(self, item: AclTable) -> AclTable:
        with self.watch.lock(item.ni):
            view = edge_driver.read_acl(item.netns)
            text = appedge.acl_ruleset(self._with_leases(item.acls),
                                       view.objects if view else ())
            nft.apply(text + edge_driver.tag_block(nft.tag(item.text)), item.netns,
                      "apply nft table inet acl")
        return item

    def _with_leases(self, acls: NIAcls) -> NIAcls:
        """The ACLs with the leased addresses of their apps (ingress is by address)."""
        leased: dict[str, list[IPv4Address]] = {}
        for lease in _leases(self.layout, acls.ni):
            leased.setdefault(lease.mac, []).append(lease.ip)
        apps = tuple(replace(a, ips=tuple(sorted({*a.ips, *leased.get(a.mac, ())})))
                     for a in acls.apps)
        return replace(acls, apps=apps)

    def modify(self, old: AclTable, new: AclTable) -> AclTable:
        return self.create(new)

    def delete(self, item: AclTable) -> None:
        _delete_table(*edge_driver.ACL, item.netns)

    def read(self, item: AclTable) -> AclTable | None:
        tag = edge_driver.acl_tag(item.netns)
        if tag is None:
            return None
        return item if tag == nft.tag(item.text) else replace(item, text=DIFFERS)


def tampered(item: EdgeTable | AclTable) -> EdgeTable | AclTable:
    """The record of an edge table someone else changed (seen in nftables events)."""
    return replace(item, text=DIFFERS)
