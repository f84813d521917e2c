"""A CNI attachment's data path without the supervisor: the attach procedure over the
drivers (veth, DHCP from inside the container's netns, address, pin, release) against a
real dnsmasq on a bridge in lab namespaces; the supervisor's hooks done by the test."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from runner.cni import attachments as at
from runner.cni import procedure
from runner.cni.api import AttachmentKey, PortMapping
from runner.cni.attachments import CniAttachment
from runner.cni.effects import DriverEffects
from runner.drivers import links
from runner.lab.dhcpserver import MiniNI
from runner.lab.topology import sh
from tests.integration.conftest import RUN_ID

pytestmark = pytest.mark.integration


class Hooks:
    """The supervisor's part, as the test's lab does it: dhcp-hosts and a SIGHUP."""

    def __init__(self, lan: MiniNI) -> None:
        self.lan, self.records, self.ports = lan, [], []  # type: ignore[var-annotated]

    def pin(self, r: CniAttachment) -> None:
        self.records.append(r)
        self.lan.set_hosts(at.pinned_hosts(self.records, r.ni))

    def unpin(self, r: CniAttachment) -> None:
        self.records = [x for x in self.records if x.key != r.key]
        self.lan.set_hosts(at.pinned_hosts(self.records, r.ni))

    def map_ports(self, r: CniAttachment) -> None:
        self.ports.extend(at.port_maps([r], r.ni))

    def unmap_ports(self, r: CniAttachment) -> None:
        names = {pm.name for pm in at.port_maps([r], r.ni)}
        self.ports = [pm for pm in self.ports if pm.name not in names]


@pytest.fixture
def lan() -> Iterator[MiniNI]:
    ni = MiniNI(f"nrt{RUN_ID}c", subnet="10.9.3")
    try:
        yield ni.start()
    finally:
        ni.stop()


def effects(lan: MiniNI) -> tuple[DriverEffects, Hooks]:
    hooks = Hooks(lan)
    return DriverEffects(hooks, lan.netns, mtu=1400, lease_timeout=3), hooks


def test_attach_and_detach(lan: MiniNI) -> None:
    fx, hooks = effects(lan)
    ctr = lan.add_netns(f"{lan.prefix}-ctr1")
    rec = at.new_record("factory", AttachmentKey("factory", "c1", "eth0"), f"/run/netns/{ctr}",
                        hostname="web1", port_mappings=(PortMapping(8080, 80, "tcp"),))
    r = procedure.attach(rec, fx)
    assert r.address is not None and str(r.address).startswith("10.9.3.")
    assert r.server == IPv4Address(lan.gateway)

    # configured inside the container's netns, and real traffic flows
    link = sh("ip", "-o", "link", "show", "eth0", netns=ctr).stdout
    assert r.mac in link and "mtu 1400" in link
    assert str(r.address) in sh("ip", "-4", "-o", "addr", "show", "eth0", netns=ctr).stdout
    assert sh("ping", "-c1", "-W2", lan.gateway, netns=ctr, check=False).returncode == 0
    # a pinned, real lease: in dnsmasq's file forever, its name in the NI's DNS
    assert [x[:4] for x in lan.lease_lines()] == [["0", r.mac, str(r.address.ip), "web1"]]
    other = lan.add_netns(f"{lan.prefix}-o")
    lan.plug(other, "02:00:00:00:03:01")
    sh("ip", "addr", "add", f"{lan.subnet}.250/24", "dev", "eth0", netns=other)
    got = sh(sys.executable, "-m", "runner.lab.dnsq", lan.gateway, "web1.lab.test",
             netns=other, check=False).stdout.split()
    assert got == [str(r.address.ip)]
    assert [pm.uplink_port for pm in hooks.ports] == [8080]

    assert procedure.detach(r, fx) == []
    assert r.host_ifname not in links.names(lan.netns)
    assert "eth0" not in links.names(f"/run/netns/{ctr}")
    lan.wait_leases(lambda ls: ls == [], "the lease to be released")
    assert lan.hosts.read_text() == "" and hooks.ports == []
    assert procedure.detach(r, fx) == []  # again: nothing left, no error


def test_detach_after_the_netns_is_gone(lan: MiniNI) -> None:
    fx, _ = effects(lan)
    ctr = lan.add_netns(f"{lan.prefix}-ctr2")
    r = procedure.attach(at.new_record("factory", AttachmentKey("factory", "c2", "eth0"),
                                       f"/run/netns/{ctr}"), fx)
    sh("ip", "netns", "del", ctr)
    lan.made.remove(ctr)
    assert procedure.detach(r, fx) == []
    lan.wait_leases(lambda ls: ls == [], "the lease to be released")


def test_a_failed_attach_leaves_nothing(lan: MiniNI) -> None:
    fx, hooks = effects(lan)
    ctr = lan.add_netns(f"{lan.prefix}-ctr3")
    sh("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "x0", netns=ctr)
    rec = at.new_record("factory", AttachmentKey("factory", "c3", "eth0"), f"/run/netns/{ctr}")
    with pytest.raises(procedure.AttachFailed, match="has an interface eth0 already"):
        procedure.attach(rec, fx)
    assert rec.host_ifname not in links.names(lan.netns)

    # no DHCP server: the veth goes again, nothing is pinned
    quiet = MiniNI(f"nrt{RUN_ID}k", subnet="10.9.4")
    try:
        quiet.start(dhcp=False)
        qfx = DriverEffects(Hooks(quiet), quiet.netns, mtu=1500, lease_timeout=1)
        ctr4 = quiet.add_netns(f"{quiet.prefix}-ctr4")
        rec4 = dataclasses.replace(rec, netns=f"/run/netns/{ctr4}")
        with pytest.raises(procedure.AttachFailed, match="lease: DHCP on .*no lease within 1s"):
            procedure.attach(rec4, qfx)
        assert rec4.host_ifname not in links.names(quiet.netns)
        assert "eth0" not in links.names(f"/run/netns/{ctr4}")
    finally:
        quiet.stop()
    assert hooks.records == []
