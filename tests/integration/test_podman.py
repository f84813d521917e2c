"""podman 4.3 (CNI backend) confined to the lab: a busybox container on a bridge +
host-local network in a lab netns, reached over real TCP, removed without a trace."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.cni import plugin
from runner.lab.podman import LabPodman, lab_podman
from runner.lab.topology import sh, wait_for
from tests.integration.conftest import RUN_ID

pytestmark = pytest.mark.integration

PREFIX = f"nrt{RUN_ID}p"
NETWORK = f"{PREFIX}net"
SUBNET = "10.88.7"


@pytest.fixture
def podman() -> Iterator[LabPodman]:
    netns = f"{PREFIX}-pod"
    sh("ip", "netns", "add", netns)
    try:
        sh("ip", "link", "set", "lo", "up", netns=netns)
        with lab_podman(Path("/run") / PREFIX / "podman", netns) as pm:
            yield pm
    finally:
        sh("ip", "netns", "del", netns, check=False)
        sh("rm", "-rf", f"/run/{PREFIX}", check=False)


def test_container_on_a_cni_bridge_in_a_lab_netns(podman: LabPodman) -> None:
    etc_cni = sorted(os.listdir("/etc/cni/net.d")) if os.path.isdir("/etc/cni/net.d") else []
    podman.import_busybox("hello from podman\n")
    podman.add_network({
        "cniVersion": "1.0.0", "name": NETWORK,
        "plugins": [{"type": "bridge", "bridge": "nrpod0", "isGateway": True, "ipMasq": False,
                     "ipam": {"type": "host-local",
                              "ranges": [[{"subnet": f"{SUBNET}.0/24",
                                           "gateway": f"{SUBNET}.1"}]],
                              "routes": [{"dst": "0.0.0.0/0"}]}}]})
    assert NETWORK in podman.run("network", "ls", "--format", "{{.Name}}").stdout.split()

    name = f"{PREFIX}-web"
    podman.run("run", "-d", "--name", name, "--network", NETWORK, podman.image,
               "busybox", "httpd", "-f", "-p", "80", "-h", "/www")
    ip = podman.run("inspect", "--format",
                    f'{{{{(index .NetworkSettings.Networks "{NETWORK}").IPAddress}}}}',
                    name).stdout.strip()
    assert ip.startswith(f"{SUBNET}.")
    sandbox = podman.sandbox(name)
    assert os.path.exists(sandbox)
    # the plugins' bridge and the host end of the veth are in the lab netns
    assert "nrpod0" in sh("ip", "-br", "link", netns=podman.netns).stdout
    inside = podman.run("exec", name, "ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert f"{ip}/24" in inside
    # real traffic: HTTP from the lab netns to the container (once httpd listens)
    def fetch() -> str:
        # no -T: Debian 12's busybox 1.35 wget segfaults with it; the subprocess
        # timeout bounds the wait instead
        try:
            return sh("busybox", "wget", "-q", "-O", "-", f"http://{ip}/",
                      netns=podman.netns, check=False, timeout=5).stdout
        except subprocess.TimeoutExpired:
            return ""

    wait_for(lambda: fetch() != "", 10, f"httpd in the container at {ip}")
    assert fetch() == "hello from podman\n"
    ipam_dir = podman.base / "ipam" / NETWORK
    assert ip in os.listdir(ipam_dir)  # host-local's record is in the lab

    podman.run("rm", "-f", "-t", "0", name)
    assert not os.path.exists(sandbox)
    assert "veth" not in sh("ip", "-br", "link", netns=podman.netns).stdout
    assert ip not in os.listdir(ipam_dir)
    results = "/var/lib/cni/results"
    assert not [f for f in (os.listdir(results) if os.path.isdir(results) else [])
                if f.startswith(NETWORK)]
    assert (sorted(os.listdir("/etc/cni/net.d")) if os.path.isdir("/etc/cni/net.d")
            else []) == etc_cni


@pytest.fixture
def podman_with_plugin() -> Iterator[LabPodman]:
    netns = f"{PREFIX}-pp"
    base = Path("/run") / PREFIX
    sh("ip", "netns", "add", netns)
    try:
        sh("ip", "link", "set", "lo", "up", netns=netns)
        plugin.install(str(base / "cni-bin"))
        with lab_podman(base / "podman2", netns, (str(base / "cni-bin"), "/usr/lib/cni")) as pm:
            yield pm
    finally:
        sh("ip", "netns", "del", netns, check=False)
        sh("rm", "-rf", str(base), check=False)


def test_podman_runs_the_nirunner_plugin(podman_with_plugin: LabPodman) -> None:
    """podman's libcni finds `type: nirunner`, accepts its VERSION answer and shows its
    CNI error (here: no supervisor) instead of starting a container without network."""
    pm = podman_with_plugin
    pm.import_busybox()
    absent = str(pm.base / "no-supervisor.sock")
    pm.add_network({"cniVersion": "1.0.0", "name": "factory",
                    "plugins": [{"type": "nirunner", "ni": "factory", "socket": absent,
                                 "capabilities": {"portMappings": True, "aliases": True}}]})
    res = pm.run("run", "-d", "--name", f"{PREFIX}-c1", "-p", "8080:80", "--network",
                 "factory", pm.image, "busybox", "sleep", "60", check=False)
    assert res.returncode != 0
    assert "nirunner" in res.stderr and f"no API socket {absent}" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


@pytest.fixture
def podman_netavark() -> Iterator[tuple[LabPodman, str]]:
    """podman with the netavark backend in a lab netns, and a client netns on a veth to
    it (10.99.<x>.1 <-> .2) standing for the outside."""
    netns, client = f"{PREFIX}-pn", f"{PREFIX}-pc"
    sh("ip", "netns", "add", netns)
    sh("ip", "netns", "add", client)
    try:
        for ns in (netns, client):
            sh("ip", "link", "set", "lo", "up", netns=ns)
        sh("ip", "link", "add", "eth0", "netns", netns, "type", "veth", "peer", "name", "eth0",
           "netns", client)
        for ns, addr in ((netns, "10.99.7.1/24"), (client, "10.99.7.2/24")):
            sh("ip", "addr", "add", addr, "dev", "eth0", netns=ns)
            sh("ip", "link", "set", "eth0", "up", netns=ns)
        with lab_podman(Path("/run") / PREFIX / "podman-nv", netns, backend="netavark") as pm:
            yield pm, client
    finally:
        sh("ip", "netns", "del", netns, check=False)
        sh("ip", "netns", "del", client, check=False)
        sh("rm", "-rf", f"/run/{PREFIX}", check=False)


def _listing(path: str) -> list[str]:
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def test_netavark_network_in_a_lab_netns(podman_netavark: tuple[LabPodman, str]) -> None:
    """A netavark bridge network with a port map and aardvark-dns, its run dir in the lab
    (not /run/containers/networks), reached over real TCP and DNS; gone after teardown.
    (10.89/16: podman's default network takes 10.88/16, and podman refuses overlaps.)"""
    pm, client = podman_netavark
    host_run = _listing("/run/containers/networks")
    pm.import_busybox("hello from netavark\n")
    net = f"{PREFIX}nv"
    pm.create_network(net, "10.89.9.0/24")
    # podman refuses a second network with a subnet in use (the bench gives each its own)
    again = pm.run("network", "create", "--subnet", "10.89.9.0/24", f"{net}2", check=False)
    assert again.returncode != 0 and "10.89.9.0/24" in again.stderr, again.stderr
    name = f"{PREFIX}-nvweb"
    pm.run("run", "-d", "--name", name, "--network", net, "--ip", "10.89.9.2",
           "-p", "8080:80", pm.image, "httpd", "-f", "-p", "80", "-h", "/www")
    sandbox = pm.sandbox(name)
    assert os.path.exists(sandbox)
    assert "podman" in sh("ip", "-br", "link", netns=pm.netns).stdout  # its bridge, in the lab

    def fetch() -> str:  # through netavark's DNAT, from the client netns
        try:
            return sh("busybox", "wget", "-q", "-O", "-", "http://10.99.7.1:8080/",
                      netns=client, check=False, timeout=5).stdout
        except subprocess.TimeoutExpired:
            return ""

    wait_for(lambda: fetch() != "", 10, "httpd through the port map")
    assert fetch() == "hello from netavark\n"
    # aardvark-dns answers the container's name on the network's gateway address
    res = sh("busybox", "nslookup", name, "10.89.9.1", netns=pm.netns, check=False)
    assert "10.89.9.2" in res.stdout, res.stdout + res.stderr
    # netavark's run state (IPAM, aardvark-dns) is in the lab dir, none on the machine
    assert (pm.netavark_run / "ipam.db").exists()
    assert (pm.netavark_run / "aardvark-dns" / net).exists()
    assert _listing("/run/containers/networks") == host_run
    aardvark = int((pm.netavark_run / "aardvark-dns" / "aardvark.pid").read_text().split()[0])

    pm.run("rm", "-f", "-t", "0", name)
    assert not os.path.exists(sandbox)
    assert "veth" not in sh("ip", "-br", "link", netns=pm.netns).stdout
    pm.teardown()
    state = Path(f"/proc/{aardvark}/stat")
    assert not state.exists() or state.read_text().split(")")[-1].split()[0] == "Z"
    assert not pm.base.exists()
    assert _listing("/run/containers/networks") == host_run
