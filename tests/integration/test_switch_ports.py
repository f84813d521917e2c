"""Switch NI ports as planned and rendered (runner.plan.switch, runner.render.switch), put
into the kernel by hand the way the configurators will (no supervisor yet): apps on
eth1's segment get leases from its DHCP server, the NI learns them, the device reaches
them through its shim, and eth1 is left exactly as it was."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface

import pytest

from runner.drivers import kernel, nft, routes
from runner.drivers import netns as ns
from runner.lab.topology import SEGMENT_HOST_IP, UPLINKS, Lab, sh, wait_for
from runner.model.types import SupervisorConfig, Uplink
from runner.net import names
from runner.plan.facts import Facts, UplinkFacts
from runner.plan.switch import (
    SwitchApp,
    SwitchDevicePlan,
    SwitchPlan,
    SwitchSpec,
    app_addresses,
    plan_switch,
    plan_switch_device,
)
from runner.render import switch as render

pytestmark = pytest.mark.integration

R = uuid.uuid4().hex[:4]
NI = f"nrs{R}sw"
DEV_IP = UPLINKS["eth1"][0].split("/")[0]
CONFIG = SupervisorConfig(uplinks=(Uplink("eth0", "eth0"), Uplink("eth1", "eth1")))
MACS = {"a": "02:00:00:00:5e:0a", "b": "02:00:00:00:5e:0b"}


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Lab, str]]:
    lab = Lab(f"nrs{R}")
    try:
        lab.build()
        seg = lab.add_segment()
        lab.serve(seg, "tcp", 7000, "seg")
        lab.serve(lab.device, "tcp", 7002, "device")
        yield lab, seg
    finally:
        sh("ip", "netns", "del", names.netns(NI), check=False)
        lab.teardown()


def _facts(lab: Lab) -> Facts:
    eth1 = UplinkFacts("eth1", "eth1", (IPv4Interface(UPLINKS["eth1"][0]),),
                       IPv4Address(UPLINKS["eth1"][1].split("/")[0]), 1500, True)
    return Facts(uplinks={"eth1": eth1}, kernel=kernel.features())


def _uplink_state(lab: Lab) -> dict[str, object]:
    def j(*cmd: str) -> object:
        return json.loads(sh(*cmd, netns=lab.device).stdout)

    link = j("ip", "-j", "-d", "link", "show", "dev", "eth1")[0]  # type: ignore[index]
    return {
        "link": {k: link.get(k) for k in ("ifindex", "address", "mtu", "operstate", "master",
                                          "promiscuity")},
        "addresses": j("ip", "-j", "-4", "addr", "show", "dev", "eth1"),
        "routes": j("ip", "-j", "-4", "route", "show", "table", "all", "dev", "eth1"),
    }


def _build(lab: Lab, sw: SwitchPlan, dev: SwitchDevicePlan, apps: dict[str, str]) -> None:
    """What the configurators will do, in dependency order."""
    assert sw.segment is not None
    for shim in dev.shims:  # no address: the routes to its apps name their source
        sh("ip", "link", "add", shim.name, "link", shim.parent, "address", shim.mac,
           "mtu", str(shim.mtu), "type", "macvlan", "mode", "bridge", netns=lab.device)
        ns.set_sysctls(shim.sysctls, lab.device)
        sh("ip", "link", "set", shim.name, "up", netns=lab.device)
    sh("ip", "netns", "add", sw.netns)
    ns.set_sysctls(sw.sysctls, sw.netns)
    for port in sw.ports:
        assert port.port_if is not None
        app = apps[port.mac]
        sh("ip", "link", "add", port.port_if, "link", sw.segment.lower, "netns", sw.netns,
           "address", port.mac, "mtu", str(sw.mtu), "type", "macvlan", "mode", "bridge",
           netns=lab.device)
        sh("ip", "-batch", "-", netns=sw.netns, input="\n".join([
            f"link set {port.port_if} allmulticast on", f"link set {port.port_if} up",
            f"link add {port.app_if} mtu {sw.mtu} type veth peer name eth0 mtu {sw.mtu} "
            f"netns {app} address {port.mac}",
            f"link set {port.app_if} up"]) + "\n")
        sh("ip", "link", "set", "eth0", "up", netns=app)
        nft.apply(render.port_table(sw, port), sw.netns)


def test_apps_on_the_segment_through_planned_ports(lab: tuple[Lab, str]) -> None:
    the_lab, seg = lab
    facts = _facts(the_lab)
    before = _uplink_state(the_lab)
    apps: dict[str, str] = {}  # MAC -> the app's netns
    for k, mac in MACS.items():
        name = f"{the_lab.prefix}-{k}"
        sh("ip", "netns", "add", name)
        sh("ip", "link", "set", "lo", "up", netns=name)
        apps[mac] = name
    sw = plan_switch(SwitchSpec(NI, "eth1"), [SwitchApp(f"{NI}/{k}", m) for k, m in MACS.items()],
                     CONFIG, facts)
    dev = plan_switch_device([sw], facts, {})
    _build(the_lab, sw, dev, apps)

    leased = {mac: the_lab.dhcp(app, f"app-{mac[-2:]}") for mac, app in apps.items()}
    learned = render.parse_learned(sh("nft", "-j", "list", "sets", netns=sw.netns).stdout)
    bindings = [b for port in sw.ports for b in learned.get(port.app_if, [])]
    assert {(b.mac, str(b.ip)) for b in bindings if b.source == "dhcp"} == set(leased.items())
    assert sorted(str(ip) for ip in app_addresses(sw, bindings, facts)) == sorted(leased.values())

    # the device reaches the apps (and they its address) once their leases are routed
    app_a, ip_a = apps[MACS["a"]], leased[MACS["a"]]
    assert the_lab.connect(app_a, "tcp", DEV_IP, 7002, timeout=1.5) is None  # not yet
    routed = plan_switch_device([sw], facts, {NI: bindings})
    for shim in routed.shims:  # the shim never asks the segment (no ARP requests)
        for ip, mac in shim.neighbours:
            sh("ip", "neigh", "replace", str(ip), "lladdr", mac, "dev", shim.name, "nud",
               "permanent", netns=the_lab.device)
    routes.sync(routed.routes, routed.route_tables, the_lab.device)
    assert the_lab.connect(app_a, "tcp", SEGMENT_HOST_IP, 7000) == f"seg sees {ip_a}"
    assert the_lab.connect(app_a, "tcp", DEV_IP, 7002) == f"device sees {ip_a}"
    the_lab.serve(app_a, "tcp", 7100, "a")
    assert the_lab.connect(the_lab.device, "tcp", ip_a, 7100) == f"a sees {DEV_IP}"
    assert the_lab.connect(apps[MACS["b"]], "tcp", ip_a, 7100) == \
        f"a sees {leased[MACS['b']]}"

    # the segment learns the device's address at eth1's MAC only (no ARP flux via the shim)
    sh("ip", "neigh", "flush", "all", netns=seg)
    out = sh("busybox", "arping", "-b", "-c", "2", "-w", "3", "-I", "eth0", DEV_IP,
             netns=seg, check=False, timeout=10).stdout
    assert {line.split("[")[1].split("]")[0].lower() for line in out.splitlines()
            if "[" in line} == {before["link"]["address"]}  # type: ignore[index]

    # no loop between the two apps' macvlans: a broadcast is seen a few times, not forever
    port_a = sw.ports[0].port_if
    assert port_a is not None

    def rx() -> int:
        info = json.loads(sh("ip", "-s", "-j", "link", "show", port_a, netns=sw.netns).stdout)
        return int(info[0]["stats64"]["rx"]["packets"])

    n0 = rx()
    sh("busybox", "arping", "-b", "-c", "1", "-w", "1", "-I", "eth0", "203.0.113.250",
       netns=apps[MACS["b"]], check=False, timeout=10)
    assert rx() - n0 < 50  # arping waited 1 s: a loop would have counted thousands

    # an app cannot send with another MAC
    sh("ip", "link", "set", "eth0", "address", "02:00:00:00:5e:ff", netns=app_a)
    sh("ip", "neigh", "flush", "all", netns=seg)
    assert the_lab.connect(app_a, "tcp", SEGMENT_HOST_IP, 7000, timeout=1.5) is None

    # delete: the NI netns (its macvlans go with it), the routes, the shim
    sh("ip", "netns", "del", sw.netns)
    routes.sync([], routed.route_tables, the_lab.device)
    for shim in dev.shims:
        sh("ip", "link", "del", shim.name, netns=the_lab.device)
    wait_for(lambda: _uplink_state(the_lab) == before, 5, "eth1 as it was")
    root = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert not any(p.port_if and p.port_if in root for p in sw.ports)  # not handed back
