"""Switch NIs through the supervisor on fake configurators: apply, a VLAN refused with
the kernel's reason and nothing changed, attach (plug, port, table), a learned lease
routed at once, status with each app's address, delete (the shim goes with the last)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from runner.errors import NirunnerError
from runner.model.types import SupervisorConfig, Uplink
from runner.net import names
from runner.plan.facts import Binding, Facts, KernelFeature, KernelFeatures
from runner.supervisor.core import Document, Supervisor
from tests.unit.plan.sample import FACTS
from tests.unit.reconcile.test_reconcile import Fakes

PLANT = """apiVersion: nirunner/v1
kind: NetworkInstance
metadata: {name: plant}
spec: {type: switch, uplink: eth1, resources: {memory: 32Mi}}
"""
TAGGED = """apiVersion: nirunner/v1
kind: NetworkInstance
metadata: {name: tagged}
spec: {type: switch, uplink: eth1, vlan: 100}
"""
NO_VLAN = replace(FACTS, kernel=KernelFeatures((
    (KernelFeature.VLAN, "Error: Unknown device type."),)))
MAC = "02:00:00:00:0e:10"


class World:
    def __init__(self, tmp_path: Path, facts: Facts = FACTS) -> None:
        self.fakes = Fakes()
        confs = self.fakes.configurators()
        confs["task"].observe = lambda: {}  # type: ignore[attr-defined]
        self.facts = facts
        config = SupervisorConfig(state_dir=str(tmp_path / "state"),
                                  uplinks=(Uplink("eth0", "eth0"), Uplink("eth1", "eth1")))
        self.sup = Supervisor(config, client=None, confs=confs,  # type: ignore[arg-type]
                              read_facts=lambda: self.facts)
        self.learned: dict[str, tuple[Binding, ...]] = {}
        self.sup.switches.read = lambda netns: self.learned.get(netns, ())
        self.app = tmp_path / "app-netns"  # attach only checks that the path exists
        self.app.write_text("")

    def apply(self, *texts: str, dry_run: bool = False) -> Any:
        return self.sup.apply([Document(f"m{i}.yaml", t) for i, t in enumerate(texts)],
                              dry_run=dry_run)

    def created(self) -> list[str]:
        return [i for what, i in self.fakes.calls if what == "create"]


@pytest.fixture
def w(tmp_path: Path) -> World:
    return World(tmp_path)


def test_apply_makes_the_ni_and_the_shim_and_then_nothing(w: World) -> None:
    report = w.apply(PLANT)
    assert [r.line() for r in report.results] == ["plant: created"]
    made = w.created()
    shim = f"shim:{names.shim_if('eth1')}"
    assert {"netns:nr-plant", "task:ni-plant", shim, "routes:device/254"} <= set(made)
    assert made.index(shim) < made.index("routes:device/254")
    assert "modify" in {what for what, i in w.fakes.calls if i == "nft:device/inet nirunner"}
    assert not any(i.startswith(("veth:", "bridge:", "rule:")) for i in made)
    w.fakes.calls.clear()
    assert w.apply(PLANT).writes == 0 and w.fakes.calls == []


def test_a_vlan_on_a_kernel_without_8021q_is_refused_and_changes_nothing(
        tmp_path: Path) -> None:
    w = World(tmp_path, NO_VLAN)
    before = w.sup.store.path.read_bytes() if w.sup.store.path.exists() else b""
    with pytest.raises(NirunnerError) as e:
        w.apply(TAGGED)
    assert str(e.value) == ("NI tagged: vlan 100 needs 802.1Q VLAN devices: this kernel has "
                            "no 802.1Q VLAN devices (Error: Unknown device type.)")
    assert w.fakes.calls == [] and w.sup.desired.nis == {}
    assert (w.sup.store.path.read_bytes() if w.sup.store.path.exists() else b"") == before
    with pytest.raises(NirunnerError, match="needs 802.1Q"):
        w.apply(TAGGED, dry_run=True)
    w.apply(PLANT)  # untagged ones work on that kernel


def test_a_stored_vlan_ni_this_kernel_cannot_build_shows_failed_with_the_reason(
        tmp_path: Path) -> None:
    w = World(tmp_path)
    w.apply(TAGGED, PLANT)
    assert any(i == "vlan:eth1.100" for i in w.created())
    w.facts = NO_VLAN  # the same state on a kernel without 802.1Q (a restart, say)
    again = Supervisor(w.sup.config, client=None, confs=w.fakes.configurators(),  # type: ignore[arg-type]
                       read_facts=lambda: NO_VLAN)
    again.confs["task"].observe = lambda: {}
    again.switches.read = lambda netns: ()
    again.reconcile(force=True)
    st = {x["name"]: x for x in again.status()}
    assert st["tagged"]["state"] == "failed"
    assert st["tagged"]["reason"].endswith("this kernel has no 802.1Q VLAN devices "
                                           "(Error: Unknown device type.)")
    assert st["plant"]["state"] != "failed"


def test_attach_plugs_a_port_and_its_table_and_a_lease_is_routed_at_once(w: World) -> None:
    w.apply(PLANT)
    w.fakes.calls.clear()
    a = w.sup.attach("plant", str(w.app), "eth0", MAC, "")
    port = names.switch_port_for(a.host_ifname)
    assert w.created() == [f"plug:plant/{a.host_ifname}", f"swport:nr-plant/{port}",
                           f"porttable:nr-plant/netdev {a.host_ifname}"]
    w.fakes.calls.clear()
    lease = Binding(MAC, IPv4Address("203.0.113.114"), "dhcp", 3_600_000)
    seen = Binding(MAC, IPv4Address("203.0.113.114"), "seen", 500_000)
    w.learned["nr-plant"] = (lease, seen)
    w.sup.switches.learned_in("plant")
    w.sup.work()
    assert sorted(w.fakes.calls) == [("modify", "routes:device/1001"),
                                     ("modify", "routes:device/254"),
                                     ("modify", f"shim:{names.shim_if('eth1')}")]
    routes = w.sup.current["routes:device/254"].routes  # type: ignore[attr-defined]
    assert [str(r) for r in routes] == [f"203.0.113.114/32 dev {names.shim_if('eth1')} "
                                        "scope link src 203.0.113.2"]
    ev = w.sup.events.since(0)[-1]
    assert (ev.kind, ev.ni) == ("switch.learned", "plant")
    assert "203.0.113.114 leased to 02:00:00:00:0e:10 (routed)" in ev.message
    # the countdown of the same lease, or an ARP sighting, changes nothing planned
    w.fakes.calls.clear()
    w.learned["nr-plant"] = (replace(lease, expires_ms=3_000_000),)
    w.sup.switches.learned_in("plant")
    w.sup.work()
    assert w.fakes.calls == []
    (st,) = w.sup.status(["plant"])
    (app,) = st["apps"]
    assert (app["ip"], app["mac"], app["source"], app["attached"]) == (
        "203.0.113.114", MAC, "dhcp", True)
    assert st["type"] == "switch" and st["subnet"] == "" and st["vlan"] is None
    # the lease ends: its routes go
    w.learned["nr-plant"] = ()
    w.sup.switches.learned_in("plant")
    w.sup.work()
    assert w.sup.current["routes:device/254"].routes == ()  # type: ignore[attr-defined]
    assert "expired" in w.sup.events.since(0)[-1].message


def test_delete_the_last_switch_ni_deletes_the_shim_and_its_routes(w: World) -> None:
    w.apply(PLANT)
    w.sup.attach("plant", str(w.app), "eth0", MAC, "")
    w.fakes.calls.clear()
    report = w.sup.delete(["plant"])
    assert [r.line() for r in report.results] == ["plant: deleted"]
    deleted = [i for what, i in w.fakes.calls if what == "delete"]
    shim = f"shim:{names.shim_if('eth1')}"
    assert shim in deleted and "routes:device/254" in deleted and "netns:nr-plant" in deleted
    assert not any(i.startswith("swport:") for i in deleted)  # went with its netns
    assert not any(x.KIND in ("shim", "swport") for x in w.sup.current.values())


def test_cni_and_taps_are_refused_on_a_switch_ni(w: World) -> None:
    from runner.cni.api import AttachmentKey, AttachRequest
    from runner.supervisor.workloads import WorkloadError

    w.apply(PLANT)
    with pytest.raises(WorkloadError, match="is a switch NI: containers and taps join it "
                                            "with `nirunner attach --netns`"):
        w.sup.workloads.attach(AttachRequest("plant", AttachmentKey("c1", "eth0", "net"),
                                             str(w.app)))


def test_detach_takes_the_apps_port_route_and_neighbour_at_once(w: World) -> None:
    w.apply(PLANT)
    a = w.sup.attach("plant", str(w.app), "eth0", MAC, "")
    w.learned["nr-plant"] = (Binding(MAC, IPv4Address("203.0.113.114"), "dhcp", 3_600_000),)
    w.sup.switches.learned_in("plant")
    w.sup.work()
    w.fakes.calls.clear()
    w.sup.detach("plant", str(w.app), "eth0")  # its lease is still in the facts
    calls = set(w.fakes.calls)
    assert ("delete", f"plug:plant/{a.host_ifname}") in calls
    assert {("modify", "routes:device/254"), ("modify", "routes:device/1001"),
            ("modify", f"shim:{names.shim_if('eth1')}")} <= calls
    assert w.sup.current["routes:device/254"].routes == ()  # type: ignore[attr-defined]


def test_metrics_sample_a_switch_ni(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.metrics import sample as sm

    w.apply(PLANT)
    w.sup.attach("plant", str(w.app), "eth0", MAC, "")
    monkeypatch.setattr(sm.tasks, "list_tasks", lambda c: [])
    monkeypatch.setattr(sm.tasks, "all_metrics", lambda c: {})
    status = w.sup.store.state_dir("plant") / "services.status"  # as ni-init writes it
    status.parent.mkdir(parents=True, exist_ok=True)
    status.write_text("dnsmasq stopped pid=0 restarts=0 last_exit=-\n"
                      "charon stopped pid=0 restarts=0 last_exit=-\n")
    (plant,) = sm.Sampler(w.sup, read_counters=lambda: {}).get().nis
    assert (plant.name, plant.type, plant.uplink, plant.attached, plant.apps) == (
        "plant", "switch", "eth1", 1, 1)
    assert plant.transit == {} and plant.vpn is None and plant.services == {}
