"""Watch the device netns for uplink changes (address, link state, default route).

rtnetlink multicast groups deliver the kernel's own notifications, so a change
is seen at once and costs nothing while nothing changes (no polling).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from pyroute2 import IPRoute
from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_LINK

log = logging.getLogger("nirunner.watch")

MAIN_TABLE = 254


def watch_uplinks(interfaces: Collection[str], on_change: Callable[[str], None]) -> None:
    """Block forever, calling on_change(reason) for each change that concerns an uplink.

    Our own routes (other tables) and links (transit veths) are ignored, so a
    reconcile does not wake itself up.
    """
    ip = IPRoute()
    ip.bind(groups=RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE)
    names: dict[int, str] = {}

    def uplink_of(index: int | None) -> str | None:
        if index is None:
            return None
        if index not in names:
            try:
                link = ip.get_links(index)[0]
                names[index] = str(link.get_attr("IFLA_IFNAME"))
            except Exception:  # gone already
                return None
        name = names[index]
        return name if name in interfaces else None

    while True:
        for msg in ip.get():
            event = msg.get("event", "")
            if event in ("RTM_NEWLINK", "RTM_DELLINK"):
                names.pop(msg["index"], None)  # renames, re-creations
                up = uplink_of(msg["index"]) or (
                    msg.get_attr("IFLA_IFNAME") if msg.get_attr("IFLA_IFNAME") in interfaces
                    else None)
                if up:
                    on_change(f"link {up} {event[4:].lower()}")
            elif event in ("RTM_NEWADDR", "RTM_DELADDR"):
                up = uplink_of(msg["index"])
                if up:
                    on_change(f"address {msg.get_attr('IFA_ADDRESS')} "
                              f"{'added to' if event == 'RTM_NEWADDR' else 'removed from'} {up}")
            elif event in ("RTM_NEWROUTE", "RTM_DELROUTE"):
                table = msg.get_attr("RTA_TABLE") or msg["table"]
                if table == MAIN_TABLE and msg["dst_len"] == 0:
                    up = uplink_of(msg.get_attr("RTA_OIF"))
                    if up:
                        on_change(f"default route via {up} changed")
