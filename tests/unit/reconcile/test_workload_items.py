"""Workloads in the plan and as items: a CNI app's pinned lease and port maps in its NI's
files and nft tables, its address as an item on its plug, a tap taken into an NI."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface

import pytest

from runner.model.types import PortMap, Protocol
from runner.plan.errors import PlanError
from runner.plan.ni import NIWorkloads, PinnedLease
from runner.plan.site import build as plan_site
from runner.reconcile import kinds as k
from runner.reconcile.build import AppPlug, build
from runner.reconcile.diff import check_ranks, diff
from runner.reconcile.items import Action
from runner.reconcile.report import result
from tests.unit.plan.sample import CONFIG, FACTS, NIS
from tests.unit.reconcile.test_reconcile import LAYOUT, UPLINKS, ids

PIN = PinnedLease("02:00:00:00:00:57", IPv4Address("10.1.0.57"), "web1", "container c1")
PORT = PortMap("cni-c1-tcp9090", Protocol.TCP, 9090, "10.1.0.57", 80)
CNI = AppPlug("alpha", "/run/netns/c1", "eth0", "ap0000c001", PIN.mac, "cni", "web1",
              IPv4Interface("10.1.0.57/24"))
TAP = AppPlug("alpha", "", "tapvm0", "ap0000t001", "02:00:00:00:0a:01", "tap", mtu=1400, up=True)


def plan(workloads: dict[str, NIWorkloads] | None = None):  # type: ignore[no-untyped-def]
    return plan_site(CONFIG, FACTS, list(NIS), {}, workloads)


def items(plugs: tuple[AppPlug, ...] = (CNI,), workloads: dict[str, NIWorkloads] | None = None,
          taps: tuple[str, ...] = ("tapvm0",)) -> dict[str, k.Item]:
    w = {"alpha": NIWorkloads((PIN,), (PORT,))} if workloads is None else workloads
    return build(plan(w), LAYOUT, "nirunner/ni:1", UPLINKS, ("eth0", "eth1"), plugs,
                 app_netns={"/run/netns/c1": 77}, taps=taps)


def test_pins_and_port_maps_join_the_nis_files_and_tables() -> None:
    p = plan({"alpha": NIWorkloads((PIN,), (PORT,))})
    alpha = p.nis["alpha"]
    hosts = alpha.files["dhcp-hosts"].splitlines()
    assert hosts[-1] == "02:00:00:00:00:57,10.1.0.57,web1,infinite"
    assert "dport 9090 dnat ip to 10.1.0.57:80" in alpha.nft
    assert any(d.name == "cni-c1-tcp9090" and d.port == 9090 for d in p.device.nft_rules.dnats)
    assert plan().nis["alpha"].restart_key == alpha.restart_key  # live: no task restart


def test_workloads_that_do_not_fit_the_ni_are_refused() -> None:
    outside = PinnedLease("02:00:00:00:00:58", IPv4Address("10.9.0.5"), "", "container c2")
    with pytest.raises(PlanError, match="container c2 holds 10.9.0.5, outside subnet"):
        plan({"alpha": NIWorkloads((outside,))})
    twice = PortMap("cni-c1-tcp8080", Protocol.TCP, 8080, "10.1.0.57", 80)  # alpha's http
    with pytest.raises(PlanError, match="both use tcp/8080"):
        plan({"alpha": NIWorkloads((PIN,), (twice,))})
    gapped = PortMap("cni-c1-tcp9090", Protocol.TCP, 9090, "10.9.0.57", 80)
    with pytest.raises(PlanError, match="port maps need an uplink"):
        plan({"delta": NIWorkloads((), (gapped,))})


def test_a_cni_app_is_a_plug_and_its_address() -> None:
    now = items()
    check_ranks(now)
    addr = now["appaddr:alpha/ap0000c001"]
    assert isinstance(addr, k.AppAddress)
    assert (addr.address, addr.gateway, addr.mtu) == (CNI.address, IPv4Address("10.1.0.1"), 1500)
    assert addr.lease_file == "/var/lib/nirunner/ni/alpha/state/dnsmasq.leases"
    assert addr.deps() == ("plug:alpha/ap0000c001",)
    assert set(addr.after()) == {"files:alpha", "task:ni-alpha"}
    # created after its plug, the files with its pin and the task
    d = diff({}, now)
    order = [op.id for op in d.ops]
    assert order.index("appaddr:alpha/ap0000c001") > max(
        order.index(i) for i in ("plug:alpha/ap0000c001", "files:alpha", "task:ni-alpha"))


def test_an_air_gapped_app_has_no_default_route() -> None:
    gap = AppPlug("delta", "/run/netns/c1", "eth0", "ap0000c002", PIN.mac, "cni",
                  address=IPv4Interface("10.9.0.57/24"))
    pin = PinnedLease(PIN.mac, IPv4Address("10.9.0.57"))
    x = items((gap,), {"delta": NIWorkloads((pin,))})["appaddr:delta/ap0000c002"]
    assert isinstance(x, k.AppAddress) and x.gateway is None


def test_attach_and_detach_of_a_cni_app_are_these_ops() -> None:
    before = items((), {})
    after = items()
    d = diff(before, after, scope={"alpha", ""})
    assert ids(d) == ["modify nft:nr-alpha/inet ni", "modify nft:device/inet nirunner",
                      "create edgeport:nr-alpha/ap0000c001", "modify files:alpha",
                      "create plug:alpha/ap0000c001", "create appaddr:alpha/ap0000c001"]
    assert result(d.ops, "alpha").line() == "alpha: updated (port maps, apps, DHCP reservations)"
    back = diff(after, before, scope={"alpha", ""})
    gone = {op.id: op for op in back.ops}
    assert gone["appaddr:alpha/ap0000c001"].implied  # its interface goes with the plug
    assert not gone["plug:alpha/ap0000c001"].implied


def test_a_tap_waits_for_its_interface_and_is_given_back_before_its_netns_goes() -> None:
    absent = items((TAP,), {}, taps=())
    d = diff({}, absent)
    assert "tap:alpha/ap0000t001" not in [op.id for op in d.ops]
    assert [(x.id, why) for x, why in d.pending] == [("tap:alpha/ap0000t001",
                                                      "interface tapvm0")]
    present = items((TAP,), {})
    tap = present["tap:alpha/ap0000t001"]
    assert isinstance(tap, k.TakenLink) and (tap.mtu, tap.orig_mtu, tap.orig_up) == (1500, 1400,
                                                                                    True)
    assert ids(diff(items((), {}), present, scope={"alpha"})) == [
        "create edgeport:nr-alpha/ap0000t001", "create tap:alpha/ap0000t001"]
    # the NI deleted: the tap goes back to the device (a real delete, not "with its
    # netns"), before the netns goes
    nothing = {i: x for i, x in present.items() if x.owner != "alpha" or x.EXTERNAL}
    d = diff(present, nothing, scope={"alpha"})
    ops = [op for op in d.ops if op.action is Action.DELETE]
    tap_op = next(op for op in ops if op.id == "tap:alpha/ap0000t001")
    assert not tap_op.implied
    assert ops.index(tap_op) < next(i for i, op in enumerate(ops) if op.id == "netns:nr-alpha")


def test_a_build_of_some_nis_takes_the_others_items_from_the_memo() -> None:
    """An attach builds its NI's items only: the others' come from the memo as they are,
    even where a fact of theirs given now differs (a full build then makes them anew)."""
    p = plan()
    memo: dict = {}  # type: ignore[type-arg]
    whole = build(p, LAYOUT, "nirunner/ni:1", UPLINKS, ("eth0", "eth1"), (CNI,),
                  app_netns={"/run/netns/c1": 7}, memo=memo)
    other = AppPlug("beta", "/run/netns/c9", "eth0", "ap0000c009", "02:00:00:00:00:99", "netns")
    some = build(p, LAYOUT, "nirunner/ni:1", UPLINKS, ("eth0", "eth1"), (other,),
                 app_netns={}, memo=memo, only={"beta"})
    mine = {i for i, x in some.items() if x.owner == "alpha"}
    assert mine == {i for i, x in whole.items() if x.owner == "alpha"}  # kept, plug and all
    assert all(some[i] is whole[i] for i in mine)
    assert "plug:beta/ap0000c009" in some and "plug:beta/ap0000c009" not in whole
    again = build(p, LAYOUT, "nirunner/ni:1", UPLINKS, ("eth0", "eth1"), (other,),
                  app_netns={}, memo=memo)
    assert not any(x.owner == "alpha" and x.KIND == "plug" for x in again.values())


def test_builds_of_some_nis_in_a_row_equal_a_whole_build(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A build of some NIs starts from the last whole result and replaces only their
    items: after any sequence of attaches and detaches it is what a whole build of the
    same inputs gives, facts shared by two NIs (one app netns in both) included."""
    from runner.reconcile import build as build_mod

    rebuilds: list[object] = []
    rebuild = build_mod._rebuild
    monkeypatch.setattr(build_mod, "_rebuild",
                        lambda *a, **kw: rebuilds.append(a) or rebuild(*a, **kw))
    p = plan()
    memo: dict = {}  # type: ignore[type-arg]
    netns = {"/run/netns/c1": 7, "/run/netns/c9": 9}

    def plug(ni: str, path: str, n: int) -> AppPlug:
        return AppPlug(ni, path, f"eth{n}", f"ap0000c{n:03d}", f"02:00:00:00:00:{n:02x}",
                       "netns")

    def both(plugs: tuple[AppPlug, ...], only: set[str]) -> None:
        some = build(p, LAYOUT, "nirunner/ni:1", UPLINKS, ("eth0", "eth1"), plugs,
                     app_netns=netns, memo=memo, only=only)
        whole = build(p, LAYOUT, "nirunner/ni:1", UPLINKS, ("eth0", "eth1"), plugs,
                      app_netns=netns, memo={})
        assert some == whole

    build(p, LAYOUT, "nirunner/ni:1", UPLINKS, ("eth0", "eth1"), (CNI,), app_netns=netns,
          memo=memo)
    a, b, c = plug("beta", "/run/netns/c9", 1), plug("alpha", "/run/netns/c9", 2), \
        plug("beta", "/run/netns/c1", 3)
    both((CNI, a), {"beta"})
    both((CNI, a, b), {"alpha"})  # c9 in both NIs
    both((CNI, a, b, c), {"beta"})
    both((CNI, b, c), {"beta"})  # a detached: c9 stays, alpha has it
    both((CNI, c), {"alpha"})  # and now it goes
    both((c,), {"alpha"})
    both((), {"beta"})
    assert len(rebuilds) == 7  # every build of some NIs took the copy-and-replace path
