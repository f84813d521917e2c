"""Links: transit veths, NI bridges, app plugs (veths from an app's netns to br0)."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from ipaddress import IPv4Interface

from runner.drivers import links
from runner.drivers import netns as ns
from runner.drivers.links import IPRoute, LinkError, LinkInfo
from runner.drivers.rtnl import Rtnl
from runner.net import names
from runner.reconcile.kinds import Bridge, Plug, Veth

NO_ADDRESS = IPv4Interface("0.0.0.0/32")  # read back when a link has not exactly one
GONE_WAIT = 3.0  # s the kernel has to free an NI's netns (and its veth) before we delete


def _one(addresses: tuple[IPv4Interface, ...]) -> IPv4Interface:
    return addresses[0] if len(addresses) == 1 else NO_ADDRESS


def _get(netns: str | None, ifname: str) -> LinkInfo | None:
    try:
        return links.read(netns, ifname)
    except ns.NoSuchNetns:
        return None


def _pair(netns: str | None, ifname: str, peer_netns: str, peer: str
          ) -> tuple[LinkInfo, LinkInfo] | None:
    """Both ends of a veth pair, if `ifname` here and `peer` there are each other's."""
    here = _get(netns, ifname)
    there = _get(peer_netns, peer) if here is not None else None
    if here is None or there is None or here.kind != "veth" or here.peer != there.index \
            or there.peer != here.index:
        return None
    return here, there


class VethConf:
    parallel = False

    def create(self, item: Veth) -> Veth:
        def fresh(nl: Rtnl) -> bool:
            """The usual case, made whole without reads: no link of that name yet."""
            try:
                links.add_veth(nl, item.name, item.peer_name, ns.path(item.peer_netns),
                               item.mtu, up=True)
            except links.LinkExists:
                return False
            links.add_address(nl, item.name, item.address)
            return True

        def inside(nl: Rtnl) -> None:
            links.add_address(nl, item.peer_name, item.peer_address)
            links.set_up(nl, item.peer_name)

        if links.with_rtnl(None, fresh):
            links.with_rtnl(item.peer_netns, inside)
            return item
        if _pair(None, item.name, item.peer_netns, item.peer_name) is None:
            if links.delete(item.name):  # a stale end (its peer went with an old netns)
                links.wait_gone(item.name)
            with Rtnl() as nl:
                links.add_veth(nl, item.name, item.peer_name, ns.path(item.peer_netns),
                               item.mtu)
        return self.modify(item, item)

    def modify(self, old: Veth, new: Veth) -> Veth:
        with links.ipr() as ip:
            links.ensure_up(ip, new.name, new.mtu, (new.address,))
        links.in_netns(new.peer_netns,
                       lambda ip: links.ensure_up(ip, new.peer_name, new.mtu, (new.peer_address,)))
        return new

    def delete(self, item: Veth) -> None:
        links.delete(item.name)  # its peer goes with it

    def await_gone(self, items: list[Veth]) -> None:
        """Pairs that went with their NI's netns: the kernel removes many at once, a
        moment after. Any still here after that (the netns held by someone) are deleted."""
        left = {x.name for x in items}
        deadline = time.monotonic() + GONE_WAIT
        while True:
            left = links.present(sorted(left))
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        for name in sorted(left):
            links.delete(name)

    def read(self, item: Veth) -> Veth | None:
        pair = _pair(None, item.name, item.peer_netns, item.peer_name)
        if pair is None:
            return None
        here, there = pair
        return replace(item, mtu=here.mtu if here.mtu == there.mtu else 0,
                       address=_one(here.addresses), peer_address=_one(there.addresses))

    def sweep(self) -> list[Veth]:
        """Transit links in the device netns (nr<slot>), whoever's NI they were."""
        return [Veth("", n, "", names.NI_TRANSIT_IF, 0, NO_ADDRESS, NO_ADDRESS)
                for n in links.names() if names.transit_slot(n) is not None]


class BridgeConf:
    parallel = False

    def create(self, item: Bridge) -> Bridge:
        def body(ip: IPRoute) -> None:
            links.ensure_bridge(ip, item.name, item.mac, item.mtu)
            links.ensure_up(ip, item.name, item.mtu, (item.address,) if item.address else ())

        links.in_netns(item.netns, body)
        return item

    def modify(self, old: Bridge, new: Bridge) -> Bridge:
        return self.create(new)

    def delete(self, item: Bridge) -> None:
        try:
            links.delete(item.name, item.netns)
        except ns.NoSuchNetns:
            pass

    def read(self, item: Bridge) -> Bridge | None:
        link = _get(item.netns, item.name)
        if link is None or link.kind != "bridge":
            return None
        return replace(item, mac=link.mac, mtu=link.mtu if link.up else 0,
                       address=_one(link.addresses) if link.addresses or item.address
                       else None)


class PlugConf:
    """An app's veth: made from the NI's side with its peer created in the app's netns,
    with a stable MAC, so a re-plugged app gets its old lease back."""

    parallel = False

    def create(self, item: Plug) -> Plug:
        if not os.path.exists(item.app_netns):
            raise LinkError(f"plug {item.app_netns} into NI {item.ni}: "
                            "the app's netns does not exist")

        def fresh(nl: Rtnl) -> bool:
            """The usual case, in one request: no link of that name yet, so the pair is
            made with its NI end up and on the bridge (one there already, here or in
            the app's netns: checked and mended below)."""
            try:
                links.add_veth(nl, item.host_if, item.ifname, item.app_netns, item.mtu,
                               peer_mac=item.mac, up=True, master=item.bridge or None)
            except links.LinkExists:
                return False
            return True

        if links.with_rtnl(item.netns, fresh):
            links.with_rtnl(item.app_netns, lambda nl: links.set_up(nl, "lo", item.ifname))
            return item
        if _pair(item.netns, item.host_if, item.app_netns, item.ifname) is None:
            def again(ip: IPRoute) -> None:
                if links.index(ip, item.host_if) is not None:  # a stale end
                    links.call(f"delete stale link {item.host_if}", ip.link, "del",
                               ifname=item.host_if)
                with Rtnl() as nl:
                    links.add_veth(nl, item.host_if, item.ifname, item.app_netns, item.mtu,
                                   peer_mac=item.mac)

            links.in_netns(item.netns, again)
        return self.modify(item, item)

    def modify(self, old: Plug, new: Plug) -> Plug:
        links.in_netns(new.netns, lambda ip: links.ensure_up(ip, new.host_if, new.mtu,
                                                              master=new.bridge or None))

        def app_side(ip: IPRoute) -> None:
            links.ensure_up(ip, "lo")
            links.ensure_up(ip, new.ifname, new.mtu)

        links.in_netns(new.app_netns, app_side)
        return new

    def delete(self, item: Plug) -> None:
        try:
            links.delete(item.host_if, item.netns)  # the app's end goes with it
        except ns.NoSuchNetns:
            pass

    def read(self, item: Plug) -> Plug | None:
        if not os.path.exists(item.app_netns):
            return None
        pair = _pair(item.netns, item.host_if, item.app_netns, item.ifname)
        if pair is None or pair[1].mac.lower() != item.mac:
            return None
        here, there = pair
        if item.bridge:
            bridge = _get(item.netns, item.bridge)
            on = bridge is not None and here.master == bridge.index
        else:  # a switch NI's port: its table cross-connects it, no bridge
            on = not here.master
        plugged = on and here.up and there.up
        return replace(item, mtu=here.mtu if plugged else 0)
