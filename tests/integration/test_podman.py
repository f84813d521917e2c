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
