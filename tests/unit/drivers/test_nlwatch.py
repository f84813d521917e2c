"""The watcher's reading of rtnetlink events (runner.drivers.nlwatch), fed raw messages as
the kernel sends them (encoded by pyroute2) through a socket pair: what is drift, what is
an uplink change, and that the messages it need not decode are not decoded."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from runner.drivers import nlwatch
from runner.drivers.nlwatch import DEVICE, Drift, Ours, Watcher


class _Src:
    def __init__(self, owner: str, netns: str | None, sock: socket.socket) -> None:
        self.owner, self.netns, self.rt = owner, netns, sock
        self.nft = sock
        self.batch: list[Any] = []


@pytest.fixture
def world() -> Iterator[tuple[Watcher, list[Drift], list[str], list[int]]]:
    drifts: list[Drift] = []
    uplinks: list[str] = []
    w = Watcher(drifts.append, uplinks.append)
    w.ours = Ours(transit={"nr-t1": "site"}, rules={}, tables={1000}, uplinks={"eth0"})
    decoded: list[int] = []
    parse = w._marshal.parse

    def counting(data: bytes) -> Any:
        out = list(parse(data))
        decoded.extend(int(m["header"]["type"]) for m in out)
        return out

    w._marshal.parse = counting  # type: ignore[method-assign]
    yield w, drifts, uplinks, decoded


def link(kind: int, name: str, index: int, up: bool) -> bytes:
    m = ifinfmsg()
    m["index"] = index
    m["flags"] = nlwatch.IFF_UP if up else 0
    m["attrs"] = [("IFLA_IFNAME", name), ("IFLA_MTU", 1500), ("IFLA_OPERSTATE", "UP"),
                  ("IFLA_STATS64", {"rx_packets": 1})]  # a big attribute, never needed
    m["header"]["type"] = kind
    m.encode()
    return bytes(m.data)


def addr(kind: int, index: int, ip: str) -> bytes:
    m = ifaddrmsg()
    m["family"], m["prefixlen"], m["index"] = socket.AF_INET, 24, index
    m["attrs"] = [("IFA_ADDRESS", ip), ("IFA_LOCAL", ip)]
    m["header"]["type"] = kind
    m.encode()
    return bytes(m.data)


def route(kind: int, dst_len: int, oif: int, proto: int = 3, table: int = 254) -> bytes:
    m = rtmsg()
    m["family"], m["dst_len"], m["table"], m["proto"] = socket.AF_INET, dst_len, table, proto
    m["type"] = 1
    m["attrs"] = [("RTA_OIF", oif)] + ([("RTA_DST", "10.9.0.0")] if dst_len else [])
    m["header"]["type"] = kind
    m.encode()
    return bytes(m.data)


def feed(w: Watcher, owner: str, netns: str | None, *msgs: bytes) -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        b.setblocking(False)
        a.send(b"".join(msgs))  # one datagram of several messages, as the kernel sends
        w._read(_Src(owner, netns, b), b.fileno())  # type: ignore[arg-type]
    finally:
        a.close()
        b.close()


def test_in_an_ni_netns_only_what_can_be_drift_is_decoded(world: Any) -> None:
    w, drifts, uplinks, decoded = world
    feed(w, "site", "nr-site",
         link(nlwatch.RTM_NEWLINK, "br0", 2, up=True),  # made or set up: nothing
         link(nlwatch.RTM_NEWLINK, "ap0000cafe", 3, up=True),
         link(nlwatch.RTM_NEWLINK, "other", 4, up=False),  # not ours
         addr(nlwatch.RTM_NEWADDR, 2, "10.1.0.1"),
         route(nlwatch.RTM_NEWROUTE, 0, 5, proto=188),
         link(nlwatch.RTM_NEWLINK, "ap0000cafe", 3, up=False),  # ours, down: drift
         addr(nlwatch.RTM_DELADDR, 2, "10.1.0.1"),  # on br0 (known by its index only)
         link(nlwatch.RTM_DELLINK, "br0", 2, up=True),
         route(nlwatch.RTM_DELROUTE, 0, 5, proto=188))
    assert [d.what for d in drifts] == [
        "link ap0000cafe set down in nr-site",
        "address 10.1.0.1 removed from br0 in nr-site",
        "link br0 deleted in nr-site",
        "route 0.0.0.0/0 of table 254 deleted in nr-site"]
    assert {d.owner for d in drifts} == {"site"} and uplinks == []
    assert decoded == [nlwatch.RTM_NEWLINK, nlwatch.RTM_DELADDR, nlwatch.RTM_DELLINK,
                       nlwatch.RTM_DELROUTE]


def test_in_the_device_netns_transit_links_and_uplinks(world: Any) -> None:
    w, drifts, uplinks, decoded = world
    feed(w, DEVICE, None,
         link(nlwatch.RTM_NEWLINK, "eth0", 2, up=True),  # first seen: planning reads it
         link(nlwatch.RTM_NEWLINK, "eth0", 2, up=True),  # the same again: no change
         link(nlwatch.RTM_NEWLINK, "nr-t1", 7, up=True),
         link(nlwatch.RTM_NEWLINK, "nr-t1", 7, up=False),
         link(nlwatch.RTM_NEWLINK, "nr-t9", 8, up=False),  # not ours
         route(nlwatch.RTM_NEWROUTE, 24, 7),  # not a default route: not decoded
         route(nlwatch.RTM_NEWROUTE, 0, 2),  # the main table's default via eth0
         addr(nlwatch.RTM_NEWADDR, 2, "192.0.2.5"))
    assert [d.what for d in drifts] == ["link nr-t1 set down"]
    assert drifts[0].owner == "site"
    assert uplinks == ["link eth0 newlink", "default route via eth0 changed",
                       "address 192.0.2.5 added to eth0"]
    assert decoded.count(nlwatch.RTM_NEWLINK) == 3 and nlwatch.RTM_NEWROUTE in decoded
    assert decoded.count(nlwatch.RTM_NEWROUTE) == 1


def test_a_deletion_while_muted_is_reported_once_the_mute_ends(world: Any) -> None:
    """A route deleted by someone else while the supervisor was changing the NI (or a
    moment after) is not lost: it is reported when the NI is no longer muted, and the
    heal's read-back decides whether anything differs."""
    w, drifts, _, _ = world
    w.mute(["site"])
    feed(w, "site", "nr-site",
         link(nlwatch.RTM_NEWLINK, "ap0000cafe", 3, up=False),  # made down: ours
         route(nlwatch.RTM_DELROUTE, 0, 5, proto=188),
         addr(nlwatch.RTM_DELADDR, 3, "10.1.0.1"))
    assert drifts == [] and w._report_missed() == 1.0  # busy: nothing yet
    w.unmute(["site"], grace=0.3)
    wait = w._report_missed()
    assert drifts == [] and 0 < wait <= 0.3  # its grace: not yet, the loop wakes then
    w.unmute(["site"], grace=0.0)
    w._report_missed()
    assert [(d.owner, d.what) for d in drifts] == [
        ("site", "route 0.0.0.0/0 of table 254 deleted in nr-site "
                 "(while nirunner was changing it)")]  # one report per owner
    w._report_missed()
    assert len(drifts) == 1
