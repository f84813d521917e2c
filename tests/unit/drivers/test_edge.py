"""The app-edge tables read back: parsers of `nft -j list table` as nft 1.0.6 prints it.

nft_edge.json and nft_acl.json were listed from a netns holding the rendered tables
(one app port with a fixed address, two leases, one of an ACL app; one host set).
"""

from __future__ import annotations

from pathlib import Path

from runner.drivers.edge import TAG_CHAIN, parse_acl, parse_edge, tag_block
from runner.flowlog import counters

HERE = Path(__file__).parent


def test_edge_ports_fixed_and_leased_addresses() -> None:
    view = parse_edge((HERE / "nft_edge.json").read_text())
    assert view.ports == {"ap1"}
    assert view.port_mac == {("ap1", "02:00:00:00:00:10")}
    assert view.fixed == {("02:00:00:00:00:10", "10.1.0.10")}
    assert set(view.leased) == {("02:00:00:00:00:11", "10.1.0.100"),
                                ("02:00:00:00:00:10", "10.1.0.101")}
    assert all(0 < left <= 600 for left in view.leased.values())


def test_acl_tag_objects_and_leased_ingress() -> None:
    view = parse_acl((HERE / "nft_acl.json").read_text())
    assert view.tag == "nirunner:abc"
    assert {"chain out_plc", "chain in_plc", "chain r1", "map ingress", "map flows",
            "map egress", "chain decide"} <= view.objects
    assert any(o.startswith("set h_") for o in view.objects)
    assert f"chain {TAG_CHAIN}" not in view.objects  # made anew with every apply
    assert view.leased == {"10.1.0.101": "in_plc"}  # the fixed 10.1.0.10 has no timeout


def test_a_table_listing_gives_only_the_drop_counters() -> None:
    assert counters.edge_drops((HERE / "nft_edge.json").read_text()) == {}


def test_tag_block_is_one_rule_in_its_own_chain() -> None:
    text = tag_block("nirunner:0123")
    assert 'chain tag {\n\t\tcounter comment "nirunner:0123"' in text
    assert text.startswith("table inet acl {")
