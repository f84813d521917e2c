"""Workloads joining NIs through the real supervisor in a lab: the CNI plugin driven
exactly as a runtime drives it (CNI_* environment and stdin in, stdout and exit code
out) for every verb, good and bad input, a stopped supervisor and an NI that is not
ready; 20 ADDs at once; a plugin killed -9 in the middle of ADD, then GC; a restart
that re-plugs; a VM's tap taken with `attach --interface` and given back.

Lab: device (eth0 198.51.100.2), wan, inet (192.0.2.10: TCP 7000); NIs F (10.1.0.0/24,
domain f.lan) and OTHER (10.2.0.0/24, an app serving TCP 9000), both on eth0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import pytest

from runner.cni import attachments as at
from runner.cni import plugin
from runner.cni.api import AttachmentKey
from runner.drivers import links
from runner.image.build import build_image
from runner.lab.topology import INET_IP, Lab, sh, wait_for
from runner.supervisor.store import Store
from tests.integration.conftest import RUN_ID
from tests.integration.test_tap import VM, link_facts

pytestmark = pytest.mark.integration

R = RUN_ID
F, OTHER, T = f"f-{R}", f"o-{R}", f"t-{R}"
NET = f"net-{R}"  # the CNI network name


def manifest(name: str, subnet: str) -> str:
    return (f"apiVersion: nirunner/v1\nkind: NetworkInstance\nmetadata: {{name: {name}}}\n"
            f"spec:\n  type: local\n  uplink: eth0\n  subnet: {subnet}\n"
            f"  dns: {{upstream: [{INET_IP}], domain: {name}.lan}}\n")


class Runtime:
    """What a container runtime does with a CNI plugin: exec it with env and stdin."""

    def __init__(self, lab: Lab, path: str) -> None:
        self.lab, self.path = lab, path

    def conf(self, ni: str = F, network: str = NET, version: str = "1.1.0",
             **extra: Any) -> dict[str, Any]:
        return {"cniVersion": version, "name": network, "type": "nirunner", "ni": ni,
                "socket": self.lab.socket, **extra}

    def env(self, command: str, cid: str = "", netns: str = "", ifname: str = "eth0",
            args: str = "") -> dict[str, str]:
        e = {"CNI_COMMAND": command, "CNI_PATH": os.path.dirname(self.path),
             "PATH": os.environ.get("PATH", "")}
        if cid:
            e["CNI_CONTAINERID"] = cid
        if netns:
            e["CNI_NETNS"] = f"/run/netns/{netns}"
        if command in ("ADD", "DEL", "CHECK"):
            e["CNI_IFNAME"] = ifname
        if args:
            e["CNI_ARGS"] = args
        return e

    def run(self, env: dict[str, str], conf: dict[str, Any] | bytes
            ) -> tuple[dict[str, Any] | None, int]:
        raw = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
        p = subprocess.run([self.path], input=raw, env=env, capture_output=True, timeout=90)
        assert b"Traceback" not in p.stderr, p.stderr
        out = p.stdout.decode()
        return (json.loads(out) if out.strip() else None), p.returncode

    def start(self, env: dict[str, str], conf: dict[str, Any]) -> subprocess.Popen[bytes]:
        p = subprocess.Popen([self.path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env)
        assert p.stdin is not None
        p.stdin.write(json.dumps(conf).encode())
        p.stdin.close()
        return p

    def add(self, cid: str, netns: str, conf: dict[str, Any] | None = None,
            args: str = "") -> dict[str, Any]:
        doc, rc = self.run(self.env("ADD", cid, netns, args=args), conf or self.conf())
        assert rc == 0 and doc is not None, doc
        return doc


def code(result: tuple[dict[str, Any] | None, int]) -> int:
    doc, rc = result
    assert rc == 1 and doc is not None and {"cniVersion", "code", "msg"} <= set(doc), result
    return int(doc["code"])


class Site:
    def __init__(self, lab: Lab, rt: Runtime) -> None:
        self.lab, self.rt = lab, rt
        self.apps: dict[str, str] = {}

    def netns(self, name: str) -> str:
        ns = f"{self.lab.prefix}-{name}"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "set", "lo", "up", netns=ns)
        return ns

    def status(self, ni: str = F) -> dict[str, Any]:
        (st,) = json.loads(self.lab.cli("status", ni, "--json").stdout)
        return st

    def leases(self, ni: str = F) -> list[list[str]]:
        path = self.lab.state_dir / "ni" / ni / "state" / "dnsmasq.leases"
        return [line.split() for line in path.read_text().splitlines()] if path.exists() else []

    def nft(self, ni: str = F) -> str:
        return (sh("nft", "list", "table", "inet", "nirunner", netns=self.lab.device).stdout
                + sh("nft", "list", "table", "inet", "ni", netns=f"nr-{ni}").stdout)

    def ni_links(self, ni: str = F) -> list[str]:
        return links.names(f"nr-{ni}")

    def addresses(self, netns: str, ifname: str = "eth0") -> str:
        return sh("ip", "-4", "-o", "addr", "show", ifname, netns=netns, check=False).stdout

    def desired(self) -> list[dict[str, Any]]:
        # what the supervisor stored, read as it reads it (attachments/<ni>.json)
        return [a.to_json() for a in Store(self.lab.state_dir).load().attachments]

    def dns(self, netns: str, name: str, server: str = "10.1.0.1") -> list[str]:
        return sh(sys.executable, "-m", "runner.lab.dnsq", server, name, netns=netns,
                  check=False).stdout.split()


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    lab = Lab(f"nrw{R}", image_archive=str(build_image().archive))
    try:
        lab.build()
        lab.start_dns({"www.example.test": INET_IP})
        lab.serve(lab.inet, "tcp", 7000, "inet")
        lab.start_containerd()
        lab.write_config(lab.image)
        lab.start_supervisor()
        (lab.base / "site.yaml").write_text(manifest(F, "10.1.0.0/24") + "---\n"
                                            + manifest(OTHER, "10.2.0.0/24"))
        lab.cli("apply", "-f", str(lab.base / "site.yaml"))
        path = plugin.install(str(lab.base / "cni-bin"))
        s = Site(lab, Runtime(lab, path))
        s.apps["oapp"] = lab.app("oapp", OTHER)
        s.apps["oapp-ip"] = lab.dhcp(s.apps["oapp"], "oapp")
        lab.serve(s.apps["oapp"], "tcp", 9000, "oapp")
        wait_for(lambda: s.status(F)["state"] == "running", 20, f"NI {F} running")
        yield s
    finally:
        lab.teardown()


def test_add_check_del_as_a_runtime(site: Site) -> None:
    lab, rt = site.lab, site.rt
    c1, c2 = site.netns("c1"), site.netns("c2")
    ports = {"portMappings": [{"hostPort": 9090, "containerPort": 9000, "protocol": "tcp"}]}
    t0 = time.monotonic()
    doc = rt.add("cid1", c1, rt.conf(version="1.0.0", runtimeConfig=ports),
                 args="IgnoreUnknown=1;K8S_POD_NAME=web1")
    took = time.monotonic() - t0
    (iface,) = doc["interfaces"]
    (ip,) = doc["ips"]
    assert (iface["name"], iface["sandbox"]) == ("eth0", f"/run/netns/{c1}")
    assert ip["address"].startswith("10.1.0.") and ip["gateway"] == "10.1.0.1"
    assert doc["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}]
    assert doc["dns"] == {"nameservers": ["10.1.0.1"], "domain": f"{F}.lan",
                          "search": [f"{F}.lan"]}
    addr = ip["address"]
    # in the kernel: the address, the route and the MAC in the container's netns
    assert addr in site.addresses(c1) and iface["mac"] in sh(
        "ip", "link", "show", "eth0", netns=c1).stdout
    assert "default via 10.1.0.1 dev eth0" in sh("ip", "route", netns=c1).stdout
    # a real lease, pinned (expiry 0) with the pod's name
    assert ["0", iface["mac"], addr.split("/")[0], "web1"] in [x[:4] for x in site.leases()]
    (att,) = [a for a in site.status()["attached"] if a["kind"] == "cni"]
    assert (att["containerId"], att["network"], att["address"]) == ("cid1", NET, addr)
    assert att["portMappings"] == ["tcp 9090 -> 9000"]
    inspect = lab.cli("inspect", F).stdout
    assert "container cid1" in inspect
    assert f"applied  address {addr} via 10.1.0.1 on /run/netns/{c1} eth0" in inspect

    # traffic: out through the NAT, the port map in from the wan, DNS of another app,
    # and no direct way into the other NI
    assert lab.connect(c1, "tcp", INET_IP, 7000) == "inet sees 198.51.100.2"
    lab.serve(c1, "tcp", 9000, "c1")
    assert lab.connect(lab.wan, "tcp", "198.51.100.2", 9090) == "c1 sees 198.51.100.1"
    rt.add("cid2", c2)
    assert site.dns(c2, "web1") == [addr.split("/")[0]]
    assert site.dns(c2, f"web1.{F}.lan") == [addr.split("/")[0]]
    assert lab.connect(c1, "tcp", site.apps["oapp-ip"], 9000, timeout=1) is None
    transit_o = site.status(OTHER)["transit"]["ni"].split("/")[0]
    assert lab.connect(c1, "tcp", transit_o, 9000, timeout=1) is None

    # CHECK: as intended; then the address removed behind our back: reported, not fixed
    check_env = rt.env("CHECK", "cid1", c1)
    assert rt.run(check_env, rt.conf(version="1.0.0", prevResult=doc)) == (None, 0)
    sh("ip", "addr", "flush", "dev", "eth0", netns=c1)
    for _ in range(2):
        res = rt.run(check_env, rt.conf(version="1.0.0", prevResult=doc))
        assert code(res) == 100 and res[0] is not None
        assert f"address 0.0.0.0/32 -> {addr}" in res[0]["details"]
    assert addr not in site.addresses(c1)  # CHECK changed nothing

    # DEL: everything goes; again: nothing to do, no error
    del_env = rt.env("DEL", "cid1", c1)
    assert rt.run(del_env, rt.conf(version="1.0.0")) == (None, 0)
    host_if = at.host_ifname_for(F, AttachmentKey(NET, "cid1", "eth0"))
    assert host_if not in site.ni_links() and "eth0" not in links.names(f"/run/netns/{c1}")
    wait_for(lambda: iface["mac"] not in [x[1] for x in site.leases()], 5, "the lease released")
    assert "dport 9090" not in site.nft()
    assert [a["container_id"] for a in site.desired() if a["kind"] == "cni"] == ["cid2"]
    assert rt.run(del_env, rt.conf(version="1.0.0")) == (None, 0)
    print(f"ADD took {took * 1000:.0f} ms (plugin start included)")


def test_del_with_the_netns_gone(site: Site) -> None:
    rt = site.rt
    c3 = site.netns("c3")
    doc = rt.add("cid3", c3, rt.conf(version="0.4.0"))  # an older runtime's result
    assert doc["cniVersion"] == "0.4.0" and doc["ips"][0]["version"] == "4"
    assert "mtu" not in doc["interfaces"][0]
    mac = doc["interfaces"][0]["mac"]
    sh("ip", "netns", "del", c3)
    assert rt.run(rt.env("DEL", "cid3", c3), rt.conf()) == (None, 0)
    wait_for(lambda: mac not in [x[1] for x in site.leases()], 5, "the lease released")
    assert not [a for a in site.desired() if a["container_id"] == "cid3"]
    assert at.host_ifname_for(F, AttachmentKey(NET, "cid3", "eth0")) not in site.ni_links()


def test_bad_input_gets_the_specs_codes(site: Site) -> None:
    rt = site.rt
    c4 = site.netns("c4")
    for verb in ("ADD", "DEL", "CHECK", "GC", "STATUS"):
        assert code(rt.run(rt.env(verb, "cid4", c4), b"{not json")) == 6, verb
    assert code(rt.run(rt.env("ADD", "cid4", c4), b"[1, 2]")) == 6
    # missing environment variables
    assert code(rt.run({"CNI_PATH": "/x"}, rt.conf())) == 4
    assert code(rt.run(rt.env("ADD", "cid4"), rt.conf())) == 4  # no CNI_NETNS
    assert code(rt.run(rt.env("DEL", netns=c4), rt.conf())) == 4  # no CNI_CONTAINERID
    assert code(rt.run(rt.env("CHECK", "cid4"), rt.conf())) == 4
    # an invalid config, an unknown NI
    assert code(rt.run(rt.env("ADD", "cid4", c4), rt.conf(ipam={"type": "host-local"}))) == 2
    assert code(rt.run(rt.env("ADD", "cid4", c4), rt.conf(version="0.3.1"))) == 1
    assert code(rt.run(rt.env("ADD", "cid4", c4), rt.conf(ni="nosuch"))) == 7
    assert code(rt.run(rt.env("CHECK", "cid4", c4), rt.conf(ni="nosuch"))) == 7
    assert code(rt.run(rt.env("STATUS"), rt.conf(ni="nosuch"))) == 50
    assert rt.run(rt.env("DEL", "cid4", c4), rt.conf(ni="nosuch")) == (None, 0)
    gc = rt.conf(ni="nosuch", **{"cni.dev/valid-attachments": []})
    assert rt.run(rt.env("GC"), gc) == (None, 0)
    assert code(rt.run(rt.env("GC"), rt.conf())) == 7  # GC without the valid list
    assert code(rt.run(rt.env("CHECK", "cid4", c4), rt.conf())) == 100  # never added
    # a taken port and an interface that exists: their own codes, nothing left behind
    ports = {"portMappings": [{"hostPort": 7777, "containerPort": 80}]}
    rt.add("cid5", site.netns("c5"), rt.conf(runtimeConfig=ports))
    assert code(rt.run(rt.env("ADD", "cid4", c4), rt.conf(runtimeConfig=ports))) == 101
    sh("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "x0", netns=c4)
    assert code(rt.run(rt.env("ADD", "cid4", c4), rt.conf())) == 102
    assert not [a for a in site.desired() if a["container_id"] == "cid4"]
    assert rt.run(rt.env("VERSION"), rt.conf())[0] == {
        "cniVersion": "1.1.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]}
    assert rt.run(rt.env("STATUS"), rt.conf()) == (None, 0)


def test_twenty_adds_at_once_end_consistent(site: Site) -> None:
    rt, net = site.rt, f"burst-{R}"
    nss = [site.netns(f"b{i}") for i in range(20)]
    t0 = time.monotonic()
    with futures.ThreadPoolExecutor(max_workers=20) as pool:
        docs = list(pool.map(lambda i: rt.add(f"burst{i}", nss[i], rt.conf(network=net)),
                             range(20)))
    took = time.monotonic() - t0
    ips = {d["ips"][0]["address"].split("/")[0] for d in docs}
    macs = {d["interfaces"][0]["mac"] for d in docs}
    assert len(ips) == 20 and len(macs) == 20
    pinned = {x[2] for x in site.leases() if x[0] == "0" and x[1] in macs}
    assert pinned == ips  # 20 leases, pinned
    ports = [at.host_ifname_for(F, AttachmentKey(net, f"burst{i}", "eth0")) for i in range(20)]
    br = sh("ip", "-o", "link", "show", "master", "br0", netns=f"nr-{F}").stdout
    assert all(p in br for p in ports)  # 20 plugs on the bridge
    for d, ns in zip(docs, nss, strict=True):
        assert d["ips"][0]["address"] in site.addresses(ns)
    assert len([a for a in site.status()["attached"] if a.get("network") == net]) == 20
    # the runtime forgets them all: GC removes every one, and only those
    gc = rt.conf(network=net, **{"cni.dev/valid-attachments": []})
    assert rt.run(rt.env("GC"), gc) == (None, 0)
    assert not [p for p in ports if p in site.ni_links()]
    wait_for(lambda: not [x for x in site.leases() if x[1] in macs], 5, "20 leases released")
    assert not [a for a in site.desired() if a["network"] == net]
    print(f"20 concurrent ADDs took {took:.2f}s")


def test_plugin_killed_in_the_middle_of_add_then_gc(site: Site) -> None:
    rt, net = site.rt, f"kill-{R}"
    c6 = site.netns("c6")
    key = AttachmentKey(net, "cid6", "eth0")
    host_if = at.host_ifname_for(F, key)
    ports = {"portMappings": [{"hostPort": 9191, "containerPort": 80}]}
    p = rt.start(rt.env("ADD", "cid6", c6), rt.conf(network=net, runtimeConfig=ports))
    try:  # the plug exists: the supervisor is in the middle of the ADD
        wait_for(lambda: host_if in site.ni_links(), 20, "the plug of the ADD")
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    assert p.returncode == -signal.SIGKILL
    gc = rt.conf(network=net, **{"cni.dev/valid-attachments": []})
    assert rt.run(rt.env("GC"), gc) == (None, 0)
    mac = at.mac_for(F, key)
    assert host_if not in site.ni_links() and "eth0" not in links.names(f"/run/netns/{c6}")
    wait_for(lambda: mac not in [x[1] for x in site.leases()], 5, "no lease left")
    assert "dport 9191" not in site.nft()
    assert mac not in (site.lab.state_dir / "ni" / F / "config" / "dhcp-hosts").read_text()
    assert not [a for a in site.desired() if a["network"] == net]
    assert not [a for a in site.status()["attached"] if a.get("network") == net]


def test_not_ready_and_stopped_supervisor_and_a_restart_that_replugs(site: Site) -> None:
    lab, rt = site.lab, site.rt
    c7 = site.netns("c7")
    doc = rt.add("cid7", c7, rt.conf(runtimeConfig={"portMappings": [
        {"hostPort": 9292, "containerPort": 9000}]}))
    addr, mac = doc["ips"][0]["address"], doc["interfaces"][0]["mac"]
    # containerd away: the NI cannot take attachments (its config cannot be reloaded)
    c8 = site.netns("c8")
    lab.containerd.stop_daemon_only()
    try:
        assert code(rt.run(rt.env("STATUS"), rt.conf())) == 50
        assert code(rt.run(rt.env("ADD", "cid8", c8), rt.conf())) == 11
    finally:
        lab.containerd.start()
    wait_for(lambda: rt.run(rt.env("STATUS"), rt.conf()) == (None, 0), 10, "NI ready again")
    # the supervisor stopped: every verb that needs it says "try again later"
    lab.stop_supervisor()
    host_if = at.host_ifname_for(F, AttachmentKey(NET, "cid7", "eth0"))
    try:
        assert code(rt.run(rt.env("ADD", "cid8", c8), rt.conf())) == 11
        assert code(rt.run(rt.env("DEL", "cid7", c7), rt.conf())) == 11
        assert code(rt.run(rt.env("CHECK", "cid7", c7), rt.conf(prevResult=doc))) == 11
        gc = rt.conf(**{"cni.dev/valid-attachments": []})
        assert code(rt.run(rt.env("GC"), gc)) == 11
        assert code(rt.run(rt.env("STATUS"), rt.conf())) == 50
        assert rt.run(rt.env("VERSION"), rt.conf())[1] == 0
        sh("ip", "link", "del", host_if, netns=f"nr-{F}")  # the plug lost meanwhile
        assert addr not in site.addresses(c7)
    finally:
        lab.start_supervisor()
    # re-plugged with the same address, its lease pinned, its port map in force
    wait_for(lambda: addr in site.addresses(c7), 10, "the container re-plugged")
    assert ["0", mac, addr.split("/")[0]] in [x[:3] for x in site.leases()]
    lab.serve(c7, "tcp", 9000, "c7")
    assert lab.connect(lab.wan, "tcp", "198.51.100.2", 9292) == "c7 sees 198.51.100.1"
    assert rt.run(rt.env("CHECK", "cid7", c7), rt.conf(prevResult=doc)) == (None, 0)
    assert any(a.get("containerId") == "cid7" for a in site.status()["attached"])
    assert rt.run(rt.env("DEL", "cid7", c7), rt.conf()) == (None, 0)


def test_a_tap_attached_with_interface_and_given_back(site: Site) -> None:
    lab = site.lab
    dev, tap, tap_mac = lab.device, "tapvm0", "02:00:00:00:0a:01"
    sh("ip", "tuntap", "add", tap, "mode", "tap", netns=dev)
    sh("ip", "link", "set", tap, "address", tap_mac, "mtu", "1400", "up", netns=dev)
    before = link_facts(dev, tap)
    vm = VM(dev, tap, tap_mac)
    try:
        assert vm.dhcp().startswith("error: ")  # no DHCP server in the device netns
        out = lab.cli("attach", F, "--interface", tap).stdout
        assert f"attached {tap} (mac {tap_mac}) to {F}" in out
        assert tap not in links.names(f"/run/netns/{dev}")
        lease = json.loads(vm.dhcp())  # the process holding the tap gets a lease through it
        assert lease["address"].startswith("10.1.0.") and lease["server"] == "10.1.0.1"
        assert [tap_mac, lease["address"][:-3], "vm1"] in [x[1:4] for x in site.leases()]
        (att,) = [a for a in site.status()["attached"] if a["kind"] == "tap"]
        assert (att["ifname"], att["mac"]) == (tap, tap_mac)
        assert "tap (device interface)" in lab.cli("status", F).stdout
        res = lab.cli("attach", OTHER, "--interface", tap, check=False)
        assert res.returncode == 1 and f"attached to NI {F} already" in res.stderr
        # a restart adopts it where it is
        lab.stop_supervisor()
        lab.start_supervisor()
        assert att["hostIfname"] in site.ni_links()
        assert json.loads(vm.dhcp())["address"] == lease["address"]

        assert "back in the device netns" in lab.cli("detach", F, "--interface", tap).stdout
        assert link_facts(dev, tap) == before  # name, MAC, MTU, up: intact
        assert att["hostIfname"] not in site.ni_links()
        assert vm.p.poll() is None and vm.dhcp().startswith("error: ")  # out of the NI
        res = lab.cli("detach", F, "--interface", tap, check=False)
        assert res.returncode == 1 and "is not attached" in res.stderr
        res = lab.cli("attach", F, "--interface", "eth0", check=False)
        assert res.returncode == 1 and "not a tap" in res.stderr

        # an NI deleted with a tap in it gives the tap back first
        (lab.base / "t.yaml").write_text(manifest(T, "10.3.0.0/24"))
        lab.cli("apply", "-f", str(lab.base / "t.yaml"))
        lab.cli("attach", T, "--interface", tap)
        lab.cli("delete", T)
        assert link_facts(dev, tap) == before and vm.p.poll() is None
    finally:
        vm.stop()
        sh("ip", "link", "del", tap, netns=dev, check=False)
