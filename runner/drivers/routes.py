"""Policy routing through netlink: route tables and `ip rule`s, in any netns.

Routes nirunner installs carry its own routing protocol number, so syncing a
table (even `main`) never touches the kernel's connected routes or anyone
else's; rules are owned by priority range.
"""

from __future__ import annotations

import errno
import os
from collections import defaultdict
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from runner.drivers import readcache
from runner.drivers.links import LinkError, call, in_netns, index, ipr
from runner.drivers.netns import where
from runner.net.routing import Route, RouteType, Rule

RTPROT_NIRUNNER = 188  # "proto 188" in `ip route`: ours to sync and remove
FR_ACT_TO_TBL = 1
_TYPES = {"unicast": 1, "unreachable": 7, "throw": 9}


RouteError = LinkError  # one error type for everything netlink
_NAMES = {v: RouteType(k) for k, v in _TYPES.items()}


def _key(dst: IPv4Network, metric: int | None) -> tuple[IPv4Network, int]:
    return dst, metric or 0


def _ours(ip: IPRoute, table: int) -> dict[tuple[IPv4Network, int], Any]:
    out = {}
    for r in ip.get_routes(family=2, table=table):
        if r["proto"] != RTPROT_NIRUNNER:
            continue
        if (r.get_attr("RTA_TABLE") or r["table"]) != table:
            continue
        dst = r.get_attr("RTA_DST") or "0.0.0.0"
        out[_key(IPv4Network(f"{dst}/{r['dst_len']}"), r.get_attr("RTA_PRIORITY"))] = r
    return out


def _args(ip: IPRoute, r: Route) -> dict[str, Any]:
    args: dict[str, Any] = {
        "dst": str(r.dst), "table": r.table, "type": _TYPES[str(r.type)],
        "proto": RTPROT_NIRUNNER,
    }
    if r.metric is not None:
        args["priority"] = r.metric
    if r.dev is not None:
        idx = index(ip, r.dev)
        if idx is None:
            raise RouteError(f"add route {r}{where()}: no link {r.dev}")
        args["oif"] = idx
    if r.gateway is not None:
        args["gateway"] = str(r.gateway)
    if r.src is not None:
        args["prefsrc"] = str(r.src)
    return args


def sync(routes: Iterable[Route], tables: Iterable[int], netns: str | None = None) -> None:
    """Each table in `tables` holds exactly the given routes of ours (others untouched)."""
    by_table: dict[int, list[Route]] = defaultdict(list)
    for r in routes:
        by_table[r.table].append(r)
    wanted_tables = sorted(set(tables) | set(by_table))

    def body(ip: IPRoute) -> None:
        for table in wanted_tables:
            have = _ours(ip, table)
            want = by_table.get(table, [])
            for r in want:
                call(f"add route {r}", ip.route, "replace", **_args(ip, r))
            for key in set(have) - {_key(r.dst, r.metric) for r in want}:
                try:
                    ip.route("del", table=table, proto=RTPROT_NIRUNNER, dst=str(key[0]),
                             priority=key[1], type=have[key]["type"])
                except NetlinkError:
                    pass  # gone already

    in_netns(netns, body)


def _rules(ip: IPRoute) -> set[Rule]:
    out = set()
    for r in ip.get_rules(family=2):
        if r["action"] != FR_ACT_TO_TBL:
            continue
        table = r.get_attr("FRA_TABLE") or r["table"]
        out.add(Rule(r.get_attr("FRA_PRIORITY") or 0, table, r.get_attr("FRA_IIFNAME")))
    return out


def _rule_args(r: Rule) -> dict[str, Any]:
    kw: dict[str, Any] = {"family": 2, "priority": r.priority, "table": r.table}
    if r.iif:
        kw["iifname"] = r.iif
    return kw


def sync_rules(want: Iterable[Rule], owned: range, absent: Iterable[Rule] = ()) -> None:
    """Rules with priorities in `owned` become exactly `want`; `absent` ones go."""
    want = set(want)
    with ipr() as ip:
        have = _rules(ip)
        for r in sorted(want - have, key=lambda r: r.priority):
            call(f"add ip rule {r}", ip.rule, "add", **_rule_args(r))
        stale = {r for r in have if r.priority in owned} - want
        for r in stale | (set(absent) & have):
            try:
                ip.rule("del", **_rule_args(r))
            except NetlinkError:
                pass


def read_table(table: int, netns: str | None = None) -> tuple[Route, ...]:
    """Our routes (proto nirunner) of one table, as Route values."""
    def body(ip: IPRoute) -> tuple[Route, ...]:
        names: dict[int, str] = {}
        out = []
        for (dst, metric), r in _ours(ip, table).items():
            oif = r.get_attr("RTA_OIF")
            if oif is not None and oif not in names:
                link = ip.get_links(oif)
                names[oif] = str(link[0].get_attr("IFLA_IFNAME")) if link else "?"
            gw = r.get_attr("RTA_GATEWAY")
            src = r.get_attr("RTA_PREFSRC")
            out.append(Route(table, dst, _NAMES.get(r["type"], RouteType.UNICAST),
                             gateway=IPv4Address(gw) if gw else None,
                             dev=names.get(oif) if oif is not None else None,
                             metric=metric or None, src=IPv4Address(src) if src else None))
        return tuple(sorted(out, key=str))

    return in_netns(netns, body)


def rules() -> set[Rule]:
    """The device netns's rules that look up a table (all priorities); inside a read
    batch, one dump for all of the batch's reads."""
    def dump() -> set[Rule]:
        with ipr() as ip:
            return _rules(ip)

    return set(readcache.cached("rules", dump))


def add_rule(r: Rule) -> None:
    """Add the rule; one that is there already is fine (the kernel says EEXIST)."""
    with ipr() as ip:
        try:
            ip.rule("add", **_rule_args(r))
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise LinkError(f"add ip rule {r}{where()}: {os.strerror(e.code)}") from None


def delete_rule(r: Rule) -> None:
    """Remove the rule; one that is gone already is fine (ENOENT)."""
    with ipr() as ip:
        try:
            ip.rule("del", **_rule_args(r))
        except NetlinkError as e:
            if e.code != errno.ENOENT:
                raise LinkError(f"delete ip rule {r}{where()}: {os.strerror(e.code)}") from None
