"""Per-port drop counters of table bridge edge and per-rule counters of table inet acl.

Pure: the input is the text of `nft -j list set bridge edge drops` and of
`nft -j list table inet acl`; the output plain dicts, ready for JSON.
"""

from __future__ import annotations

import json
from typing import Any

from runner.net.appedge import SpoofCase


def _items(text: str) -> list[dict[str, Any]]:
    items = json.loads(text).get("nftables", [])
    return [i for i in items if isinstance(i, dict)]


def edge_drops(text: str) -> dict[str, dict[str, int]]:
    """{port: {case: packets}} from the `drops` set (cases by SpoofCase name, lower case),
    listed alone or with its table."""
    out: dict[str, dict[str, int]] = {}
    for item in _items(text):
        if item.get("set", {}).get("name", "drops") != "drops":  # a listing of the table
            continue
        for e in item.get("set", {}).get("elem", []):
            elem = e.get("elem", {}) if isinstance(e, dict) else {}
            port, case = elem.get("val", {}).get("concat", [None, None])
            try:
                name = SpoofCase(int(case)).name.lower()
            except (TypeError, ValueError):
                continue
            out.setdefault(str(port), {})[name] = int(elem.get("counter", {}).get("packets", 0))
    return out


def acl_rules(text: str) -> dict[str, dict[str, int]]:
    """{"<app> <direction> <rule index>|default" or "<app> portmap <name>": packets, bytes}.

    Drop rules count inline; an allow or limit rule counts in its chain r<id>
    (every packet of the flows it admitted, both ways), found through the
    conntrack mark that the rule sets.
    """
    rules = [i["rule"] for i in _items(text) if "rule" in i]
    label_of_rid: dict[int, str] = {}
    out: dict[str, dict[str, int]] = {}
    for r in rules:
        label = r.get("comment")
        for e in r.get("expr", []):
            mangle = e.get("mangle") if isinstance(e, dict) else None
            if label and mangle and mangle.get("key") == {"ct": {"key": "mark"}}:
                label_of_rid[int(mangle["value"]) & 0xFFFF] = label
    for r in rules:
        counter = next((e["counter"] for e in r.get("expr", [])
                        if isinstance(e, dict) and isinstance(e.get("counter"), dict)), None)
        if counter is None:
            continue
        chain = r.get("chain", "")
        if chain.startswith("r") and chain[1:].isdigit():
            label = label_of_rid.get(int(chain[1:]))
        else:
            label = r.get("comment")
        if label:
            out[label] = {"packets": int(counter["packets"]), "bytes": int(counter["bytes"])}
    return out
