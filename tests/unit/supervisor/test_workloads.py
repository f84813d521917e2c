"""The supervisor's workload calls (CNI ADD/DEL/CHECK/GC/STATUS, taps) on fake
configurators and fake effects (DHCP, link lookups): which items they create, in
which order, what a failure undoes, what CHECK reads and that it changes nothing."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

import pytest

from runner.cni.api import AttachmentKey, AttachRequest, ErrorKind, PortMapping
from runner.dhcp.client import Lease
from runner.dhcp.packet import DhcpError
from runner.drivers.links import LinkInfo
from runner.model.types import SupervisorConfig, Uplink
from runner.reconcile.diff import diff
from runner.reconcile.items import Item
from runner.supervisor.core import Supervisor
from runner.supervisor.workloads import WorkloadError, Workloads
from tests.unit.plan.sample import FACTS
from tests.unit.reconcile.test_reconcile import Fakes
from tests.unit.supervisor.test_supervisor import apply, manifest

KEY = AttachmentKey("site-net", "c1", "eth0")
GW = IPv4Address("10.1.0.1")
NETNS_DIR = Path("/nonexistent")  # set per test: files standing in for containers' netns


class FakeFx:
    """DHCP and link lookups, recorded; `addresses` are handed out in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.links: dict[tuple[str | None, str], LinkInfo] = {}
        self.next_ip = 100
        self.fail_lease = False

    def lease(self, netns: str, ifname: str, mac: str, hostname: str, timeout: float) -> Lease:
        self.calls.append(f"lease {netns} {ifname} {mac} {hostname}")
        if self.fail_lease:
            raise DhcpError(f"DHCP on {netns}/{ifname}: no lease within {timeout:g}s")
        self.next_ip += 1
        return Lease(IPv4Interface(f"10.1.0.{self.next_ip}/24"), GW, "02:aa:00:00:00:01",
                     3600, (GW,), (GW,), "site.lan")

    def release(self, ni_netns: str, address: IPv4Interface, server: IPv4Address,
                mac: str) -> None:
        self.calls.append(f"release {ni_netns} {address} {server} {mac}")

    def forget(self, lease_file: str, mac: str, ip: IPv4Address) -> None:
        self.calls.append(f"forget {Path(lease_file).name} {mac} {ip}")

    def link(self, netns: str | None, ifname: str) -> LinkInfo | None:
        return self.links.get((netns, ifname))


def tap_link(name: str = "tapvm0", mac: str = "02:00:00:00:0a:01") -> LinkInfo:
    return LinkInfo(7, name, "tun", mac, 1400, True, None, None, ())


@pytest.fixture
def sup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Supervisor, Fakes, FakeFx]:
    fakes = Fakes()
    confs = fakes.configurators()
    confs["task"].observe = lambda: {}  # type: ignore[attr-defined]
    config = SupervisorConfig(state_dir=str(tmp_path / "state"),
                              uplinks=(Uplink("eth0", "eth0"), Uplink("eth1", "eth1")))
    s = Supervisor(config, client=None, confs=confs,  # type: ignore[arg-type]
                   read_facts=lambda: FACTS)
    fx = FakeFx()
    s.workloads = Workloads(s, fx)
    state = {"state": "running", "services": {"dnsmasq": "running"}}
    monkeypatch.setattr(s, "status", lambda names=(), detail=False: [dict(state)])
    netns = tmp_path / "netns"
    netns.mkdir()
    for i in range(10):
        (netns / f"c{i}").touch()
    monkeypatch.setattr(f"{__name__}.NETNS_DIR", netns)
    apply(s, manifest("site"))
    fakes.calls.clear()
    return s, fakes, fx


def req(key: AttachmentKey = KEY, **kw: Any) -> AttachRequest:
    return AttachRequest(ni="site", key=key, netns=str(NETNS_DIR / key.container_id),
                         hostname=kw.pop("hostname", "web1"), **kw)


def test_add_plugs_leases_then_pins_and_maps(sup: tuple[Supervisor, Fakes, FakeFx]) -> None:
    s, fakes, fx = sup
    att = s.workloads.attach(req(port_mappings=(PortMapping(9090, 80, "tcp"),)))
    assert (att.address, att.gateway, att.mtu) == ("10.1.0.101/24", "10.1.0.1", 1500)
    assert att.dns.nameservers == ("10.1.0.1",) and att.routes[0].dst == "0.0.0.0/0"
    host_if = att.host_ifname
    assert fakes.calls == [  # the plug (its edge port first), then (after the lease) its
        ("create", f"edgeport:nr-site/{host_if}"),  # address, pin and map
        ("create", f"plug:site/{host_if}"),
        ("modify", "nft:device/inet nirunner"), ("modify", "nft:nr-site/inet ni"),
        ("modify", "files:site"), ("create", f"appaddr:site/{host_if}")]
    assert fx.calls == [f"lease {NETNS_DIR}/c1 eth0 {att.mac} web1"]
    (rec,) = [a for a in s.desired.attachments if a.kind == "cni"]
    assert (rec.container_id, rec.network, rec.address) == (
        "c1", "site-net", IPv4Interface("10.1.0.101/24"))
    p = s.plan().nis["site"]
    assert f"{att.mac},10.1.0.101,web1,infinite" in p.files["dhcp-hosts"]
    assert "dport 9090 dnat ip to 10.1.0.101:80" in p.nft
    assert s.store.load() == s.desired  # stored: it survives a restart
    assert s.events.since(0)[-1].kind == "workload.attached"
    # the same key again, or the same interface name in the netns: exists
    with pytest.raises(WorkloadError) as e:
        s.workloads.attach(req())
    assert e.value.kind is ErrorKind.EXISTS
    fx.links[(str(NETNS_DIR / "c2"), "eth0")] = tap_link("eth0")
    with pytest.raises(WorkloadError, match="has an interface eth0 already") as e:
        s.workloads.attach(req(replace(KEY, container_id="c2")))
    assert e.value.kind is ErrorKind.EXISTS


def test_refusals_change_nothing(sup: tuple[Supervisor, Fakes, FakeFx],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    s, fakes, fx = sup
    before = s.store.path.read_bytes()

    def kind_of(r: AttachRequest) -> ErrorKind:
        with pytest.raises(WorkloadError) as e:
            s.workloads.attach(r)
        return e.value.kind

    assert kind_of(replace(req(), ni="nosuch")) is ErrorKind.NOT_FOUND
    assert kind_of(req(port_mappings=(PortMapping(8080, 80, "tcp"),))) is ErrorKind.CONFLICT
    assert kind_of(req(port_mappings=(PortMapping(1, 1, "tcp", "10.0.0.1"),))) \
        is ErrorKind.INVALID
    assert kind_of(req(mac="03:00:00:00:00:01")) is ErrorKind.INVALID  # multicast
    monkeypatch.setattr(s, "status", lambda names=(), detail=False: [
        {"state": "pending", "reason": "task starting"}])
    assert kind_of(req()) is ErrorKind.NOT_READY
    assert fakes.calls == [] and fx.calls == [] and s.store.path.read_bytes() == before


def test_no_lease_undoes_the_plug(sup: tuple[Supervisor, Fakes, FakeFx]) -> None:
    s, fakes, fx = sup
    fx.fail_lease = True
    before = s.store.path.read_bytes()
    with pytest.raises(WorkloadError, match="no lease within 10s") as e:
        s.workloads.attach(req())
    assert e.value.kind is ErrorKind.NO_LEASE
    port, plug = (i for what, i in fakes.calls if what == "create")
    assert fakes.calls == [("create", port), ("create", plug), ("delete", plug),
                           ("delete", port)]
    assert not [c for c in fx.calls if c.startswith("release")]  # nothing was leased
    assert s.store.path.read_bytes() == before and plug not in s.current


def test_a_failure_after_the_lease_releases_it(sup: tuple[Supervisor, Fakes, FakeFx]) -> None:
    s, fakes, fx = sup
    current, before = dict(s.current), s.store.path.read_bytes()
    fakes.fail = {("modify", "files:site")}  # the pin cannot be written
    with pytest.raises(WorkloadError, match="config files of NI site.*No space left") as e:
        s.workloads.attach(req(port_mappings=(PortMapping(9090, 80, "tcp"),)))
    assert e.value.kind is ErrorKind.FAILED
    assert fx.calls[-1].startswith("release nr-site 10.1.0.101/24 10.1.0.1 ")
    undone = [c for c in fakes.calls if c[0] != "create"]
    assert [x[1].split(":")[0] for x in undone[-2:]] == ["plug", "edgeport"]
    assert {x[0] for x in undone[-2:]} == {"delete"}
    # the port maps were put back by the engine's rollback, the plug by the diff back
    assert ("modify", "nft:nr-site/inet ni") in undone[1:]
    assert s.current == current and s.store.path.read_bytes() == before
    assert "9090" not in s.plan().nis["site"].nft


def test_del_is_idempotent_and_releases(sup: tuple[Supervisor, Fakes, FakeFx]) -> None:
    s, fakes, fx = sup
    att = s.workloads.attach(req(port_mappings=(PortMapping(9090, 80, "tcp"),)))
    fakes.calls.clear()
    assert s.workloads.detach("site", KEY)
    assert ("delete", f"plug:site/{att.host_ifname}") in fakes.calls
    assert ("delete", f"appaddr:site/{att.host_ifname}") not in fakes.calls  # with its plug
    assert {("modify", "files:site"), ("modify", "nft:nr-site/inet ni")} <= set(fakes.calls)
    assert fx.calls[-1] == f"release nr-site 10.1.0.101/24 10.1.0.1 {att.mac}"
    assert not [a for a in s.desired.attachments if a.kind == "cni"]
    assert "infinite" not in s.plan().nis["site"].files["dhcp-hosts"]
    fakes.calls.clear()
    assert not s.workloads.detach("site", KEY)  # nothing left: no error, nothing done
    assert fakes.calls == []
    with pytest.raises(WorkloadError) as e:
        s.workloads.detach("nosuch", KEY)
    assert e.value.kind is ErrorKind.NOT_FOUND


def test_a_release_while_dnsmasq_is_down_forgets_the_lease(
        sup: tuple[Supervisor, Fakes, FakeFx]) -> None:
    s, fakes, fx = sup
    att = s.workloads.attach(req())
    task = s.current["task:ni-site"]
    s.current["task:ni-site"] = replace(task, running=False)  # type: ignore[call-arg]
    fakes.calls.clear()
    assert s.workloads.detach("site", KEY)
    assert fx.calls[-1] == f"forget dnsmasq.leases {att.mac} 10.1.0.101"  # not released
    assert ("modify", "task:ni-site") in fakes.calls  # started after the lease went


def test_gc_removes_only_what_the_runtime_forgot(sup: tuple[Supervisor, Fakes, FakeFx]) -> None:
    s, fakes, fx = sup
    keys = [replace(KEY, container_id=f"c{i}") for i in range(1, 4)]
    for key in keys:
        s.workloads.attach(req(key))
    other = replace(KEY, network="other-net", container_id="c9")
    s.workloads.attach(req(other))
    report = s.workloads.gc("site", "site-net", [keys[1]])
    assert set(report.removed) == {keys[0], keys[2]} and report.errors == ()
    left = {a.container_id for a in s.desired.attachments}
    assert left == {"c2", "c9"}
    assert len([c for c in fx.calls if c.startswith("release")]) == 2
    assert s.workloads.gc("site", "site-net", [keys[1]]).removed == ()


def test_check_reads_and_changes_nothing(sup: tuple[Supervisor, Fakes, FakeFx]) -> None:
    s, fakes, fx = sup
    att = s.workloads.attach(req(port_mappings=(PortMapping(9090, 80, "tcp"),)))
    fakes.calls.clear()
    report = s.workloads.check("site", KEY)
    assert report.attachment == att and report.problems == ()
    # the fakes read what they are told: the address gone, the plug missing
    addr_id = f"appaddr:site/{att.host_ifname}"
    plug_id = f"plug:site/{att.host_ifname}"
    intended = s.intended()
    seen: dict[str, Item | None] = {
        addr_id: replace(intended[addr_id], address=IPv4Interface("0.0.0.0/32"),
                         pinned=False),  # type: ignore[call-arg]
        plug_id: None}
    for kind in ("plug", "appaddr"):
        s.confs[kind].read = lambda x: seen.get(x.id, x)  # type: ignore[attr-defined]
    current = dict(s.current)
    problems = s.workloads.check("site", KEY).problems
    assert problems[0].startswith("plug ") and problems[0].endswith(": missing")
    assert "address 0.0.0.0/32 -> 10.1.0.101/24" in problems[1]
    assert "pinned again" in problems[1]
    assert fakes.calls == [] and s.current == current  # nothing changed, nothing recorded
    assert s.workloads.check("site", replace(KEY, container_id="c7")).attachment is None


def test_a_tap_is_taken_and_given_back(sup: tuple[Supervisor, Fakes, FakeFx]) -> None:
    s, fakes, fx = sup
    fx.links[(None, "tapvm0")] = tap_link()
    att = s.workloads.attach(AttachRequest("site", AttachmentKey("", "", "tapvm0"), "",
                                           interface="tapvm0"))
    assert (att.interface, att.mac, att.address) == ("tapvm0", "02:00:00:00:0a:01", "")
    assert fakes.calls == [("create", f"edgeport:nr-site/{att.host_ifname}"),
                           ("create", f"tap:site/{att.host_ifname}")]
    (rec,) = s.desired.attachments
    assert (rec.kind, rec.mtu, rec.up) == ("tap", 1400, True)
    # now it lives in the NI: still there as far as the items are concerned
    del fx.links[(None, "tapvm0")]
    fx.links[("nr-site", att.host_ifname)] = tap_link(att.host_ifname)
    d = diff(s.current, s.intended(), scope={"site"})
    assert f"tap:site/{att.host_ifname}" in [x.id for x in d.unchanged] and not d.pending
    del fx.links[("nr-site", att.host_ifname)]  # gone (its VM stopped): it waits, no error
    assert [why for _, why in diff(s.current, s.intended(), scope={"site"}).pending] == [
        "interface tapvm0"]
    fx.links[("nr-site", att.host_ifname)] = tap_link(att.host_ifname)
    for bad, kind in (("tapvm0", ErrorKind.EXISTS), ("eth0", ErrorKind.INVALID),
                      ("nr0", ErrorKind.INVALID), ("nosuch0", ErrorKind.INVALID)):
        with pytest.raises(WorkloadError) as e:
            s.workloads.attach(AttachRequest("site", AttachmentKey("", "", bad), "",
                                             interface=bad))
        assert e.value.kind is kind, bad
    fx.links[(None, "veth9")] = replace(tap_link("veth9"), kind="veth")
    with pytest.raises(WorkloadError, match="veth link, not a tap"):
        s.workloads.attach(AttachRequest("site", AttachmentKey("", "", "veth9"), "",
                                         interface="veth9"))
    fakes.calls.clear()
    assert s.workloads.detach("site", AttachmentKey("", "", "tapvm0"))
    assert fakes.calls == [("delete", f"tap:site/{att.host_ifname}"),
                           ("delete", f"edgeport:nr-site/{att.host_ifname}")]
    assert s.desired.attachments == []


def test_deleting_the_ni_gives_its_tap_back(sup: tuple[Supervisor, Fakes, FakeFx]) -> None:
    s, fakes, fx = sup
    fx.links[(None, "tapvm0")] = tap_link()
    att = s.workloads.attach(AttachRequest("site", AttachmentKey("", "", "tapvm0"), "",
                                           interface="tapvm0"))
    fakes.calls.clear()
    s.delete(["site"])
    deletes = [i for what, i in fakes.calls if what == "delete"]
    assert deletes.index(f"tap:site/{att.host_ifname}") < deletes.index("netns:nr-site")
    assert s.desired.attachments == []


def test_a_restarted_supervisor_keeps_them(sup: tuple[Supervisor, Fakes, FakeFx]) -> None:
    s, fakes, fx = sup
    att = s.workloads.attach(req(port_mappings=(PortMapping(9090, 80, "tcp"),)))
    again = Supervisor(s.config, client=None, confs=s.confs,  # type: ignore[arg-type]
                       read_facts=lambda: FACTS)
    again.workloads = Workloads(again, fx)
    fakes.calls.clear()
    again.reconcile(force=True)  # reads everything back (the fakes: as intended)
    assert fakes.calls == []
    assert again.workloads.check("site", KEY).attachment == att
    assert f"appaddr:site/{att.host_ifname}" in again.current


def test_attach_netns_leaves_cni_attachments_alone(sup: tuple[Supervisor, Fakes, FakeFx]) -> None:
    from runner.errors import NirunnerError

    s, fakes, fx = sup
    s.workloads.attach(req())
    netns = str(NETNS_DIR / "c1")
    with pytest.raises(NirunnerError, match="attached through CNI"):
        s.attach("site", netns, "eth0", "", "")
    with pytest.raises(NirunnerError, match="is not attached"):
        s.detach("site", netns, "eth0")
    assert [a.kind for a in s.desired.attachments] == ["cni"]
    s.attach("site", netns, "eth1", "", "")  # another interface of that netns: fine
    assert [a.kind for a in s.desired.attachments] == ["cni", "netns"]


def test_the_heap_is_trimmed_after_a_few_attaches_not_after_each(
        sup: tuple[Supervisor, Fakes, FakeFx], monkeypatch: pytest.MonkeyPatch) -> None:
    """A trim walks the heap (~0.5 ms): not after every small run, but the ops of small
    runs add up (100 attaches left ~3 MiB untrimmed when only bursts counted)."""
    from runner.supervisor import core, malloc

    s, fakes, fx = sup
    trims: list[int] = []
    monkeypatch.setattr(malloc, "trim", lambda: trims.append(len(fakes.calls)))
    s.attach("site", str(NETNS_DIR / "c0"), "eth0", "", "")
    assert trims == [] and 0 < len(fakes.calls) < core.TRIM_AFTER
    for i in range(1, 10):
        s.attach("site", str(NETNS_DIR / f"c{i}"), "eth0", "", "")
    assert trims and all(b - a >= core.TRIM_AFTER for a, b in zip([0, *trims], trims, strict=False))


def test_the_record_keeps_its_owners_index_through_every_change(
        sup: tuple[Supervisor, Fakes, FakeFx]) -> None:
    """Attaches diff their scope out of the owners' index (runner.reconcile.owned): it must
    say what a scan of the record says after applies, attaches, CNI calls, passes, heals
    and deletes, or an attach would miss (or keep) items."""
    from runner.drivers.nlwatch import Drift
    from runner.reconcile.owned import Items

    s, fakes, fx = sup

    def check() -> None:
        for items in (s.current, s.intended()):
            assert isinstance(items, Items)
            for owner in {"", "site", "lab", "nope"}:
                assert items.owned({owner}) == {i: x for i, x in items.items()
                                                if x.owner == owner and not x.EXTERNAL}
            assert items.external_ids() == {i for i, x in items.items() if x.EXTERNAL}

    check()
    apply(s, manifest("lab", 8081, "10.2.0.0/24"))
    check()
    s.attach("site", str(NETNS_DIR / "c0"), "eth0", "", "")
    s.attach("lab", str(NETNS_DIR / "c1"), "eth0", "", "")
    check()
    s.workloads.attach(req(AttachmentKey("site-net", "c2", "eth0")))
    check()
    s.detach("site", str(NETNS_DIR / "c0"), "eth0")
    check()
    s.reconcile(force=True)
    check()
    s.note_drift(Drift("lab", "link br0 deleted"))
    s.heal()
    check()
    s.delete(["lab"])
    check()
    assert not s.current.owned({"lab"}) and s.current.owned({"site"})
