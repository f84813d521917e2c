"""runner.drivers.rtnl (a plain rtnetlink socket, pyroute2's messages) on a real kernel:
the links it makes are what `ip` shows, and the kernel's errors come back as IPRoute's
would, named by runner.drivers.links. Two throwaway netns of this run's name; the test
process's own netns is only read.
"""

from __future__ import annotations

import errno
import json
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Interface
from typing import Any

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from runner.drivers import links
from runner.drivers.rtnl import Rtnl
from runner.lab.topology import sh
from tests.integration.conftest import RUN_ID

pytestmark = pytest.mark.integration

NI, APP = f"nrt{RUN_ID}rtn1", f"nrt{RUN_ID}rtn2"


@pytest.fixture
def two() -> Iterator[tuple[str, str]]:
    for n in (NI, APP):
        sh("ip", "netns", "add", n)
    sh("ip", "-n", NI, "link", "add", "br0", "type", "bridge")
    try:
        yield NI, APP
    finally:
        for n in (NI, APP):
            sh("ip", "netns", "del", n, check=False)


def link(netns: str, name: str) -> dict[str, Any]:
    out = subprocess.run(["ip", "-n", netns, "-j", "-d", "addr", "show", "dev", name],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]  # type: ignore[no-any-return]


def test_a_plug_is_made_up_on_its_bridge_with_its_peer_in_the_other_netns(
        two: tuple[str, str]) -> None:
    ni, app = two
    links.with_rtnl(ni, lambda nl: links.add_veth(
        nl, "nr-p1", "eth0", f"/run/netns/{app}", 1400, peer_mac="02:00:00:00:0a:07", up=True,
        master="br0"))
    links.with_rtnl(app, lambda nl: links.set_up(nl, "lo", "eth0"))
    here, there = link(ni, "nr-p1"), link(app, "eth0")
    assert here["master"] == "br0" and "UP" in here["flags"] and here["mtu"] == 1400
    assert here["linkinfo"]["info_kind"] == "veth"
    assert there["address"] == "02:00:00:00:0a:07" and there["mtu"] == 1400
    assert "UP" in there["flags"] and "UP" in link(app, "lo")["flags"]
    assert here["link_index"] == there["ifindex"] and there["link_index"] == here["ifindex"]
    # the pair is what pyroute2's reads (the read-back path) see too
    got = links.in_netns(ni, lambda ip: links.get(ip, "nr-p1"))
    assert got is not None and got.up and got.peer == there["ifindex"]


def test_an_address_a_lookup_and_a_veth_without_master_or_up(two: tuple[str, str]) -> None:
    ni, app = two

    def make(nl: Rtnl) -> tuple[int | None, int | None]:
        links.add_veth(nl, "tr0", "tr1", f"/run/netns/{app}", 1500)
        links.add_address(nl, "tr0", IPv4Interface("10.250.0.1/30"))
        return nl.link_index("tr0"), nl.link_index("nothere")

    idx, missing = links.with_rtnl(ni, make)
    got = link(ni, "tr0")
    assert idx == got["ifindex"] and missing is None
    assert "UP" not in got["flags"] and "master" not in got
    assert [(a["local"], a["prefixlen"]) for a in got["addr_info"]] == [("10.250.0.1", 30)]
    assert link(app, "tr1")["mtu"] == 1500


def test_kernel_errors_are_named_with_the_object_and_netns(two: tuple[str, str]) -> None:
    ni, app = two
    made = lambda nl: links.add_veth(nl, "dup0", "dup1", f"/run/netns/{app}", 1500)  # noqa: E731
    links.with_rtnl(ni, made)
    with pytest.raises(links.LinkExists, match=f"create veth dup0 .* in {ni}: File exists"):
        links.with_rtnl(ni, made)
    with pytest.raises(links.LinkError, match=f"set nope up in {app}: No such device"):
        links.with_rtnl(app, lambda nl: links.set_up(nl, "nope"))
    with pytest.raises(links.LinkError, match=f"plug p9 into br9 in {ni}: no such bridge"):
        links.with_rtnl(ni, lambda nl: links.add_veth(nl, "p9", "q9", f"/run/netns/{app}",
                                                     1500, master="br9"))
    with Rtnl() as nl, pytest.raises(NetlinkError) as e:  # raw: the errno, as IPRoute's
        nl.set_up("nr-nolink")
    assert e.value.code == errno.ENODEV
