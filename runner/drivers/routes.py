"""Policy routing through netlink: route tables and `ip rule`s, in any netns.

Routes nirunner installs carry its own routing protocol number, so syncing a
table (even `main`) never touches the kernel's connected routes or anyone
else's; rules are owned by priority range.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from ipaddress import IPv4Network
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from runner.drivers.links import in_netns, index, ipr
from runner.errors import NirunnerError
from runner.net.routing import Route, Rule

RTPROT_NIRUNNER = 188  # "proto 188" in `ip route`: ours to sync and remove
FR_ACT_TO_TBL = 1
_TYPES = {"unicast": 1, "unreachable": 7, "throw": 9}


class RouteError(NirunnerError):
    pass


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
            raise RouteError(f"route {r}: no link {r.dev}")
        args["oif"] = idx
    if r.gateway is not None:
        args["gateway"] = str(r.gateway)
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
                try:
                    ip.route("replace", **_args(ip, r))
                except NetlinkError as e:
                    raise RouteError(f"route {r}: {e}") from e
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
            try:
                ip.rule("add", **_rule_args(r))
            except NetlinkError as e:
                raise RouteError(f"ip rule {r}: {e}") from e
        stale = {r for r in have if r.priority in owned} - want
        for r in stale | (set(absent) & have):
            try:
                ip.rule("del", **_rule_args(r))
            except NetlinkError:
                pass
