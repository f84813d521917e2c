"""A VM's tap taken from the device netns into an NI's bridge and given back intact
(the driver alone: links.move_to_netns / give_back), in lab namespaces."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from runner.drivers import links
from runner.lab.dhcpserver import BRIDGE, MiniNI
from runner.lab.topology import sh
from tests.integration.conftest import RUN_ID

pytestmark = pytest.mark.integration

TAP = "tapvm0"
TAP_MAC = "02:00:00:00:0a:01"
NI_NAME = "ap7a9b0c1d"  # what the supervisor would call it inside the NI


@pytest.fixture
def lan() -> Iterator[tuple[MiniNI, str]]:
    """The NI's LAN and a device netns (where VM managers make their taps)."""
    ni = MiniNI(f"nrt{RUN_ID}t", subnet="10.9.2")
    try:
        ni.start()
        yield ni, ni.add_netns(f"{ni.prefix}-dev")
    finally:
        ni.stop()


def link_facts(netns: str, ifname: str) -> dict[str, object]:
    (link,) = json.loads(sh("ip", "-j", "link", "show", ifname, netns=netns).stdout)
    return {"name": link["ifname"], "mac": link["address"], "mtu": link["mtu"],
            "up": "UP" in link["flags"], "master": link.get("master")}


class VM:
    """runner.lab.tapclient: a process holding the tap's fd, as a VM manager's would."""

    def __init__(self, netns: str, tap: str, mac: str) -> None:
        self.p = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "runner.lab.tapclient", tap,
             mac, "--hostname", "vm1", "--timeout", "2"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert self.read() == "ready"

    def read(self) -> str:
        assert self.p.stdout is not None
        return self.p.stdout.readline().strip()

    def dhcp(self) -> str:
        assert self.p.stdin is not None
        self.p.stdin.write("dhcp\n")
        self.p.stdin.flush()
        return self.read()

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(5)


def test_tap_joins_the_bridge_gets_a_lease_and_goes_back_intact(
        lan: tuple[MiniNI, str]) -> None:
    ni, dev = lan
    sh("ip", "tuntap", "add", TAP, "mode", "tap", netns=dev)
    sh("ip", "link", "set", TAP, "address", TAP_MAC, "mtu", "1400", "up", netns=dev)
    before = link_facts(dev, TAP)
    vm = VM(dev, TAP, TAP_MAC)
    try:
        # in the device netns there is no DHCP server: the VM gets nothing
        assert vm.dhcp().startswith("error: ")
        borrowed = links.move_to_netns(TAP, ni.netns, NI_NAME, BRIDGE, from_netns=dev)
        assert borrowed == links.Borrowed(TAP, TAP_MAC, 1400, True, dev)
        inside = link_facts(ni.netns, NI_NAME)
        assert inside["master"] == BRIDGE and inside["up"] and inside["mac"] == TAP_MAC
        assert TAP not in links.names(dev)

        # the process holding the fd gets a lease from the NI's dnsmasq through it
        lease = json.loads(vm.dhcp())
        assert lease["address"].startswith("10.9.2.") and lease["server"] == ni.gateway
        assert [x[1:4] for x in ni.lease_lines()] == [[TAP_MAC, lease["address"][:-3], "vm1"]]

        assert links.give_back(borrowed, NI_NAME, ni.netns)
        assert link_facts(dev, TAP) == before
        assert NI_NAME not in links.names(ni.netns)
        assert vm.p.poll() is None  # still holding it
        assert vm.dhcp().startswith("error: ")  # out of the NI again
        assert not links.give_back(borrowed, NI_NAME, ni.netns)  # gone: nothing to do
    finally:
        vm.stop()
        sh("ip", "link", "del", TAP, netns=dev, check=False)


def test_a_down_tap_comes_back_down_with_its_mtu(lan: tuple[MiniNI, str]) -> None:
    ni, dev = lan
    sh("ip", "tuntap", "add", "tapvm1", "mode", "tap", netns=dev)
    before = link_facts(dev, "tapvm1")
    assert not before["up"]
    b = links.move_to_netns("tapvm1", ni.netns, "ap00000001", BRIDGE, from_netns=dev, mtu=1300)
    assert link_facts(ni.netns, "ap00000001")["mtu"] == 1300
    assert links.give_back(b, "ap00000001", ni.netns)
    assert link_facts(dev, "tapvm1") == before
    with pytest.raises(links.LinkError, match="does not exist"):
        links.move_to_netns("nosuch0", ni.netns, "ap00000002", BRIDGE, from_netns=dev)
