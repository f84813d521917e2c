"""Real podman (Debian 12's 4.3, CNI backend) with a conflist of type nirunner, against
the real supervisor in a lab: containers get their address from the NI's DHCP server,
reach the lab's inet host through the NI's NAT, resolve each other by name, cannot
reach another NI; `-p 8080:80` answers on the uplink address from the wan; `podman rm
-f` removes the attachment and the port map. podman's state, storage, CNI configs and
networks stay inside the lab (runner/lab/podman.py)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from runner.cni import plugin
from runner.image.build import build_image
from runner.lab.podman import LabPodman
from runner.lab.topology import INET_IP, Lab, sh, wait_for
from tests.integration.conftest import RUN_ID

pytestmark = pytest.mark.integration

R = RUN_ID
FACTORY, OTHER = f"factory-{R}", f"other-{R}"
NET = f"factory{R}"  # the podman (CNI) network


def manifest(name: str, subnet: str) -> str:
    return (f"apiVersion: nirunner/v1\nkind: NetworkInstance\nmetadata: {{name: {name}}}\n"
            f"spec:\n  type: local\n  uplink: eth0\n  subnet: {subnet}\n"
            f"  dns: {{upstream: [{INET_IP}], domain: factory.lan}}\n")


class Site:
    def __init__(self, lab: Lab, pm: LabPodman) -> None:
        self.lab, self.pm = lab, pm
        self.other_app = self.other_ip = ""

    def status(self) -> dict[str, Any]:
        (st,) = json.loads(self.lab.cli("status", FACTORY, "--json").stdout)
        return st

    def leases(self) -> list[list[str]]:
        path = self.lab.state_dir / "ni" / FACTORY / "state" / "dnsmasq.leases"
        return [line.split() for line in path.read_text().splitlines()]

    def nft(self) -> str:
        return (sh("nft", "list", "table", "inet", "nirunner", netns=self.lab.device).stdout
                + sh("nft", "list", "table", "inet", "ni", netns=f"nr-{FACTORY}").stdout)

    def inspect(self, name: str, fmt: str) -> str:
        return self.pm.run("inspect", "--format", fmt, name).stdout.strip()

    def ip(self, name: str) -> str:
        return self.inspect(name, f'{{{{(index .NetworkSettings.Networks "{NET}").IPAddress}}}}')

    def wget(self, netns: str, url: str) -> str:
        # no -T: Debian 12's busybox 1.35 wget segfaults with it; the timeout bounds it
        try:
            return sh("busybox", "wget", "-q", "-O", "-", url, netns=netns, check=False,
                      timeout=5).stdout
        except subprocess.TimeoutExpired:
            return ""


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    lab = Lab(f"nrp{R}", image_archive=str(build_image().archive))
    pm = LabPodman(lab.base / "podman", f"{lab.prefix}-pod",
                   (str(lab.base / "cni-bin"), "/usr/lib/cni"))
    try:
        lab.build()
        sh("ip", "netns", "add", pm.netns)
        sh("ip", "link", "set", "lo", "up", netns=pm.netns)
        lab.start_dns({"www.example.test": INET_IP})
        lab.serve(lab.inet, "tcp", 7000, "inet")
        www = lab.base / "www"
        www.mkdir(parents=True)
        (www / "index.html").write_text("hello from the inet host\n")
        lab.spawn(lab.inet, "busybox", "httpd", "-f", "-p", "8000", "-h", str(www))
        lab.start_containerd()
        lab.write_config(lab.image)
        lab.start_supervisor()
        (lab.base / "site.yaml").write_text(manifest(FACTORY, "10.1.0.0/24") + "---\n"
                                            + manifest(OTHER, "10.2.0.0/24"))
        lab.cli("apply", "-f", str(lab.base / "site.yaml"))
        plugin.install(str(lab.base / "cni-bin"))
        pm.setup()
        pm.import_busybox("hello from podman\n")
        pm.add_network({"cniVersion": "1.0.0", "name": NET, "plugins": [
            {"type": "nirunner", "ni": FACTORY, "socket": lab.socket,
             "capabilities": {"portMappings": True, "aliases": True}}]})
        s = Site(lab, pm)
        s.other_app = lab.app("oapp", OTHER)
        s.other_ip = lab.dhcp(s.other_app, "oapp")
        lab.serve(s.other_app, "tcp", 9000, "oapp")
        wait_for(lambda: s.status()["state"] == "running", 20, f"NI {FACTORY} running")
        yield s
    finally:
        pm.teardown()
        lab.teardown()


def test_podman_containers_join_the_ni(site: Site) -> None:
    lab, pm = site.lab, site.pm
    etc_cni = sorted(os.listdir("/etc/cni/net.d")) if os.path.isdir("/etc/cni/net.d") else []
    pm.run("run", "-d", "--name", "web", "--network", NET, "-p", "8080:80", pm.image,
           "busybox", "httpd", "-f", "-p", "80", "-h", "/www")
    pm.run("run", "-d", "--name", "cli", "--network", NET, pm.image, "busybox", "sleep", "600")
    web_ip, cli_ip = site.ip("web"), site.ip("cli")
    web_id = site.inspect("web", "{{.Id}}")
    # addresses from the NI's dnsmasq, pinned, under the containers' names
    leases = {x[3]: x for x in site.leases()}
    assert leases["web"][0] == "0" and leases["web"][2] == web_ip
    assert leases["cli"][0] == "0" and leases["cli"][2] == cli_ip
    assert web_ip.startswith("10.1.0.") and cli_ip.startswith("10.1.0.")
    atts = {a["containerId"]: a for a in site.status()["attached"] if a["kind"] == "cni"}
    assert atts[web_id]["address"] == f"{web_ip}/24"
    assert atts[web_id]["portMappings"] == ["tcp 8080 -> 80"]
    inside = pm.run("exec", "cli", "ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert f"{cli_ip}/24" in inside

    # the inet host through the NI's NAT, from inside the container
    got = pm.run("exec", "cli", "wget", "-q", "-O", "-", f"http://{INET_IP}:8000/",
                 timeout=20).stdout
    assert got == "hello from the inet host\n"
    sandbox = os.path.basename(pm.sandbox("cli"))
    assert lab.connect(sandbox, "tcp", INET_IP, 7000) == "inet sees 198.51.100.2"
    # another app of the NI by name (podman's resolv.conf: the NI's DNS from the result)
    assert "nameserver 10.1.0.1" in pm.run("exec", "cli", "cat", "/etc/resolv.conf").stdout
    out = pm.run("exec", "cli", "nslookup", "web").stdout
    assert web_ip in out, out
    # not the other NI: neither its app nor its transit address, though they answer
    assert lab.connect(site.other_app, "tcp", site.other_ip, 9000) == "oapp sees " \
        + site.other_ip
    assert lab.connect(sandbox, "tcp", site.other_ip, 9000, timeout=1) is None
    (other,) = json.loads(lab.cli("status", OTHER, "--json").stdout)
    assert lab.connect(sandbox, "tcp", other["transit"]["ni"].split("/")[0], 9000,
                       timeout=1) is None

    # -p 8080:80 answers on the uplink's address, from the wan
    def from_wan() -> str:
        return site.wget(lab.wan, "http://198.51.100.2:8080/")

    wait_for(lambda: from_wan() != "", 10, "httpd behind the port map")
    assert from_wan() == "hello from podman\n"

    # podman rm -f: the attachment, its lease and the port map go
    web_mac = atts[web_id]["mac"]
    pm.run("rm", "-f", "-t", "0", "web")
    assert web_id not in {a.get("containerId") for a in site.status()["attached"]}
    assert "dport 8080" not in site.nft()
    wait_for(lambda: web_mac not in [x[1] for x in site.leases()], 5, "web's lease released")
    assert atts[web_id]["hostIfname"] not in sh("ip", "-o", "link", netns=f"nr-{FACTORY}").stdout
    assert from_wan() == ""
    pm.run("rm", "-f", "-t", "0", "cli")
    assert not [a for a in site.status()["attached"] if a["kind"] == "cni"]
    assert not [x for x in site.leases() if x[3] in ("web", "cli")]
    results = "/var/lib/cni/results"
    assert not [f for f in (os.listdir(results) if os.path.isdir(results) else [])
                if f.startswith(NET)]
    assert (sorted(os.listdir("/etc/cni/net.d")) if os.path.isdir("/etc/cni/net.d")
            else []) == etc_cni
