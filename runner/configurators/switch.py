"""Switch NIs' links: VLAN links and shims in the device netns, app ports in NI netns.

Each create makes what is missing and fixes what differs; an object of the right
name but the wrong kind, lower device or MAC (a stale one) is deleted and made
anew. The uplink is only named as a lower device, never changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from runner.configurators.nft import NftConf
from runner.drivers import links, nft, segment
from runner.drivers import netns as ns
from runner.drivers.links import IPRoute, LinkError
from runner.reconcile.kinds import NftTable
from runner.reconcile.switch_kinds import PortTable, ShimLink, SwitchPort, VlanLink


def _kept(ip: IPRoute, name: str, good: Callable[[segment.SubLink], bool]) -> bool:
    """Whether link `name` is there as it should be; one that is not (stale) is deleted."""
    live = segment.read(ip, name)
    if live is not None and not good(live):
        links.call(f"delete stale link {name}", ip.link, "del", ifname=name)
        return False
    return live is not None


class VlanConf:
    parallel = False

    def create(self, item: VlanLink) -> VlanLink:
        def body(ip: IPRoute) -> None:
            if not _kept(ip, item.name, lambda live: _is_vlan(live, item, ip)):
                segment.add_vlan(ip, item.name, item.parent, item.vlan, item.mtu)
            links.ensure_up(ip, item.name, item.mtu)

        links.in_netns(None, body)
        return item

    def modify(self, old: VlanLink, new: VlanLink) -> VlanLink:
        return self.create(new)

    def delete(self, item: VlanLink) -> None:
        links.delete(item.name)

    def read(self, item: VlanLink) -> VlanLink | None:
        def body(ip: IPRoute) -> VlanLink | None:
            live = segment.read(ip, item.name)
            if live is None or not _is_vlan(live, item, ip):
                return None
            return replace(item, mtu=live.mtu if live.up else 0)

        return links.in_netns(None, body)


def _is_vlan(live: segment.SubLink, item: VlanLink, ip: IPRoute) -> bool:
    return (live.kind == "vlan" and live.vlan == item.vlan
            and live.lower == links.index(ip, item.parent))


class ShimConf:
    """Its sysctls are set before it is up and has addresses: it must never answer the
    segment's ARP for the device's address, not even for a moment."""

    parallel = False

    def create(self, item: ShimLink) -> ShimLink:
        def fresh(ip: IPRoute) -> None:
            if not _kept(ip, item.name, lambda live: _is_shim(live, item, ip)):
                segment.add_macvlan(ip, item.name, item.parent, item.mac, item.mtu)

        links.in_netns(None, fresh)
        return self.modify(item, item)

    def modify(self, old: ShimLink, new: ShimLink) -> ShimLink:
        ns.set_sysctls(dict(new.sysctls))

        def body(ip: IPRoute) -> None:
            segment.sync_neighbours(ip, new.name, new.neighbours)
            links.ensure_up(ip, new.name, new.mtu, new.addresses)

        links.in_netns(None, body)
        return new

    def delete(self, item: ShimLink) -> None:
        links.delete(item.name)

    def read(self, item: ShimLink) -> ShimLink | None:
        def body(ip: IPRoute) -> ShimLink | None:
            live = segment.read(ip, item.name)
            if live is None or not _is_shim(live, item, ip):
                return None
            info = links.get(ip, item.name)
            addresses = info.addresses if info else ()
            neighbours = tuple(sorted(segment.permanent_neighbours(ip, item.name)))
            return replace(item, mtu=live.mtu if live.up else 0, addresses=addresses,
                           neighbours=neighbours)

        found = links.in_netns(None, body)
        if found is None:
            return None
        now = ns.read_sysctls([key for key, _ in item.sysctls])
        return replace(found, sysctls=tuple((key, now.get(key, "")) for key, _ in item.sysctls))


def _is_shim(live: segment.SubLink, item: ShimLink, ip: IPRoute) -> bool:
    return (live.kind == "macvlan" and live.mode == "bridge" and live.mac == item.mac
            and live.lower == links.index(ip, item.parent))


class SwitchPortConf:
    """An app's macvlan: made from the device netns (where its lower is) straight into
    the NI's netns, then set up there with allmulticast (broadcast reaches every
    macvlan anyway; multicast only with it)."""

    parallel = False

    def create(self, item: SwitchPort) -> SwitchPort:
        live = self._live(item)
        if live is None:
            def stale(ip: IPRoute) -> None:
                if links.index(ip, item.name) is not None:
                    links.call(f"delete stale link {item.name}", ip.link, "del",
                               ifname=item.name)

            links.in_netns(item.netns, stale)
            links.in_netns(None, lambda ip: segment.add_macvlan(
                ip, item.name, item.lower, item.mac, item.mtu, into=item.netns))
        return self.modify(item, item)

    def modify(self, old: SwitchPort, new: SwitchPort) -> SwitchPort:
        def body(ip: IPRoute) -> None:
            segment.set_allmulticast(ip, new.name)
            links.ensure_up(ip, new.name, new.mtu)

        links.in_netns(new.netns, body)
        return new

    def delete(self, item: SwitchPort) -> None:
        try:
            links.delete(item.name, item.netns)
        except ns.NoSuchNetns:
            pass

    def read(self, item: SwitchPort) -> SwitchPort | None:
        live = self._live(item)
        if live is None:
            return None
        ready = live.up and live.allmulti
        return replace(item, mtu=live.mtu if ready else 0)

    def _live(self, item: SwitchPort) -> segment.SubLink | None:
        """The port if it is the app's macvlan of the right lower, else None."""
        try:
            live = links.in_netns(item.netns, lambda ip: segment.read(ip, item.name))
        except ns.NoSuchNetns:
            return None
        if live is None or live.kind != "macvlan" or live.mode != "bridge" \
                or live.mac != item.mac.lower():
            return None
        lower = segment.lower_of(item.lower)
        if lower is None:
            raise LinkError(f"read port {item.name} in {item.netns}: its lower device "
                            f"{item.lower} does not exist")
        return live if live.lower == lower else None


class PortTableConf(NftConf):
    """An app port's table; a new one gets back what the old one's sets learned."""

    def create(self, item: NftTable) -> NftTable:
        made = super().create(item)
        if isinstance(item, PortTable) and item.seed:
            nft.apply(item.seed, item.netns, f"restore the leases of {item.name}")
        return made
