from __future__ import annotations

import json

from runner.flowlog import counters


def test_edge_drops_per_port_and_case() -> None:
    text = json.dumps({"nftables": [{"metainfo": {}}, {"set": {"name": "drops", "elem": [
        {"elem": {"val": {"concat": ["ap1", 2]}, "counter": {"packets": 5, "bytes": 300}}},
        {"elem": {"val": {"concat": ["ap1", 3]}, "counter": {"packets": 1, "bytes": 42}}},
        {"elem": {"val": {"concat": ["ap2", 99]}, "counter": {"packets": 1, "bytes": 1}}},
    ]}}]})
    assert counters.edge_drops(text) == {"ap1": {"ip": 5, "arp": 1}}


def _rule(chain: str, expr: list[object], comment: str | None = None) -> dict[str, object]:
    r: dict[str, object] = {"chain": chain, "expr": expr}
    if comment:
        r["comment"] = comment
    return {"rule": r}


def test_acl_rule_counters_follow_the_mark_to_the_rules_chain() -> None:
    mark = {"mangle": {"key": {"ct": {"key": "mark"}}, "value": 0x43FF0003}}
    text = json.dumps({"nftables": [
        _rule("out_plc", [mark, {"return": None}], "plc egress 0"),
        _rule("out_plc", [{"counter": {"packets": 2, "bytes": 200}}, {"drop": None}],
              "plc egress 1"),
        _rule("r3", [{"counter": {"packets": 7, "bytes": 7000}}]),
        _rule("r9", [{"counter": {"packets": 1, "bytes": 1}}]),  # no rule sets 9
    ]})
    assert counters.acl_rules(text) == {
        "plc egress 0": {"packets": 7, "bytes": 7000},
        "plc egress 1": {"packets": 2, "bytes": 200}}
