"""The app-edge tables of an NI netns as they are: table bridge edge's ports and addresses,
table inet acl's tag, objects and leased ingress addresses, and their counters.

One `nft -j list table` each (the parsers are pure, for the unit tests). Table
inet acl is kept across changes (its host-name sets must stay), and a table's
comment cannot change once it exists, so its tag is the comment of a rule in
chain `tag`, made anew with the rules on every apply.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from runner.drivers import netns as ns
from runner.drivers import nfnl, nft
from runner.flowlog import counters
from runner.net import names

EDGE = ("bridge", names.EDGE_NFT_TABLE)
ACL = ("inet", names.ACL_NFT_TABLE)
TAG_CHAIN = "tag"


@dataclass(frozen=True)
class EdgeView:
    ports: frozenset[str] = frozenset()  # registered app ports
    port_mac: frozenset[tuple[str, str]] = frozenset()
    fixed: frozenset[tuple[str, str]] = frozenset()  # (MAC, IP) allowed for good
    leased: dict[tuple[str, str], int] = field(default_factory=dict)  # -> seconds left


@dataclass(frozen=True)
class AclView:
    tag: str = ""  # the comment of the rule in chain tag ("" if none)
    objects: frozenset[str] = frozenset()  # "chain out_plc", "set h_...", "limit l3", ...
    leased: dict[str, str] = field(default_factory=dict)  # ingress address with a timeout
    #                                                       -> its chain


def _items(text: str) -> list[dict[str, Any]]:
    items = json.loads(text).get("nftables", [])
    return [i for i in items if isinstance(i, dict)]


def _elements(item: dict[str, Any]) -> list[tuple[Any, int | None]]:
    """(value, timeout or None) of a set's or map's elements (a map's: (key, verdict))."""
    out = []
    for e in item.get("elem", []):
        if isinstance(e, list) and len(e) == 2:  # a map element: [key, value]
            key, value = e
            timeout = key.get("elem", {}).get("expires") if isinstance(key, dict) else None
            if isinstance(key, dict) and "elem" in key:
                key = key["elem"].get("val")
            out.append(((key, value), timeout))
        elif isinstance(e, dict) and "elem" in e:
            out.append((e["elem"].get("val"), e["elem"].get("expires")))
        else:
            out.append((e, None))
    return out


def _concat(value: Any) -> tuple[str, ...]:
    if isinstance(value, dict) and "concat" in value:
        return tuple(str(x) for x in value["concat"])
    return (str(value),)


def parse_edge(text: str) -> EdgeView:
    """`nft -j list table bridge edge` -> its ports and addresses."""
    ports: set[str] = set()
    port_mac: set[tuple[str, str]] = set()
    fixed: set[tuple[str, str]] = set()
    leased: dict[tuple[str, str], int] = {}
    for item in _items(text):
        s = item.get("map") or item.get("set")
        if not isinstance(s, dict):
            continue
        for value, expires in _elements(s):
            if s.get("name") == "ports":
                ports.add(str(value[0]))
            elif s.get("name") == "port_mac":
                port, mac = _concat(value)
                port_mac.add((port, mac))
            elif s.get("name") == "mac_ip":
                mac, ip = _concat(value)
                if expires is None:
                    fixed.add((mac, ip))
                else:
                    leased[(mac, ip)] = int(expires)
    return EdgeView(frozenset(ports), frozenset(port_mac), frozenset(fixed), leased)


def parse_acl(text: str) -> AclView:
    """`nft -j list table inet acl` -> its tag, objects and leased ingress addresses."""
    tag = ""
    objects: set[str] = set()
    leased: dict[str, str] = {}
    for item in _items(text):
        for kind in ("chain", "set", "map", "limit"):
            obj = item.get(kind)
            if isinstance(obj, dict) and "name" in obj:
                objects.add(f"{kind} {obj['name']}")
                if kind == "map" and obj["name"] == "ingress":
                    for (key, verdict), expires in _elements(obj):
                        if expires is not None and isinstance(verdict, dict):
                            leased[str(key)] = str(verdict.get("jump", {}).get("target", ""))
        rule = item.get("rule")
        if isinstance(rule, dict) and rule.get("chain") == TAG_CHAIN:
            tag = str(rule.get("comment", ""))
    objects.discard(f"chain {TAG_CHAIN}")
    return AclView(tag, frozenset(objects), leased)


def _list(family: str, table: str, netns: str) -> str | None:
    """The table as JSON, or None if it (or the netns) does not exist."""
    try:
        if nft.read_tag(family, table, netns) is None:
            return None
        return nft.list_json(family, table, netns)
    except ns.NoSuchNetns:
        return None


def read_edge(netns: str) -> EdgeView | None:
    text = _list(*EDGE, netns)
    return None if text is None else parse_edge(text)


def read_acl(netns: str) -> AclView | None:
    text = _list(*ACL, netns)
    return None if text is None else parse_acl(text)


def acl_tag(netns: str) -> str | None:
    """The tag of table inet acl (see tag_block); None without the table. One netlink
    request: a read-back of many NIs must not run nft for each."""
    def read() -> str | None:
        if nfnl.table_comment(*ACL) is None:  # a dump finds nothing of a missing table
            return None
        return next((c for c in nfnl.rule_comments(*ACL, TAG_CHAIN) or () if c), "")

    try:
        return ns.run_in(netns, read)
    except ns.NoSuchNetns:
        return None


def tag_block(tag: str) -> str:
    """The rule that carries table inet acl's tag (appended to its ruleset)."""
    return (f"table inet {names.ACL_NFT_TABLE} {{\n\tchain {TAG_CHAIN} {{\n"
            f'\t\tcounter comment "{tag}"\n\t}}\n}}\n')


def counters_of(netns: str) -> dict[str, Any] | None:
    """Drops per app port and case, and per-rule packets and bytes; None without tables."""
    edge = _list(*EDGE, netns)
    acl = _list(*ACL, netns)
    if edge is None and acl is None:
        return None
    return {"drops": counters.edge_drops(edge) if edge else {},
            "rules": counters.acl_rules(acl) if acl else {}}
