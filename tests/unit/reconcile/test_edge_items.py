"""The app edge's items as scripts of expected ops: every NI's tables, one edge port per
attachment registered before its plug and removed after it, ACL changes live."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

from runner.model.types import App, FlowLog
from runner.net.appedge import AclProtocol, AclRule, Action, Direction
from runner.plan.layout import Layout
from runner.reconcile import kinds as k
from runner.reconcile.build import AppPlug, Items, build
from runner.reconcile.build_edge import FollowMemo, follows
from runner.reconcile.diff import DELETE_PHASE, check_ranks, diff
from runner.reconcile.report import result
from tests.unit.plan.sample import ALPHA, BETA, DELTA, FACTS, GAMMA, site
from tests.unit.reconcile.test_reconcile import LAYOUT, UPLINKS, ids

WEB = "52:54:00:00:01:10"  # alpha's reservation "web"
PLC = App("plc", "02:00:00:00:00:10", IPv4Address("10.1.0.20"), (
    AclRule(Direction.EGRESS, Action.ALLOW, host="www.example.test",
            protocol=AclProtocol.TCP, ports=(80, 80)),
    AclRule(Direction.INGRESS, Action.DROP, remote=IPv4Network("203.0.113.0/24"))))
ALPHA2 = replace(ALPHA, apps=(PLC,))
PLUGS = (AppPlug("alpha", "/run/netns/web", "eth0", "ap00000001", WEB),
         AppPlug("alpha", "/run/netns/plc", "eth0", "ap00000002", PLC.mac),
         AppPlug("alpha", "/run/netns/x", "eth0", "ap00000003", "02:00:00:00:00:99"))


def items(alpha: object = ALPHA2, plugs: tuple[AppPlug, ...] = PLUGS) -> Items:
    return build(site((alpha, BETA, GAMMA, DELTA), FACTS), LAYOUT, "nirunner/ni:1",  # type: ignore[arg-type]
                 UPLINKS, ("eth0", "eth1"), plugs, app_netns={p.netns: 7 for p in plugs})


def test_every_ni_has_its_tables_and_every_attachment_a_port() -> None:
    now = items()
    check_ranks(now)
    for ni in ("alpha", "beta", "gamma", "delta"):
        assert f"edge:nr-{ni}" in now and f"acl:nr-{ni}" in now
    ports = {x.port.port: x.port for x in now.values() if isinstance(x, k.EdgePort)}
    assert ports["ap00000001"].app == "web"  # a reservation is a declared app
    assert ports["ap00000001"].ips == (IPv4Address("10.1.0.10"),)
    assert ports["ap00000002"].app == "plc" and ports["ap00000002"].ips == (PLC.ip,)
    assert ports["ap00000003"].app is None and ports["ap00000003"].ips == ()  # undeclared
    acl = now["acl:nr-alpha"]
    assert isinstance(acl, k.AclTable) and [a.app for a in acl.acls.apps] == ["plc"]
    assert acl.acls.apps[0].port_maps == ()  # no port map targets it
    assert "nftset=/www.example.test/4#inet#acl#" in dict(
        now["files:alpha"].files)["nftsets.conf"]  # type: ignore[attr-defined]


def test_a_port_is_registered_before_its_plug_and_removed_after_it() -> None:
    made = diff({}, items())
    order = [op.id for op in made.ops]
    for p in PLUGS:
        assert order.index(f"edgeport:nr-alpha/{p.host_ifname}") < order.index(
            f"plug:alpha/{p.host_ifname}")
    assert order.index("edge:nr-alpha") < order.index("edgeport:nr-alpha/ap00000001")
    assert order.index("acl:nr-alpha") < order.index("task:ni-alpha")  # dnsmasq fills its sets
    gone = diff(items(), items(plugs=PLUGS[:2]), scope={"alpha"})
    assert ids(gone) == ["delete plug:alpha/ap00000003", "delete edgeport:nr-alpha/ap00000003"]
    assert result(gone.ops, "alpha").line() == "alpha: updated (apps)"


def test_an_acl_change_is_one_live_modify() -> None:
    changed = replace(PLC, acls=(PLC.acls or ())[:1])
    d = diff(items(), items(replace(ALPHA, apps=(changed,))), scope={"alpha"})
    assert ids(d) == ["modify acl:nr-alpha"]  # no task, no file
    assert d.lines() == ["~ nft table inet acl in nr-alpha: ACLs of app plc changed"]
    assert result(d.ops, "alpha").line() == "alpha: updated (ACLs)"


def test_a_new_host_name_changes_dnsmasqs_sets_file_not_the_task() -> None:
    host = AclRule(Direction.EGRESS, Action.ALLOW, host="api.example.test")
    more = replace(PLC, acls=(*(PLC.acls or ()), host))
    d = diff(items(), items(replace(ALPHA, apps=(more,))), scope={"alpha"})
    assert sorted(ids(d)) == ["modify acl:nr-alpha", "modify files:alpha"]
    assert any("nftsets.conf" in line for line in d.lines())


def test_a_port_map_to_an_acl_app_is_its_ingress_allow() -> None:
    from runner.model.types import PortMap, Protocol

    alpha = replace(ALPHA2, port_maps=(*ALPHA.port_maps,
                                       PortMap("plc", Protocol.TCP, 8081, "plc", 80)))
    acl = items(alpha)["acl:nr-alpha"]
    assert isinstance(acl, k.AclTable)
    (pm,) = acl.acls.apps[0].port_maps
    assert (pm.name, pm.protocol, pm.target_port) == ("plc", AclProtocol.TCP, 80)
    assert "plc portmap plc" in acl.text


def test_declaring_an_attached_app_re_registers_its_port() -> None:
    d = diff(items(ALPHA), items(ALPHA2), scope={"alpha"})
    assert ("recreate edgeport:nr-alpha/ap00000002" in ids(d)
            and "modify acl:nr-alpha" in ids(d))
    assert not [op for op in d.ops if op.item.KIND in ("task", "plug")]


def test_the_flow_log_setting_is_a_sysctl_change_and_a_follow() -> None:
    off = replace(ALPHA2, flow_log=FlowLog(enabled=False))
    d = diff(items(), items(off), scope={"alpha"})
    assert "modify sysctls:nr-alpha" in ids(d)
    assert any("nf_conntrack_acct 1 -> 0" in line for line in d.lines())
    plan = site((ALPHA2, BETA, GAMMA, DELTA), FACTS)
    f = follows(plan, Layout(LAYOUT.root), {"alpha": 11, "delta": 12})
    assert set(f) == {"alpha", "delta"}  # only NIs whose netns exists
    a = f["alpha"]
    assert a.inode == 11 and a.listen and a.log_path.endswith("/ni/alpha/flows.jsonl")
    assert a.lease_path.endswith("/ni/alpha/state/dnsmasq.leases")
    assert a.acl_apps == ((PLC.mac, "plc"),) and a.hosts == ("www.example.test",)
    assert dict(a.labels) == {1: "plc egress 0"}
    assert ("web", WEB, ("10.1.0.10",)) in a.apps
    quiet = follows(site((off, BETA, GAMMA, DELTA), FACTS), LAYOUT, {"alpha": 11})["alpha"]
    assert quiet.listen and quiet.log_path == ""  # host names only: no records kept


def test_follows_are_reused_while_an_nis_plan_and_netns_are_the_same() -> None:
    plan = site((ALPHA2, BETA, GAMMA, DELTA), FACTS)
    memo: FollowMemo = {}
    first = follows(plan, LAYOUT, {"alpha": 11, "delta": 12}, memo)
    again = follows(plan, LAYOUT, {"alpha": 11, "delta": 12}, memo)
    assert again["alpha"] is first["alpha"] and again == first
    renewed = follows(plan, LAYOUT, {"alpha": 13, "delta": 12}, memo)  # a new netns
    assert renewed["alpha"].inode == 13 and renewed["delta"] is first["delta"]
    off = replace(ALPHA2, flow_log=FlowLog(enabled=False))
    changed = follows(site((off, BETA, GAMMA, DELTA), FACTS), LAYOUT, {"alpha": 13}, memo)
    assert changed["alpha"].log_path == "" and set(memo) == {"alpha"}  # delta's is gone


def test_delete_phase_of_an_ni_implies_its_tables() -> None:
    d = diff(items(), items(), scope={"alpha"})
    assert d.ops == ()
    gone = build(site((BETA, GAMMA, DELTA), FACTS), LAYOUT, "nirunner/ni:1", UPLINKS,
                 ("eth0", "eth1"))
    d = diff(items(), gone, scope={"alpha"})
    edge_ops = [op for op in d.ops if op.item.KIND in ("edge", "acl", "edgeport")]
    assert edge_ops and all(op.phase == DELETE_PHASE and op.implied for op in edge_ops)
