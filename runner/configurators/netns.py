"""Network namespaces and sysctls."""

from __future__ import annotations

from dataclasses import replace

from runner.drivers import links
from runner.drivers import netns as ns
from runner.net import names
from runner.plan.layout import Layout
from runner.reconcile.kinds import Netns, Sysctls


class NetnsConf:
    parallel = True  # `ip netns add/del` is a process each: several at once

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def create(self, item: Netns) -> Netns:
        ns.ensure(item.name)
        links.in_netns(item.name, lambda ip: links.ensure_up(ip, "lo"))
        return replace(item, inode=ns.inode(item.name) or 0)

    def modify(self, old: Netns, new: Netns) -> Netns:
        return self.create(new)

    def delete(self, item: Netns) -> None:
        ns.remove(item.name)

    def read(self, item: Netns) -> Netns | None:
        inode = ns.inode(item.name)
        return None if inode is None else replace(item, inode=inode)

    def sweep(self) -> list[Netns]:
        """NI namespaces this supervisor made: `nr-<ni>` with a state dir of ours.

        Network namespaces are global; one without our state dir may belong to
        another supervisor (a lab, a test) and is none of ours.
        """
        out = []
        for name in ns.list_names(names.NETNS_PREFIX):
            ni = name.removeprefix(names.NETNS_PREFIX)
            if self.layout.ni_dir(ni).is_dir():
                out.append(Netns(ni, name, ns.inode(name) or 0))
        return out


class SysctlsConf:
    """Sysctls are set, never "deleted": they go with their netns or interface."""

    parallel = False

    def create(self, item: Sysctls) -> Sysctls:
        ns.set_sysctls(dict(item.values), item.netns)
        return item

    def modify(self, old: Sysctls, new: Sysctls) -> Sysctls:
        return self.create(new)

    def delete(self, item: Sysctls) -> None:
        pass

    def read(self, item: Sysctls) -> Sysctls | None:
        if item.netns is not None and not ns.exists(item.netns):
            return None
        try:
            now = ns.read_sysctls([key for key, _ in item.values], item.netns)
        except ns.NoSuchNetns:
            return None
        return replace(item, values=tuple((key, now.get(key, "")) for key, _ in item.values))
