from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from runner.net.appedge import AppPort, Lease, NIAcls, host_set
from runner.render import appedge
from tests.unit.render.appedge_sample import (
    LEASES,
    PLC_IP,
    PLC_MAC,
    PLC_RULES,
    PORTS,
    acls,
)
from tests.unit.render.test_nft import NFT, needs_nft

EDGE = appedge.edge_ruleset("factory", PORTS, LEASES, lease_seconds=3600)
ACL = appedge.acl_ruleset(acls())
# the plc loses its last three rules, so their chains and limit go
UPDATE = appedge.acl_ruleset(acls(PLC_RULES[:2]), appedge.objects(acls()))
ELEMENTS = (appedge.port_add(PORTS[0]) + appedge.port_delete(PORTS[0])
            + appedge.lease_set(LEASES[0], "hmi") + appedge.lease_delete(LEASES[0], "hmi")
            + appedge.host_refresh("www.example.test", [IPv4Address("192.0.2.10")], 5))
TEXTS = {"appedge/edge.nft": EDGE, "appedge/acl.nft": ACL, "appedge/acl-update.nft": UPDATE,
         "appedge/elements.nft": ELEMENTS}


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_matches_golden(name: str, golden: Callable[[str, str], None]) -> None:
    golden(name, TEXTS[name])


def test_rendering_does_not_depend_on_order() -> None:
    assert appedge.edge_ruleset("factory", PORTS[::-1], LEASES, lease_seconds=3600) == EDGE
    again = acls()
    assert appedge.acl_ruleset(replace(again, apps=again.apps[::-1])) == ACL


def test_every_app_port_is_checked_and_each_case_counted_per_port() -> None:
    for p in PORTS:
        assert f'"{p.port}" : jump app' in EDGE and f'"{p.port}" . {p.mac}' in EDGE
    assert f"{PLC_MAC} . {PLC_IP}," in EDGE  # reserved: no timeout
    assert "02:00:00:00:00:11 . 10.1.0.123 timeout 3600s" in EDGE  # leased
    for case in ("mac", "ip", "arp", "dhcp_server", "ra", "vlan"):
        chain = EDGE.split(f"chain drop_{case} {{")[1].split("\n\t}")[0]
        assert "update @drops { iifname . " in chain and "counter drop" in chain
        assert f'log prefix "edge {case} " group 7' in chain


def test_the_nis_own_acks_allow_their_address_until_the_supervisor_takes_it_over() -> None:
    learn = EDGE.split("chain learn {")[1].split("\n\t}")[0]
    assert "hook output" in learn  # frames the NI itself sends: its dnsmasq's
    assert "udp sport 67 udp dport 68 @th,64,8 2 @th,1984,24 0x350105" in learn  # an ACK
    assert "update @acked { @th,288,48 . @th,192,32 }" in learn
    assert "timeout 3600s" in EDGE.split("set acked {")[1].split("}")[0]
    for chain, check in (("app_arp", "@ll,48,48 . @nh,112,32 @acked accept"),
                         ("app_ip", "@ll,48,48 . @nh,96,32 @acked goto app_ip_from")):
        assert check in EDGE.split(f"chain {chain} {{")[1].split("\n\t}")[0]
    # no DHCP: nothing learned
    assert "chain learn" not in appedge.edge_ruleset("factory", PORTS, LEASES)
    taken = "delete element bridge edge acked { 0x020000000011 . 0x0a01007b }"
    assert taken in appedge.lease_set(LEASES[0]) and taken in appedge.lease_delete(LEASES[0])


def test_frames_of_unregistered_ports_are_dropped_unless_trusted() -> None:
    pre = EDGE.split("chain prerouting {")[1].split("\n\t}")[0]
    assert [line.strip() for line in pre.strip().splitlines()[1:]] == [
        "iifname vmap @ports", "iifname @trusted accept", "goto drop_port"]
    with_uplink = appedge.edge_ruleset("factory", PORTS, trusted=["eth1.100"])
    assert 'elements = { "eth1.100" }' in with_uplink.split("set trusted {")[1]


def test_generation_follows_rules_not_addresses() -> None:
    a = acls()
    moved = replace(a, apps=(replace(a.apps[0], ips=(IPv4Address("10.1.0.99"),)), a.apps[1]))
    assert appedge.generation(moved) == appedge.generation(a)
    assert appedge.generation(acls(PLC_RULES[:2])) != appedge.generation(a)
    assert 1 <= appedge.generation(NIAcls("x")) <= 0xFFFF


def test_first_packet_decides_and_mark_carries_generation_and_rule() -> None:
    gen = appedge.generation(acls())
    assert f"ct mark set 0x{gen << 16 | 1:08x} return" in ACL
    assert f"0x{gen << 16 | 1:08x} : jump r1" in ACL
    assert f"ct mark and 0xffff0000 != 0x{gen << 16:08x} jump decide" in ACL


def test_app_with_acls_is_default_deny_but_dhcp_and_dns() -> None:
    for chain in ("out_plc", "in_plc", "out_hmi", "in_hmi"):
        body = ACL.split(f"chain {chain} {{")[1].split("\n\t}")[0].strip().splitlines()
        assert body[-1].strip().startswith("counter drop comment")
    inp = ACL.split("chain input {")[1].split("\n\t}")[0]
    assert 'udp dport 67 accept' in inp and "th dport 53 accept" in inp


def test_ingress_rules_come_before_the_port_map_allow() -> None:
    chain = ACL.split("chain in_plc {")[1].split("\n\t}")[0]
    assert chain.index("203.0.113.0/24") < chain.index("portmap plc-web")


def test_update_keeps_host_sets_and_deletes_what_is_gone() -> None:
    assert "delete table" not in UPDATE and "flush table inet acl" in UPDATE
    assert f"delete set inet acl {host_set('www.example.test')}" not in UPDATE
    assert f"delete set inet acl {host_set('updates.example.test')}" not in UPDATE
    gone = appedge.objects(acls()) - appedge.objects(acls(PLC_RULES[:2]))
    assert gone and all(f"\ndelete {o.replace(' ', ' inet acl ', 1)}\n" in UPDATE
                        for o in gone if not o.startswith("map"))


def test_dnsmasq_fills_one_set_per_host() -> None:
    assert appedge.dnsmasq_nftsets(acls()) == [
        f"nftset=/updates.example.test/4#inet#acl#{host_set('updates.example.test')}",
        f"nftset=/www.example.test/4#inet#acl#{host_set('www.example.test')}",
    ]


def _nft_script(tmp_path: Path, steps: list[str], then: str) -> str:
    assert NFT is not None
    cmds = []
    for i, text in enumerate(steps):
        f = tmp_path / f"{i}.nft"
        f.write_text(text)
        cmds.append(f"{NFT[-1]} -f {f}")
    done = subprocess.run([*NFT[:-1], "sh", "-ec", " && ".join([*cmds, then])],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_nft
def test_nft_takes_tables_updates_and_element_changes(tmp_path: Path) -> None:
    """Twice each (idempotent), and a host's addresses survive an ACL change."""
    www = host_set("www.example.test")
    fill = f"add element inet acl {www} {{ 192.0.2.10 }}\n"
    lease = Lease("02:00:00:00:00:12", IPv4Address("10.1.0.150"), 60)
    out = _nft_script(tmp_path, [
        EDGE, EDGE, ACL, fill, UPDATE, UPDATE, ACL,
        appedge.port_delete(PORTS[2]), appedge.port_delete(PORTS[2]),
        appedge.port_add(PORTS[2]), appedge.lease_set(lease), appedge.lease_set(lease),
        appedge.lease_delete(lease), appedge.lease_delete(lease),
        appedge.lease_set(LEASES[0], "hmi"), appedge.lease_set(LEASES[0], "hmi"),
        appedge.host_refresh("www.example.test", [IPv4Address("192.0.2.10")], 5),
    ], f"{NFT[-1] if NFT else ''} list ruleset")
    assert "192.0.2.10 timeout 5s" in out
    assert "10.1.0.150" not in out
    assert "10.1.0.123 timeout 1h" in out.split("map ingress {")[1].split("}")[0]


def test_bad_values_are_refused() -> None:
    from runner.net.errors import NetValueError

    with pytest.raises(NetValueError):
        AppPort('ap"x', PLC_MAC)
    with pytest.raises(NetValueError):
        AppPort("ap1", "02:00:00:00:00:1G")
