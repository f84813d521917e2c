"""Config reload and image rolls on fake configurators: what is taken live, what is
refused (and that it changes nothing), and rolls one NI at a time with a roll back."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from runner.containerd.tasks import TaskInfo
from runner.model.types import SupervisorConfig, TaskSeccomp, Uplink
from runner.plan.facts import Facts, UplinkFacts
from runner.reconcile.kinds import Task
from runner.supervisor import reload as rl
from runner.supervisor.core import Supervisor
from runner.supervisor.roll import Roller, RollError
from tests.unit.reconcile.test_reconcile import Fakes
from tests.unit.supervisor.test_supervisor import apply, manifest

ADDRS = {"eth0": ("198.51.100.2/24", "198.51.100.1"), "eth1": ("203.0.113.2/24", "203.0.113.1"),
         "eth2": ("192.0.2.66/26", "192.0.2.65"), "wan9": ("192.0.2.130/26", "192.0.2.129")}


def facts_of(config: SupervisorConfig) -> Facts:
    ups = {}
    for u in config.uplinks:
        addr, gw = ADDRS[u.interface]
        ups[u.name] = UplinkFacts(u.name, u.interface, (IPv4Interface(addr),),
                                  IPv4Address(gw), 1500, True)
    return Facts(uplinks=ups, resolvers=(IPv4Address("192.0.2.53"),))


def config(tmp_path: Path, **kw: Any) -> SupervisorConfig:
    base = SupervisorConfig(state_dir=str(tmp_path / "state"), image="nirunner/ni:v1",
                            uplinks=(Uplink("eth0", "eth0"), Uplink("eth1", "eth1")))
    return replace(base, **kw)


@pytest.fixture
def sup(tmp_path: Path) -> tuple[Supervisor, Fakes]:
    fakes = Fakes()
    confs = fakes.configurators()
    s = Supervisor(config(tmp_path), client=None, confs=confs)  # type: ignore[arg-type]
    s.read_facts_of = facts_of
    confs["task"].observe = lambda: {  # type: ignore[attr-defined]
        x.container_id: TaskInfo(x.container_id, 100, "running", 0)
        for x in s.current.values() if isinstance(x, Task)}
    return s, fakes


def on(text: str, uplink: str) -> str:
    return text.replace("uplink: eth0", f"uplink: {uplink}")


def test_changes_in_words() -> None:
    old = SupervisorConfig(uplinks=(Uplink("eth0", "eth0"), Uplink("eth1", "eth1")))
    new = replace(old, uplinks=(Uplink("eth0", "enp1s0"), Uplink("eth2", "eth2")),
                  image="nirunner/ni:v2", task_seccomp=TaskSeccomp.LOG)
    ch = rl.changes(old, new)
    assert ch.lines == ("uplink eth0 re-pointed: eth0 -> enp1s0", "uplink eth2 added (eth2)",
                        "uplink eth1 removed (eth1)",
                        "image: nirunner/ni:0.1.0 -> nirunner/ni:v2", "taskSeccomp: enforce -> log")
    assert ch.refused == () and ch.image and ch.seccomp
    assert not rl.changes(old, old)
    moved = rl.changes(old, replace(old, transit_pool=IPv4Network("10.255.0.0/22"),
                                    state_dir="/srv/nirunner"))
    assert [r.split(" (")[0] for r in moved.refused] == ["stateDir changed", "transitPool changed"]
    assert "every NI's transit link would move" in moved.refused[1]


def test_a_new_uplink_is_taken_and_nis_keep_their_tasks(sup: tuple[Supervisor, Fakes],
                                                        tmp_path: Path) -> None:
    s, fakes = sup
    apply(s, manifest("a"))
    fakes.calls.clear()
    new = config(tmp_path, uplinks=(*s.config.uplinks, Uplink("eth2", "eth2")))
    ch = rl.reload(s, new)
    assert ch.lines == ("uplink eth2 added (eth2)",)
    assert s.config is new
    assert not [c for c in fakes.calls if c[1].startswith("task:")]  # a's task untouched
    done = apply(s, on(manifest("b", port=8081), "eth2"))
    assert [r.line() for r in done.results] == ["b: created"]
    assert ("create", "task:ni-b") in fakes.calls
    assert "config.reloaded" in [e.kind for e in s.events.since(0)]


@pytest.mark.parametrize("change,why", [
    ({"uplinks": (Uplink("eth1", "eth1"),)}, "uplink eth0 is removed but NI a uses it"),
    ({"transit_pool": IPv4Network("10.255.0.0/22")}, "transitPool changed"),
    ({"containerd_namespace": "other"}, "containerd.namespace changed"),
])
def test_a_reload_that_cannot_be_taken_changes_nothing(sup: tuple[Supervisor, Fakes],
                                                       tmp_path: Path, change: dict[str, Any],
                                                       why: str) -> None:
    s, fakes = sup
    apply(s, manifest("a"))
    old, current = s.config, dict(s.current)
    fakes.calls.clear()
    with pytest.raises(rl.ReloadRefused, match=why) as e:
        rl.reload(s, config(tmp_path, **change))
    assert "the old config stays" in str(e.value)
    assert s.config is old and s.current == current and fakes.calls == []
    refused = [e for e in s.events.since(0) if e.kind == "config.refused"]
    assert refused and why in refused[-1].message


def test_a_re_pointed_uplink_moves_the_device_rules(sup: tuple[Supervisor, Fakes],
                                                    tmp_path: Path) -> None:
    s, fakes = sup
    apply(s, manifest("a"))
    fakes.calls.clear()
    rl.reload(s, config(tmp_path, uplinks=(Uplink("eth0", "wan9"), Uplink("eth1", "eth1"))))
    device_nft = s.current["nft:device/inet nirunner"]
    assert '"wan9"' in device_nft.text and '"eth0"' not in device_nft.text  # type: ignore[attr-defined]
    assert not [c for c in fakes.calls if c[1].startswith("task:")]


def ready_when(answers: dict[str, bool]) -> Any:
    """A readiness probe: NI -> answers on the new image; always on the old one."""
    def ready(sup: Supervisor, name: str, exits: int, timeout: float) -> str:
        image = sup.current[f"task:ni-{name}"].image  # type: ignore[attr-defined]
        ok = image == "nirunner/ni:v1" or answers.get(name, True)
        return "" if ok else "the new task exited (status 3)"
    return ready


def image_reload(s: Supervisor, tmp_path: Path) -> None:
    ch = rl.reload(s, config(tmp_path, image="nirunner/ni:v2"))
    assert ch.image


def test_an_image_change_rolls_one_ni_at_a_time(sup: tuple[Supervisor, Fakes],
                                                tmp_path: Path) -> None:
    s, fakes = sup
    apply(s, manifest("a"), manifest("b", port=8081, subnet="10.2.0.0/24"))
    fakes.calls.clear()
    image_reload(s, tmp_path)
    assert fakes.calls == []  # pinned: the reload's pass re-creates no task
    roller = Roller(s, ready=ready_when({}), images_present=lambda: ["nirunner/ni:v2"])
    assert roller.pending() == ["a", "b"]
    report = roller.roll()
    assert [(r.ni, r.result, r.old, r.new) for r in report.nis] == [
        ("a", "rolled", "nirunner/ni:v1", "nirunner/ni:v2"),
        ("b", "rolled", "nirunner/ni:v1", "nirunner/ni:v2")]
    # each NI's task alone was re-created, one NI after the other
    assert fakes.calls == [("delete", "task:ni-a"), ("create", "task:ni-a"),
                           ("delete", "task:ni-b"), ("create", "task:ni-b")]
    assert roller.pending() == [] and not report.stopped
    assert s.current["task:ni-b"].image == "nirunner/ni:v2"  # type: ignore[attr-defined]
    assert [e.kind for e in s.events.since(0)][-3:] == ["ni.rolled", "ni.rolled", "roll.done"]
    fakes.calls.clear()
    s.reconcile()  # and a pass after it has nothing to do
    assert fakes.calls == []


def test_a_failing_image_rolls_the_ni_back_and_stops(sup: tuple[Supervisor, Fakes],
                                                     tmp_path: Path) -> None:
    s, fakes = sup
    apply(s, manifest("a"), manifest("b", port=8081, subnet="10.2.0.0/24"))
    image_reload(s, tmp_path)
    fakes.calls.clear()
    roller = Roller(s, ready=ready_when({"a": False}), images_present=lambda: ["nirunner/ni:v2"])
    report = roller.roll()
    assert [(r.ni, r.result) for r in report.nis] == [("a", "rolled back")]
    assert report.stopped == "a: the new task exited (status 3)"
    assert report.pending == ["a", "b"]
    assert fakes.calls == [("delete", "task:ni-a"), ("create", "task:ni-a"),
                           ("delete", "task:ni-a"), ("create", "task:ni-a")]
    assert s.current["task:ni-a"].image == "nirunner/ni:v1"  # type: ignore[attr-defined]
    assert s.current["task:ni-b"].image == "nirunner/ni:v1"  # type: ignore[attr-defined]
    fakes.calls.clear()
    s.reconcile()  # still pinned: no pass moves them behind the roll's back
    assert fakes.calls == []


def test_a_roll_to_an_image_containerd_lacks_is_refused(sup: tuple[Supervisor, Fakes],
                                                        tmp_path: Path) -> None:
    s, fakes = sup
    apply(s, manifest("a"))
    image_reload(s, tmp_path)
    fakes.calls.clear()
    with pytest.raises(RollError, match="no such image in containerd"):
        Roller(s, ready=ready_when({}), images_present=lambda: ["nirunner/ni:v1"]).roll()
    with pytest.raises(RollError, match="no such NI: zz"):
        Roller(s, ready=ready_when({}), images_present=lambda: []).roll(["zz"])
    assert fakes.calls == []


def test_new_nis_start_on_the_new_image_during_a_roll(sup: tuple[Supervisor, Fakes],
                                                      tmp_path: Path) -> None:
    s, fakes = sup
    apply(s, manifest("a"))
    image_reload(s, tmp_path)
    apply(s, manifest("c", port=8082, subnet="10.3.0.0/24"))
    assert s.current["task:ni-c"].image == "nirunner/ni:v2"  # type: ignore[attr-defined]
    assert s.current["task:ni-a"].image == "nirunner/ni:v1"  # type: ignore[attr-defined]
