"""Workloads' own items: a CNI app's address and pinned lease, a tap taken into an NI."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from runner.configurators.links import NO_ADDRESS
from runner.drivers import dhcp, links
from runner.drivers import netns as ns
from runner.drivers.links import LinkError
from runner.reconcile.kinds import AppAddress, TakenLink
from runner.supervisor.status import leases

PIN_TIMEOUT = 3.0  # seconds for dnsmasq to answer "forever" (it re-reads its files on SIGHUP)


def pinned(item: AppAddress) -> bool:
    """dnsmasq's lease file holds the item's address for its MAC forever (expiry 0)."""
    return any(x["expires"] == 0 and x["mac"] == item.mac and x["ip"] == str(item.address.ip)
               for x in leases(Path(item.lease_file)))


class AppAddressConf:
    """Configures the address inside the app's netns by netlink, then asks the NI's
    dnsmasq for it once more: with the pinned dhcp-hosts line in force the ACK makes
    the lease infinite, so nothing in the app has to renew."""

    parallel = False

    def create(self, item: AppAddress) -> AppAddress:
        dhcp.configure(item.app_netns, item.ifname, item.address, item.gateway, item.mtu)
        dhcp.pin(item.app_netns, item.ifname, item.mac, item.address, item.hostname,
                 PIN_TIMEOUT)
        return replace(item, pinned=True)

    def modify(self, old: AppAddress, new: AppAddress) -> AppAddress:
        dhcp.configure(new.app_netns, new.ifname, new.address, new.gateway, new.mtu)
        if not old.pinned or (old.address, old.hostname) != (new.address, new.hostname):
            dhcp.pin(new.app_netns, new.ifname, new.mac, new.address, new.hostname,
                     PIN_TIMEOUT)
        return replace(new, pinned=True)

    def delete(self, item: AppAddress) -> None:
        dhcp.deconfigure(item.app_netns, item.ifname)  # the route goes with the address

    def read(self, item: AppAddress) -> AppAddress | None:
        if not os.path.exists(item.app_netns):
            return None
        found = dhcp.read_configured(item.app_netns, item.ifname)
        if found is None or found.mac != item.mac:
            return None
        address = (item.address if item.address in found.addresses else
                   found.addresses[0] if len(found.addresses) == 1 else NO_ADDRESS)
        return replace(item, address=address, gateway=found.gateway,
                       mtu=found.mtu if found.up else 0, pinned=pinned(item))


class TakenLinkConf:
    """Moves a device interface (a VM's tap: the VM's open fd follows it) into the NI's
    netns onto its bridge, and gives it back to the device netns as it was."""

    parallel = False

    def create(self, item: TakenLink) -> TakenLink:
        here = links.in_netns(item.netns, lambda ip: links.get(ip, item.host_if))
        if here is None:
            with links.ipr() as ip:
                there = links.get(ip, item.interface)
            if there is None:
                raise LinkError(f"take {item.interface} into NI {item.ni}: no such interface "
                                "in the device netns")
            if there.mac.lower() != item.mac:
                raise LinkError(f"take {item.interface} into NI {item.ni}: its MAC is "
                                f"{there.mac}, not {item.mac} (another interface by that name)")
            links.move_to_netns(item.interface, item.netns, item.host_if, item.bridge,
                                mtu=item.mtu)
        return self.modify(item, item)

    def modify(self, old: TakenLink, new: TakenLink) -> TakenLink:
        links.in_netns(new.netns, lambda ip: links.ensure_up(ip, new.host_if, new.mtu,
                                                              master=new.bridge))
        return new

    def delete(self, item: TakenLink) -> None:
        back = links.Borrowed(item.interface, item.mac, item.orig_mtu, item.orig_up, None)
        try:
            links.give_back(back, item.host_if, item.netns)
        except ns.NoSuchNetns:
            pass  # its netns went, and the interface with it

    def read(self, item: TakenLink) -> TakenLink | None:
        def body(ip: links.IPRoute) -> TakenLink | None:
            here = links.get(ip, item.host_if)
            if here is None or here.mac.lower() != item.mac:
                return None
            bridge = links.get(ip, item.bridge)
            plugged = bridge is not None and here.master == bridge.index and here.up
            return replace(item, mtu=here.mtu if plugged else 0)

        try:
            return links.in_netns(item.netns, body)
        except ns.NoSuchNetns:
            return None
