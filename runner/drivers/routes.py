"""Policy routing in the device netns: per-uplink route tables and `ip rule`s."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from runner.drivers.links import index, ipr
from runner.errors import NirunnerError

RT_TABLE_LOCAL = 255
FR_ACT_TO_TBL = 1


class RouteError(NirunnerError):
    pass


@dataclass(frozen=True, order=True)
class Route:
    dst: IPv4Network
    dev: str | None = None
    gateway: IPv4Address | None = None
    kind: str = "unicast"  # unicast | throw


@dataclass(frozen=True, order=True)
class Rule:
    priority: int
    table: int
    iif: str | None = None


def _routes(ip: IPRoute, table: int) -> dict[IPv4Network, dict]:
    out = {}
    for r in ip.get_routes(family=2, table=table):
        if r.get("table") != table and r.get_attr("RTA_TABLE") != table:
            continue
        dst = r.get_attr("RTA_DST") or "0.0.0.0"
        out[IPv4Network(f"{dst}/{r['dst_len']}")] = r
    return out


def sync_table(table: int, want: list[Route]) -> None:
    """Make route table `table` hold exactly `want` (replace what differs)."""
    with ipr() as ip:
        have = _routes(ip, table)
        for r in want:
            args: dict[str, object] = {"dst": str(r.dst), "table": table, "type": r.kind}
            if r.dev is not None:
                idx = index(ip, r.dev)
                if idx is None:
                    raise RouteError(f"route {r.dst} table {table}: no link {r.dev}")
                args["oif"] = idx
            if r.gateway is not None:
                args["gateway"] = str(r.gateway)
            try:
                ip.route("replace", **args)
            except NetlinkError as e:
                raise RouteError(f"route {r.dst} table {table}: {e}") from e
        for dst in set(have) - {r.dst for r in want}:
            try:
                ip.route("del", dst=str(dst), table=table, type=have[dst]["type"])
            except NetlinkError:
                pass


def flush_table(table: int) -> None:
    sync_table(table, [])


def _rules(ip: IPRoute) -> list[Rule]:
    out = []
    for r in ip.get_rules(family=2):
        if r["action"] != FR_ACT_TO_TBL:
            continue
        table = r.get_attr("FRA_TABLE") or r["table"]
        out.append(Rule(r.get_attr("FRA_PRIORITY") or 0, table, r.get_attr("FRA_IIFNAME")))
    return out


def sync_rules(want: list[Rule], owned: range) -> None:
    """Rules with priorities in `owned` become exactly `want`; others are untouched."""
    with ipr() as ip:
        have = [r for r in _rules(ip) if r.priority in owned]
        for r in set(want) - set(have):
            kw: dict[str, object] = {"priority": r.priority, "table": r.table}
            if r.iif:
                kw["iifname"] = r.iif
            try:
                ip.rule("add", family=2, **kw)
            except NetlinkError as e:
                raise RouteError(f"ip rule {r}: {e}") from e
        for r in set(have) - set(want):
            kw = {"priority": r.priority, "table": r.table}
            if r.iif:
                kw["iifname"] = r.iif
            try:
                ip.rule("del", family=2, **kw)
            except NetlinkError:
                pass


def move_local_rule(priority: int) -> None:
    """Put the `lookup local` rule at `priority` (below the per-NI uplink rules)."""
    with ipr() as ip:
        rules = [r for r in _rules(ip) if r.table == RT_TABLE_LOCAL and r.iif is None]
        if not any(r.priority == priority for r in rules):
            ip.rule("add", family=2, priority=priority, table=RT_TABLE_LOCAL)
        for r in rules:
            if r.priority != priority:
                ip.rule("del", family=2, priority=r.priority, table=RT_TABLE_LOCAL)
