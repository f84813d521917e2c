"""The item reconciler as scripts of expected ops: given current and intended, these ops.

Items come from the sample site's real plans; configurators are fakes that record
calls (and can be told to fail), so every test is pure.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from runner.model.types import PortMap, Protocol
from runner.plan.layout import Layout
from runner.reconcile import kinds as k
from runner.reconcile.build import AppPlug, Items, build
from runner.reconcile.diff import DELETE_PHASE, Diff, check_ranks, diff
from runner.reconcile.engine import Engine
from runner.reconcile.items import Action, Item
from runner.reconcile.report import result, results
from tests.unit.plan.sample import ALPHA, BETA, CONFIG, DELTA, FACTS, GAMMA, NIS, site

LAYOUT = Layout(Path("/var/lib/nirunner"))
UPLINKS = {u.name: u.interface for u in CONFIG.uplinks}
PLUG = AppPlug("alpha", "/run/netns/app1", "eth0", "ap12345678", "02:00:00:00:00:01")


def items(nis: tuple = NIS, present: tuple[str, ...] = ("eth0", "eth1"),
          plugs: tuple[AppPlug, ...] = (PLUG,), image: str = "nirunner/ni:1",
          previous: dict[str, int] | None = None) -> Items:
    return build(site(nis, FACTS, previous), LAYOUT, image, UPLINKS, present, plugs,
                 app_netns={PLUG.netns: 77})


def ids(d: Diff) -> list[str]:
    def half(op: Any) -> str:
        return "/del" if op.phase == DELETE_PHASE and op.action is Action.RECREATE else ""

    return [f"{op.action}{half(op)} {op.id}" for op in d.ops]


class Fakes:
    """Fake configurators of every kind: they record calls, fail when told to."""

    def __init__(self, fail: set[tuple[str, str]] | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = fail or set()

    def configurators(self) -> dict[str, Any]:
        confs: dict[str, Any] = {kind: _Fake(self, False) for kind in
                                 ("statedir", "netns", "sysctls", "veth", "bridge", "routes",
                                  "rule", "localrule", "nft", "files", "plug", "tap",
                                  "appaddr", "edge", "acl", "edgeport", "vlan", "shim",
                                  "swport", "porttable")}
        confs["task"] = _FakeTasks(self, True)
        return confs


class _Fake:
    def __init__(self, fakes: Fakes, parallel: bool) -> None:
        self.fakes = fakes
        self.parallel = parallel

    def _call(self, what: str, item: Item) -> None:
        self.fakes.calls.append((what, item.id))
        if (what, item.id) in self.fakes.fail:
            raise OSError(28, "No space left on device")

    def create(self, item: Item) -> Item:
        self._call("create", item)
        return item

    def modify(self, old: Item, new: Item) -> Item:
        self._call("modify", new)
        return new

    def delete(self, item: Item) -> None:
        self._call("delete", item)

    def read(self, item: Item) -> Item | None:
        return item


class _FakeTasks(_Fake):
    def signal_stop(self, items: Any) -> None:
        for item in items:
            self._call("signal", item)


def test_ranks_are_a_dependency_order() -> None:
    check_ranks(items())


def test_no_change_no_ops() -> None:
    now = items()
    d = diff(now, items())
    assert d.ops == () and not d
    assert d.lines() == []
    assert len(d.unchanged) == len([x for x in now.values() if not x.EXTERNAL])
    assert "= task ni-alpha" in d.lines(verbose=True)


def test_everything_from_nothing_in_dependency_order() -> None:
    d = diff({}, items())
    order = [op.item.KIND for op in d.ops]
    assert all(op.action is Action.CREATE for op in d.ops)
    assert order.index("netns") > order.index("statedir")
    assert max(i for i, x in enumerate(order) if x == "bridge") < order.index("routes")
    assert max(i for i, x in enumerate(order) if x == "nft") < order.index("task")
    assert order[-1] == "plug"
    assert "+ netns nr-alpha" in d.lines()


def test_port_map_change_is_one_modify_of_each_nft_table() -> None:
    before = items()
    http = replace(ALPHA.port_maps[0], uplink_port=8090)
    changed = replace(ALPHA, port_maps=(http, ALPHA.port_maps[1]))
    d = diff(before, items((changed, BETA, GAMMA, DELTA)), scope={"alpha", ""})
    assert ids(d) == ["modify nft:nr-alpha/inet ni", "modify nft:device/inet nirunner"]
    assert d.lines() == [
        "~ nft table inet ni in nr-alpha: port map http 8080 -> 8090",
        "~ nft table inet nirunner: port map alpha/http 8080 -> 8090",
    ]
    assert result(d.ops, "alpha").line() == "alpha: updated (port maps)"
    assert result(d.ops, "beta").line() == "beta: unchanged"


def test_new_port_map_and_reservation_are_live_changes() -> None:
    before = items()
    pm = PortMap("ftp", Protocol.TCP, 2121, "web", 21)
    changed = replace(ALPHA, port_maps=(*ALPHA.port_maps, pm),
                      dhcp=replace(ALPHA.dhcp, reservations=ALPHA.dhcp.reservations[:1]))
    d = diff(before, items((changed, BETA, GAMMA, DELTA)))
    assert sorted(ids(d)) == ["modify files:alpha", "modify nft:device/inet nirunner",
                              "modify nft:nr-alpha/inet ni"]
    r = result(d.ops, "alpha")
    assert r.action == "updated"
    assert set(r.detail.split(", ")) == {"port maps", "DHCP reservations", "DNS names"}


def test_subnet_change_recreates_in_dependency_order() -> None:
    from ipaddress import IPv4Address, IPv4Network

    before = items()
    moved = replace(GAMMA, subnet=IPv4Network("10.7.0.0/24"), gateway=IPv4Address("10.7.0.1"),
                    dhcp=replace(GAMMA.dhcp, range=replace(
                        GAMMA.dhcp.range, start=IPv4Address("10.7.0.100"),
                        end=IPv4Address("10.7.0.199"))), port_maps=())
    d = diff(before, items((ALPHA, BETA, moved, DELTA)), scope={"gamma"})
    assert ids(d) == [
        "recreate/del task:ni-gamma",
        "modify bridge:nr-gamma/br0",
        "modify nft:nr-gamma/inet ni",
        "modify files:gamma",
        "recreate task:ni-gamma",
    ]
    assert result(d.ops, "gamma").action == "recreated"
    assert "settings the task reads at start" in result(d.ops, "gamma").detail


def test_netns_gone_recreates_what_lived_in_it() -> None:
    now = items()
    current = {i: x for i, x in now.items() if i != "netns:nr-beta"}
    d = diff(current, now, scope={"beta"})
    deleted = [op for op in d.ops if op.phase == DELETE_PHASE]
    assert {op.id for op in deleted} == {
        "task:ni-beta", "nft:nr-beta/inet ni", "routes:nr-beta/254", "bridge:nr-beta/br0",
        "veth:nr1", "sysctls:nr-beta", "edge:nr-beta", "acl:nr-beta"}
    # what was inside the lost netns cannot be deleted by name: implied, and so is the
    # veth with an end in it (the kernel takes both ends); the task must be stopped
    assert {op.id for op in deleted if not op.implied} == {"task:ni-beta"}
    created = [op.id for op in d.ops if op.phase != DELETE_PHASE]
    assert created[0] == "netns:nr-beta" and created[-1] == "task:ni-beta"
    assert result(d.ops, "beta").action == "recreated"


def test_delete_is_the_reverse_of_create() -> None:
    now = items()
    d = diff(now, items((ALPHA, BETA, GAMMA)), scope={"delta", ""})
    assert ids(d) == ["delete task:ni-delta", "delete files:delta", "delete nft:nr-delta/inet ni",
                      "delete edge:nr-delta", "delete acl:nr-delta", "delete routes:nr-delta/254",
                      "delete bridge:nr-delta/br0", "delete sysctls:nr-delta",
                      "delete netns:nr-delta", "delete statedir:delta"]
    assert [op.implied for op in d.ops] == [False, False, True, True, True, True, True, True,
                                            False, False]
    assert results(d.ops, ["delta"], deleted={"delta"})[0].line() == "delta: deleted"


def test_an_absent_uplink_holds_its_items_back() -> None:
    d = diff({}, items(present=("eth0",)), scope={""})
    assert "sysctls:device/eth1" not in {op.id for op in d.ops}
    assert [x.id for x, why in d.pending] == ["sysctls:device/eth1"]
    assert "waiting for uplink eth1" in d.lines()[-1]
    # when it comes back, its sysctls are set again (they went with the interface)
    made = Engine(Fakes().configurators()).run(d, {}, atomic=True).current
    back = diff(made | {"uplink:eth1": k.Uplink("eth1", "eth1")}, items(), scope={""})
    assert ids(back) == ["create sysctls:device/eth1"]
    gone = items()
    del gone["uplink:eth1"]
    again = diff(items(), gone, scope={""})
    assert again.ops == () and again.pending
    assert diff(items(), items()).ops == ()


def test_the_engine_runs_ops_and_records_what_exists() -> None:
    fakes = Fakes()
    target = items()
    run = Engine(fakes.configurators()).run(diff({}, target), {}, atomic=True)
    assert run.ok and not run.rolled_back
    assert run.current == {i: x for i, x in target.items() if not x.EXTERNAL}
    assert run.writes == len(fakes.calls) == len(run.done)
    assert diff(run.current | {i: x for i, x in target.items() if x.EXTERNAL}, target).ops == ()


def test_a_failing_configurator_rolls_the_apply_back() -> None:
    before = items()
    http = replace(ALPHA.port_maps[0], uplink_port=8090)
    changed = items((replace(ALPHA, port_maps=(http,)), BETA, GAMMA, DELTA))
    fakes = Fakes(fail={("modify", "nft:nr-alpha/inet ni")})
    run = Engine(fakes.configurators()).run(diff(before, changed), before, atomic=True)
    assert not run.ok and run.rolled_back
    assert fakes.calls == [
        ("modify", "nft:device/inet nirunner"),  # the device's first
        ("modify", "nft:nr-alpha/inet ni"),  # fails
        ("modify", "nft:device/inet nirunner"),  # the inverse of the first
    ]
    assert run.current == before  # as if nothing happened
    assert "No space left on device" in run.first_error()
    assert "nft table inet ni in nr-alpha" in run.first_error()


def test_rollback_of_a_new_ni_deletes_it_in_reverse() -> None:
    now = items((ALPHA, BETA, GAMMA))
    target = items()
    fakes = Fakes(fail={("create", "task:ni-delta")})
    run = Engine(fakes.configurators()).run(diff(now, target, scope={"delta", ""}), now,
                                            atomic=True)
    assert run.rolled_back
    made = [i for what, i in fakes.calls if what == "create"]
    undone = [i for what, i in fakes.calls if what == "delete"]
    assert undone == list(reversed([i for i in made if i != "task:ni-delta"]))
    assert run.current == now


class _Lingering(_Fake):
    """Veths that go with their netns a moment later; await_gone says which it waited for."""

    def __init__(self, fakes: Fakes, fail: bool = False) -> None:
        super().__init__(fakes, False)
        self.awaited: list[str] = []
        self.fail = fail

    def await_gone(self, gone: list[Item]) -> None:
        self.awaited += [x.id for x in gone]
        if self.fail:
            raise OSError(16, "Device or resource busy")


@pytest.mark.parametrize("fail", [False, True])
def test_a_delete_implied_by_its_netns_is_awaited_not_run(fail: bool) -> None:
    now = items()
    fakes = Fakes()
    confs = fakes.configurators()
    confs["veth"] = veths = _Lingering(fakes, fail)
    d = diff(now, items((ALPHA, GAMMA, DELTA)), scope={"beta", ""})
    gone = [op.id for op in d.ops if op.item.KIND == "veth"]
    assert gone and all(op.implied for op in d.ops if op.item.KIND == "veth")
    run = Engine(confs).run(d, now, atomic=False)
    assert not [c for c in fakes.calls if c[1] in gone]  # never deleted by name
    assert veths.awaited == gone  # but the run ended only when they were gone
    failed = {x.op.id for x in run.done if x.error}
    assert failed == (set(gone) if fail else set())


def _task_waits_for_netns(confs: dict[str, Any], fakes: Fakes, task_of: str, netns_of: str,
                          why: str) -> None:
    """Fakes where NI `task_of`'s task delete ends only after NI `netns_of`'s netns went
    (within 5 s, else it fails with `why`): the engine must not order the other way."""
    gone = threading.Event()

    class SlowTask(_FakeTasks):
        def delete(self, item: Item) -> None:
            if item.owner == task_of:
                assert gone.wait(5), why
            super().delete(item)

    class Netns(_Fake):
        def delete(self, item: Item) -> None:
            super().delete(item)
            if item.owner == netns_of:
                gone.set()

    confs["task"], confs["netns"] = SlowTask(fakes, True), Netns(fakes, True)


def test_an_op_waits_only_for_what_it_is_ordered_against() -> None:
    """Deleting two NIs: beta's netns goes while alpha's task still stops (alpha's task
    waits for it here), and every op still follows the ops it is ordered against."""
    now = items()
    fakes = Fakes()
    confs = fakes.configurators()
    _task_waits_for_netns(confs, fakes, "alpha", "beta", "alpha's task held back beta's netns")
    d = diff(now, items((GAMMA, DELTA)), scope={"alpha", "beta", ""})
    run = Engine(confs).run(d, now, atomic=True)
    assert run.ok, run.first_error()
    order = [i for _, i in fakes.calls]
    assert order.index("netns:nr-beta") < order.index("task:ni-alpha")
    position = {x.op.id: n for n, x in enumerate(run.done)}
    free = {x.op.id for x in run.done if x.op.implied or x.op.item.KIND == "netns"}
    for x in run.done:
        for dep in (*x.op.item.deps(), *x.op.item.after()):
            if dep in position and not (x.op.item.KIND == "task" and dep in free):
                # deletes: what depends on an item goes before it; a task's netns and
                # what goes with it need not wait for the task (the kernel frees the
                # netns when the task's processes exit)
                assert position[dep] > position[x.op.id], (x.op.id, dep)


def test_a_netns_goes_without_waiting_for_its_task() -> None:
    """Deleting an NI: its netns's name is removed while its task still stops, so the
    kernel frees the netns (and tears its bridge down) as soon as the task exits."""
    now = items()
    fakes = Fakes()
    confs = fakes.configurators()
    _task_waits_for_netns(confs, fakes, "alpha", "alpha",
                          "the task's delete held back its netns's")
    only_alpha = {i: x for i, x in now.items() if x.owner != "alpha"}
    d = diff(now, only_alpha, scope={"alpha", ""})
    run = Engine(confs).run(d, now, atomic=False)
    assert run.ok, run.first_error()
    order = [i for _, i in fakes.calls]
    assert order.index("netns:nr-alpha") < order.index("task:ni-alpha")
    # files and the state dir still wait for the task, which uses them to the end
    assert order.index("task:ni-alpha") < order.index("statedir:alpha")


def test_a_pass_skips_only_what_is_ordered_after_a_failure() -> None:
    fakes = Fakes(fail={("create", "netns:nr-beta")})
    run = Engine(fakes.configurators()).run(diff({}, items()), {}, atomic=False)
    assert not run.rolled_back
    skipped = {d.op.id for d in run.done if d.skipped}
    assert "task:ni-beta" in skipped and "bridge:nr-beta/br0" in skipped
    assert "task:ni-alpha" in run.current and "task:ni-beta" not in run.current


def test_held_ops_wait() -> None:
    now = items()
    stopped = dict(now)
    stopped["task:ni-alpha"] = replace(now["task:ni-alpha"], running=False, status="stopped")
    d = diff(stopped, now)
    assert d.lines() == ["~ task ni-alpha: start (was stopped)"]
    run = Engine(Fakes().configurators()).run(
        d, stopped, atomic=False, hold=lambda op: "restart in 2.0s")
    assert run.done[0].skipped == "restart in 2.0s"
    assert result(d.ops, "alpha").line() == "alpha: updated (task)"


def test_plugs_follow_their_bridge() -> None:
    now = items()
    d = diff(now, items(plugs=()), scope={"alpha"})
    # unplugged first, then its port leaves the edge table
    assert ids(d) == ["delete plug:alpha/ap12345678", "delete edgeport:nr-alpha/ap12345678"]
    assert result(d.ops, "alpha").line() == "alpha: updated (apps)"
    mac = dict(now)
    mac["bridge:nr-alpha/br0"] = replace(now["bridge:nr-alpha/br0"], mtu=9000)
    assert ids(diff(mac, now, scope={"alpha"})) == ["modify bridge:nr-alpha/br0"]


def test_a_plug_waits_for_its_app_and_follows_a_new_netns() -> None:
    site_ = site(NIS, FACTS)
    gone = build(site_, LAYOUT, "nirunner/ni:1", UPLINKS, ("eth0", "eth1"), (PLUG,), app_netns={})
    d = diff(items(), gone, scope={"alpha"})
    assert d.ops == () and [x.id for x, _ in d.pending] == ["plug:alpha/ap12345678"]
    again = build(site_, LAYOUT, "nirunner/ni:1", UPLINKS, ("eth0", "eth1"), (PLUG,),
                  app_netns={PLUG.netns: 78})
    assert ids(diff(items(), again, scope={"alpha"})) == [
        "recreate/del plug:alpha/ap12345678", "recreate plug:alpha/ap12345678"]


def test_image_change_recreates_every_task() -> None:
    d = diff(items(), items(image="nirunner/ni:2"))
    assert {op.id for op in d.ops} == {f"task:ni-{n.name}" for n in NIS}
    assert all(op.action is Action.RECREATE for op in d.ops)
    assert result(d.ops, "beta").detail == "new image"


@pytest.mark.parametrize("name", ["alpha", "delta"])
def test_every_item_has_an_owner_and_a_description(name: str) -> None:
    for x in items().values():
        assert x.describe()
        if x.KIND in ("task", "netns", "bridge"):
            assert x.owner in {n.name for n in NIS}
