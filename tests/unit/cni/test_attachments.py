"""The rules of attachments made through CNI and of taps (pure)."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from runner.cni import attachments as at
from runner.cni.api import AttachmentKey, PortMapping
from runner.model.types import Dhcp, DhcpRange, NetworkInstance, NIType, PortMap, Protocol
from runner.plan.ni import PinnedLease
from runner.supervisor.store import CNI, TAP, Attachment

KEY = AttachmentKey("factory", "c1", "eth0")
ADDR = IPv4Interface("10.1.0.57/24")
GW = IPv4Address("10.1.0.1")
UP = [IPv4Address("198.51.100.2")]


def ni(name: str, uplink: str | None = "eth0", kind: NIType = NIType.LOCAL,
       port_maps: tuple[PortMap, ...] = ()) -> NetworkInstance:
    return NetworkInstance(name=name, type=kind, subnet=IPv4Network("10.1.0.0/24"), gateway=GW,
                           dhcp=Dhcp(range=DhcpRange(IPv4Address("10.1.0.100"),
                                                     IPv4Address("10.1.0.199")), lease_time=3600),
                           uplink=uplink, port_maps=port_maps)


def rec(ni_: str = "factory", key: AttachmentKey = KEY, address: IPv4Interface | None = ADDR,
        ports: tuple[PortMapping, ...] = (), hostname: str = "web") -> Attachment:
    return Attachment(ni_, f"/run/netns/{key.container_id}", key.ifname,
                      at.host_ifname_for(ni_, key), at.mac_for(ni_, key), hostname, CNI,
                      key.network, key.container_id, address, ports)


def test_names_are_stable_and_valid() -> None:
    mac = at.mac_for("factory", KEY)
    assert mac == at.mac_for("factory", KEY) and int(mac[:2], 16) & 3 == 2
    port = at.host_ifname_for("factory", KEY)
    assert port.startswith("ap") and len(port) <= 15
    other = dataclasses.replace(KEY, ifname="eth1")
    assert at.mac_for("factory", other) != mac and at.host_ifname_for("factory", other) != port
    assert at.tap_host_ifname("factory", "tap0") != at.tap_host_ifname("lab", "tap0")


def test_keys_and_lookup() -> None:
    r = rec()
    tap = Attachment("factory", "", "tapvm0", "ap00000001", "02:00:00:00:0a:01", kind=TAP)
    plain = Attachment("factory", "/run/netns/app", "eth0", "ap00000002", "02:00:00:00:0a:02")
    recs = [plain, r, tap]
    assert at.key_of(r) == KEY and at.key_of(tap) == AttachmentKey("", "", "tapvm0")
    assert at.find(recs, "factory", KEY) is r
    assert at.find(recs, "lab", KEY) is None
    assert at.find(recs, "factory", AttachmentKey("", "", "tapvm0")) is tap
    assert at.find(recs, "factory", AttachmentKey("", "", "eth0")) is None  # not a tap
    assert at.owner(r) == "container c1 (network factory)"
    assert at.owner(tap) == "interface tapvm0"


def test_port_mapping_conflicts_span_the_uplink() -> None:
    factory = ni("factory", port_maps=(PortMap("web", Protocol.TCP, 8080, "10.1.0.10", 80),))
    lab = ni("lab")
    far = ni("far", uplink="eth1")
    nis = {"factory": factory, "lab": lab, "far": far}
    held = rec("lab", AttachmentKey("n2", "c9", "eth0"), ports=(PortMapping(9090, 90, "udp"),))
    want = [PortMapping(8080, 80, "tcp"), PortMapping(9090, 90, "udp"),
            PortMapping(9090, 91, "tcp"), PortMapping(7000, 70, "tcp"),
            PortMapping(7000, 71, "tcp")]
    invalid, conflicts = at.port_map_problems(lab, UP, nis, [held], want)
    assert invalid == []
    assert conflicts == [
        "tcp 8080 on uplink eth0 is mapped already, by port map factory/web",
        "udp 9090 on uplink eth0 is mapped already, by container c9 (network n2)",
        "tcp 7000 is asked for twice"]
    # another uplink is another port space
    assert at.port_map_problems(far, UP, nis, [held], want[:1]) == ([], [])
    invalid, _ = at.port_map_problems(lab, UP, nis, [], [PortMapping(1, 1, "tcp", "10.0.0.9")])
    assert invalid == ["hostIP 10.0.0.9 is not an address of uplink eth0 (198.51.100.2)"]
    assert at.port_map_problems(lab, UP, nis, [], [PortMapping(1, 1, "tcp", "198.51.100.2")]) \
        == ([], [])
    gap = ni("gap", uplink=None)
    assert at.port_map_problems(gap, [], {"gap": gap}, [], want[:1])[0] == [
        "NI gap is an air-gapped NI: it takes no port mappings"]
    vpn = ni("v", kind=NIType.VPN)
    assert "a VPN NI" in at.port_map_problems(vpn, UP, {"v": vpn}, [], want[:1])[0][0]
    assert at.port_map_problems(lab, UP, nis, [held], []) == ([], [])


def test_what_attachments_add_to_their_ni() -> None:
    r = rec(ports=(PortMapping(8080, 80, "tcp"),))
    unleased = rec(key=dataclasses.replace(KEY, container_id="c2"), address=None)
    elsewhere = rec("lab", ports=(PortMapping(8080, 80, "tcp"),))
    tap = Attachment("factory", "", "tapvm0", "ap00000001", "02:00:00:00:0a:01", kind=TAP)
    recs = [r, unleased, elsewhere, tap]
    assert at.pins(recs, "factory") == (PinnedLease(r.mac, ADDR.ip, "web", at.owner(r)),)
    (pm,) = at.port_maps(recs, "factory")
    assert pm == PortMap("cni-c1-tcp8080", Protocol.TCP, 8080, "10.1.0.57", 80)
    inputs = at.plan_inputs(recs)
    assert sorted(inputs) == ["factory", "lab"]
    assert inputs["factory"].pins == at.pins(recs, "factory")
    assert at.plan_inputs([unleased, tap]) == {}


def test_gc_victims_stay_within_ni_network_and_cni() -> None:
    def r(ni_: str, net: str, cid: str) -> Attachment:
        return rec(ni_, AttachmentKey(net, cid, "eth0"))

    plain = Attachment("factory", "/run/netns/app", "eth0", "ap00000002", "02:00:00:00:0a:02")
    recs = [r("factory", "factory", "keep"), r("factory", "factory", "stale"),
            r("factory", "other-net", "stale2"), r("lab", "factory", "stale3"), plain]
    victims = at.gc_victims(recs, "factory", "factory", [AttachmentKey("factory", "keep", "eth0")])
    assert [v.container_id for v in victims] == ["stale"]
    assert [v.container_id for v in at.gc_victims(recs, "factory", "factory", [])] == [
        "keep", "stale"]


def test_readiness_from_status() -> None:
    assert at.readiness({"state": "running"}).ready
    assert at.readiness({"state": "degraded", "services": {"dnsmasq": "running"}}).ready
    r = at.readiness({"state": "degraded", "reason": "dnsmasq backoff",
                      "services": {"dnsmasq": "backoff"}, "apps": [{"ip": "10.1.0.5"}]})
    assert not r.ready and r.degraded and "dnsmasq backoff" in r.reason
    assert not at.readiness({"state": "failed"}).degraded
    # containerd away: not ready, but the apps still have their DHCP and DNS
    away = at.readiness({"state": "unknown", "reason": "containerd unreachable",
                         "services": {"dnsmasq": "running"}, "attached": [{"kind": "cni"}]})
    assert not away.ready and not away.degraded and "containerd unreachable" in away.reason
