"""The supervisor's side of CNI attachments: records, rules, and the all-or-nothing procedure."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from runner.cni import attachments as at
from runner.cni import procedure
from runner.cni.api import AttachmentKey, PortMapping
from runner.dhcp.client import Lease
from runner.dhcp.packet import INFINITE
from runner.model.types import Dhcp, DhcpRange, NetworkInstance, NIType, PortMap, Protocol

KEY = AttachmentKey("factory", "c1", "eth0")
ADDR = IPv4Interface("10.1.0.57/24")
GW = IPv4Address("10.1.0.1")


def ni(name: str, uplink: str | None = "eth0", kind: NIType = NIType.LOCAL,
       port_maps: tuple[PortMap, ...] = ()) -> NetworkInstance:
    return NetworkInstance(name=name, type=kind, subnet=IPv4Network("10.1.0.0/24"), gateway=GW,
                           dhcp=Dhcp(range=DhcpRange(IPv4Address("10.1.0.100"),
                                                     IPv4Address("10.1.0.199")), lease_time=3600),
                           uplink=uplink, port_maps=port_maps)


def test_record_names_are_stable_and_valid() -> None:
    r = at.new_record("factory", KEY, "/run/netns/x")
    assert r.mac == at.mac_for("factory", KEY) and int(r.mac[:2], 16) & 3 == 2
    assert r.host_ifname.startswith("ap") and len(r.host_ifname) <= 15
    assert at.new_record("factory", KEY, "/run/netns/y").host_ifname == r.host_ifname
    other = at.new_record("factory", dataclasses.replace(KEY, ifname="eth1"), "/x")
    assert other.mac != r.mac and other.host_ifname != r.host_ifname
    assert at.new_record("factory", KEY, "/x", mac="02:AA:00:00:00:01").mac == "02:aa:00:00:00:01"


def test_record_json_round_trip() -> None:
    r = dataclasses.replace(at.new_record("factory", KEY, "/run/netns/x", hostname="web"),
                            address=ADDR, server=GW,
                            port_mappings=(PortMapping(8080, 80, "tcp", "198.51.100.2"),))
    assert at.CniAttachment.from_json(r.to_json()) == r


def test_port_mapping_conflicts_span_the_uplink() -> None:
    factory = ni("factory", port_maps=(PortMap("web", Protocol.TCP, 8080, "10.1.0.10", 80),))
    lab = ni("lab")
    other_uplink = ni("far", uplink="eth1")
    nis = {"factory": factory, "lab": lab, "far": other_uplink}
    held = dataclasses.replace(at.new_record("lab", AttachmentKey("n2", "c9", "eth0"), "/y"),
                               port_mappings=(PortMapping(9090, 90, "udp"),))
    up = IPv4Address("198.51.100.2")
    want = [PortMapping(8080, 80, "tcp"), PortMapping(9090, 90, "udp"),
            PortMapping(9090, 91, "tcp"), PortMapping(7000, 70, "tcp"),
            PortMapping(7000, 71, "tcp")]
    invalid, conflicts = at.port_map_problems(lab, up, nis, [held], want)
    assert invalid == []
    assert conflicts == [
        "tcp 8080 on uplink eth0 is mapped already, by port map factory/web",
        "udp 9090 on uplink eth0 is mapped already, by container c9 (network n2)",
        "tcp 7000 is asked for twice"]
    # another uplink is another port space
    assert at.port_map_problems(other_uplink, up, nis, [held], want[:1]) == ([], [])
    invalid, _ = at.port_map_problems(lab, up, nis, [], [PortMapping(1, 1, "tcp", "10.0.0.9")])
    assert invalid == ["hostIP 10.0.0.9 is not uplink eth0's address 198.51.100.2"]
    gap = ni("gap", uplink=None)
    assert at.port_map_problems(gap, None, {"gap": gap}, [], want[:1])[0] == [
        "NI gap is an air-gapped NI: it takes no port mappings"]
    assert at.port_map_problems(lab, up, nis, [held], []) == ([], [])


def test_what_attachments_add_to_their_ni() -> None:
    r = dataclasses.replace(at.new_record("factory", KEY, "/x", hostname="web"), address=ADDR,
                            port_mappings=(PortMapping(8080, 80, "tcp"),))
    unleased = at.new_record("factory", dataclasses.replace(KEY, container_id="c2"), "/y")
    elsewhere = dataclasses.replace(r, ni="lab")
    recs = [r, unleased, elsewhere]
    assert at.pinned_hosts(recs, "factory") == [f"{r.mac},10.1.0.57,web,infinite"]
    (pm,) = at.port_maps(recs, "factory")
    assert (pm.protocol, pm.uplink_port, pm.target, pm.target_port) == ("tcp", 8080,
                                                                         "10.1.0.57", 80)
    assert pm.name.startswith("cni-") and pm.name.endswith("-tcp8080")


def test_gc_victims_stay_within_ni_and_network() -> None:
    def rec(ni_: str, net: str, cid: str) -> at.CniAttachment:
        return at.new_record(ni_, AttachmentKey(net, cid, "eth0"), "/x")

    recs = [rec("factory", "factory", "keep"), rec("factory", "factory", "stale"),
            rec("factory", "other-net", "stale2"), rec("lab", "factory", "stale3")]
    victims = at.gc_victims(recs, "factory", "factory", [AttachmentKey("factory", "keep", "eth0")])
    assert [v.key.container_id for v in victims] == ["stale"]


def test_drift() -> None:
    r = dataclasses.replace(at.new_record("factory", KEY, "/run/netns/x"), address=ADDR,
                            port_mappings=(PortMapping(8080, 80, "tcp"),))
    good = at.Observed(host_if=True, host_if_master="br0", netns=True, peer_mac=r.mac,
                       addresses=(ADDR,), default_gw=GW, lease=("0", r.mac, "10.1.0.57"),
                       uplink_ports=frozenset({("tcp", 8080)}))
    assert at.drift(r, good, GW) == []
    assert at.drift(r, dataclasses.replace(good, netns=False), GW) == [
        "netns /run/netns/x is gone"]
    bad = dataclasses.replace(good, host_if=False, peer_mac="02:00:00:00:00:01", addresses=(),
                              default_gw=None, lease=("1700000000", r.mac, "10.1.0.57"),
                              uplink_ports=frozenset())
    problems = at.drift(r, bad, GW)
    assert len(problems) == 6 and any("not in the NI's nft table" in p for p in problems)
    assert any("intended pinned" in p for p in problems)


# -- the procedure -------------------------------------------------------------------------

class FakeEffects:
    def __init__(self, fail: str = "", pinned: Lease | None = None) -> None:
        self.fail, self.calls = fail, []  # type: ignore[var-annotated]
        self.pinned = pinned

    def _do(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail:
            raise OSError(f"{name} broke")

    def plug(self, r: at.CniAttachment) -> None:
        self._do("plug")

    def unplug(self, r: at.CniAttachment) -> None:
        self._do("unplug")

    def lease(self, r: at.CniAttachment) -> Lease:
        self._do("lease")
        return Lease(ADDR, GW, "02:00:00:aa:00:01", 3600, (GW,), (GW,), "factory.lan")

    def configure(self, r: at.CniAttachment, lease: Lease) -> None:
        assert r.address == lease.address
        self._do("configure")

    def pin(self, r: at.CniAttachment) -> Lease:
        self._do("pin")
        return self.pinned or Lease(ADDR, GW, "02:00:00:aa:00:01", INFINITE)

    def map_ports(self, r: at.CniAttachment) -> None:
        self._do("map_ports")

    def unmap_ports(self, r: at.CniAttachment) -> None:
        self._do("unmap_ports")

    def unpin(self, r: at.CniAttachment) -> None:
        self._do("unpin")

    def release(self, r: at.CniAttachment) -> None:
        self._do("release")


REC = dataclasses.replace(at.new_record("factory", KEY, "/run/netns/x"),
                          port_mappings=(PortMapping(8080, 80, "tcp"),))


def test_attach_runs_every_step_in_order() -> None:
    fx = FakeEffects()
    r = procedure.attach(REC, fx)
    assert fx.calls == ["plug", "lease", "configure", "pin", "map_ports"]
    assert r.address == ADDR and r.server == GW
    fx2 = FakeEffects()
    procedure.attach(dataclasses.replace(REC, port_mappings=()), fx2)
    assert fx2.calls == ["plug", "lease", "configure", "pin"]


@pytest.mark.parametrize("fail, undone", [
    ("plug", ["unplug"]),  # a half-made veth goes too
    ("lease", ["unplug"]),
    ("configure", ["release", "unplug"]),
    ("pin", ["unpin", "release", "unplug"]),
    ("map_ports", ["unmap_ports", "unpin", "release", "unplug"]),
])
def test_a_failed_attach_undoes_what_it_did(fail: str, undone: list[str]) -> None:
    fx = FakeEffects(fail=fail)
    with pytest.raises(procedure.AttachFailed, match=f"{fail} broke"):
        procedure.attach(REC, fx)
    done = fx.calls.index(fail) + 1
    assert fx.calls[done:] == undone


def test_a_pin_that_does_not_hold_fails_the_attach() -> None:
    fx = FakeEffects(pinned=Lease(ADDR, GW, "02:00:00:aa:00:01", 3600))
    with pytest.raises(procedure.AttachFailed, match="not 10.1.0.57/24 forever"):
        procedure.attach(REC, fx)
    assert fx.calls[-3:] == ["unpin", "release", "unplug"]


def test_undo_errors_are_reported_not_hidden() -> None:
    class Stubborn(FakeEffects):
        def unplug(self, r: at.CniAttachment) -> None:
            raise OSError("netns busy")

    with pytest.raises(procedure.AttachFailed, match=r"undoing: undo plug: netns busy"):
        procedure.attach(REC, Stubborn(fail="configure"))


def test_detach_is_best_effort() -> None:
    r = dataclasses.replace(REC, address=ADDR)
    fx = FakeEffects(fail="release")
    errors = procedure.detach(r, fx)
    assert fx.calls == ["unmap_ports", "unpin", "release", "unplug"]
    assert errors == ["detach c1/eth0 from NI factory: release: release broke"]
    fx = FakeEffects()
    assert procedure.detach(dataclasses.replace(REC, port_mappings=()), fx) == []
    assert fx.calls == ["unpin", "unplug"]  # never leased: nothing to release
