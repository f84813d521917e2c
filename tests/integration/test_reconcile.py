"""The item reconciler on a real device: truthful dry runs, applies that write nothing
when nothing changed, faults undone, containerd away, and healing of what is removed
behind the supervisor's back.

A lab device with NIs h1 (port map eth0:8080 -> its app web) and h2, on eth0; the
state dir is a small tmpfs, so a full disk can be made on purpose.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.api.client import ApiClient
from runner.image.build import build_image
from runner.lab.topology import INET_IP, Lab, LabError, sh, wait_for
from tests.integration.conftest import RUN_ID

R = RUN_ID
H1, H2, H3 = f"h1-{R}", f"h2-{R}", f"h3-{R}"
WEB_MAC = "02:00:00:00:07:10"


def manifest(name: str, subnet: str = "10.1.0.0/24", port: int | None = None) -> str:
    text = (f"apiVersion: nirunner/v1\nkind: NetworkInstance\nmetadata: {{name: {name}}}\n"
            f"spec:\n  type: local\n  uplink: eth0\n  subnet: {subnet}\n"
            f"  dns: {{upstream: [{INET_IP}]}}\n")
    if port is None:  # the shortest lease dnsmasq gives: expiries within a test
        text += "  dhcp: {leaseTime: 2m}\n"
    else:
        ip = subnet.rsplit(".", 1)[0] + ".10"
        text += (f"  dhcp: {{reservations: [{{name: web, mac: '{WEB_MAC}', ip: {ip}}}]}}\n"
                 f"  portMaps: [{{name: web, protocol: tcp, uplinkPort: {port}, target: web, "
                 f"targetPort: 80}}]\n")
    return text


SITE = manifest(H1, port=8080) + "---\n" + manifest(H2)


class Site:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.apps: dict[str, str] = {}

    def api(self) -> ApiClient:
        return ApiClient(self.lab.socket, timeout=120)

    def apply(self, text: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        f = self.lab.base / f"m{time.monotonic_ns()}.yaml"
        f.write_text(text)
        return self.lab.cli("apply", "-f", str(f), *args, check=check)

    def status(self) -> dict[str, dict]:
        return {s["name"]: s for s in json.loads(self.lab.cli("status", "--json").stdout)}

    def pids(self) -> dict[str, int]:
        return {n: s["task"]["pid"] for n, s in self.status().items()}

    def events(self) -> str:
        return self.lab.cli("events").stdout

    def snapshot(self) -> dict[str, object]:
        """The state a refused apply must leave as it was: file, kernel, containerd."""
        lab, dev = self.lab, self.lab.device
        ctr = ["ctr", "--address", lab.containerd.address, "-n", lab.namespace]
        return {
            "desired": (lab.state_dir / "desired.json").read_bytes(),
            "netns": sorted(n.split()[0] for n in sh("ip", "netns", "list").stdout.splitlines()
                            if n.startswith("nr-") and n.split()[0].endswith(R)),
            "links": sorted(re.findall(r"^\d+: (\S+?)[@:]", sh("ip", "-o", "link",
                                                               netns=dev).stdout, re.M)),
            "rules": sh("ip", "rule", netns=dev).stdout,
            "device nft": sh("nft", "-s", "list", "table", "inet", "nirunner", netns=dev).stdout,
            "containers": sorted(sh(*ctr, "containers", "ls", "-q").stdout.split()),
            "tasks": sorted(sh(*ctr, "tasks", "ls").stdout.splitlines()[1:]),
            "state dirs": sorted(d.name for d in (lab.state_dir / "ni").iterdir()),
        }

    def web_reachable(self, port: int = 8080) -> bool:
        return self.lab.connect(self.lab.wan, "tcp", "198.51.100.2", port,
                                timeout=1) == "web sees 198.51.100.1"

    def works(self) -> bool:
        return (self.web_reachable() and self.lab.connect(self.apps["cli"], "tcp", INET_IP,
                                                          7000, timeout=1) is not None)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    lab = Lab(f"nrc{R}", image_archive=str(build_image().archive))
    mounted = False
    try:
        lab.build()
        lab.state_dir.mkdir(parents=True)
        sh("mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", f"nrc{R}-state",
           str(lab.state_dir))
        mounted = True
        lab.start_dns({"www.example.test": INET_IP})
        lab.serve(lab.inet, "tcp", 7000, "inet")
        lab.start_containerd()
        lab.write_config(lab.image)
        lab.start_supervisor()
        s = Site(lab)
        s.apply(SITE)
        s.apps["web"] = lab.app("web", H1, WEB_MAC)
        lab.dhcp(s.apps["web"], "web")
        s.apps["cli"] = lab.app("cli", H2)
        lab.dhcp(s.apps["cli"], "cli")
        lab.serve(s.apps["web"], "tcp", 80, "web")
        assert s.works()
        yield s
    finally:
        lab.teardown()  # while the state dir is mounted: it names the NIs to remove
        if mounted:
            sh("umount", "-l", str(lab.state_dir), check=False)
            shutil.rmtree(lab.base, ignore_errors=True)


def test_the_same_apply_twice_writes_nothing(site: Site) -> None:
    with site.api() as api:
        resp = api.apply([("site.yaml", SITE)])
    assert resp.writes == 0, list(resp.ops)
    assert list(resp.ops) == []
    assert {(c.ni, c.action) for c in resp.changes} == {(H1, "unchanged"), (H2, "unchanged")}
    out = site.apply(SITE, "--dry-run").stdout
    assert out.splitlines()[0] == "no changes"
    assert f"{H1}: unchanged" in out


def test_a_port_map_change_runs_exactly_what_its_dry_run_said(site: Site) -> None:
    moved = manifest(H1, port=8090) + "---\n" + manifest(H2)
    before = site.pids()
    dry = site.apply(moved, "--dry-run").stdout
    expected = [f"~ nft table inet ni in nr-{H1}: port map web 8080 -> 8090",
                f"~ nft table inet nirunner: port map {H1}/web 8080 -> 8090"]
    assert dry.splitlines()[:3] == [*expected, ""]
    assert f"{H1}: update (port maps)" in dry and f"{H2}: unchanged" in dry
    try:
        with site.api() as api:
            resp = api.apply([("site.yaml", moved)])
        assert list(resp.ops) == expected
        assert resp.writes == 2
        assert {(c.ni, c.action, c.detail) for c in resp.changes} == {
            (H1, "updated", "port maps"), (H2, "unchanged", "")}
        assert f"ni.updated {H1}: port maps" in site.events()
        assert site.web_reachable(8090) and not site.web_reachable(8080)
        assert site.pids() == before
    finally:
        site.apply(SITE)
    assert site.web_reachable(8080)


def test_a_netlink_fault_is_reported_and_undone(site: Site) -> None:
    lab = site.lab
    lab.stop_supervisor()
    lab.start_supervisor(env={"NIRUNNER_TEST_NETLINK_FAULT": "add address 10.77.0.1/24=17"})
    try:
        before = site.snapshot()
        res = site.apply(manifest(H3, subnet="10.77.0.0/24"), check=False)
        assert res.returncode == 1
        assert f"add address 10.77.0.1/24 to br0 in nr-{H3}: File exists" in res.stderr
        assert "undone" in res.stderr and "Traceback" not in res.stderr
        assert site.snapshot() == before
        assert set(site.status()) == {H1, H2}  # and the API goes on serving
        assert site.works()
    finally:
        lab.stop_supervisor()
        lab.start_supervisor()
    log = (lab.base / "supervisor.log").read_text()
    assert "Traceback" not in log


def test_a_full_state_dir_refuses_the_apply_and_changes_nothing(site: Site) -> None:
    lab = site.lab
    filler = lab.state_dir / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True,
                   check=False)  # until the tmpfs is full
    try:
        before = site.snapshot()
        for text in (manifest(H3, subnet="10.78.0.0/24"),  # a new NI
                     manifest(H1, port=8095) + "---\n" + manifest(H2)):  # a live change
            res = site.apply(text, check=False)
            assert res.returncode == 1
            assert "save the desired state" in res.stderr
            assert "No space left on device" in res.stderr
            assert site.snapshot() == before
        assert site.works()
    finally:
        filler.unlink()
    site.apply(manifest(H3, subnet="10.78.0.0/24"))  # room again: it works
    lab.cli("delete", H3)


def test_containerd_away_shows_unknown_and_comes_back(site: Site) -> None:
    lab = site.lab
    before = site.pids()
    lab.containerd.stop_daemon_only()
    try:
        st = site.status()
        for name, pid in before.items():
            assert (st[name]["state"], st[name]["reason"]) == ("unknown",
                                                               "containerd unreachable")
            assert st[name]["task"]["pid"] == pid  # the last known, and still it
            assert Path(f"/proc/{pid}").exists()
        assert site.works()  # the NIs do not need containerd to work
    finally:
        lab.containerd.start()
    t0 = time.monotonic()
    wait_for(lambda: all(s["state"] == "running" for s in site.status().values()), 2.0,
             "every NI running again")
    print(f"running again {time.monotonic() - t0:.2f}s after containerd answered")
    assert site.pids() == before


def _transit(site: Site) -> str:
    return str(site.status()[H1]["transit"]["link"])


TAMPER = {
    "the NI's nft table deleted": (
        lambda s: sh("nft", "delete", "table", "inet", "ni", netns=f"nr-{H1}"),
        lambda s: "table inet ni" in sh("nft", "list", "tables", netns=f"nr-{H1}").stdout),
    "its transit veth deleted": (
        lambda s: sh("ip", "link", "del", _transit(s), netns=s.lab.device),
        lambda s: _transit(s) in sh("ip", "-o", "link", netns=s.lab.device).stdout),
    "its default route deleted": (
        lambda s: sh("ip", "route", "del", "default", netns=f"nr-{H1}"),
        lambda s: "default" in sh("ip", "route", netns=f"nr-{H1}").stdout),
    "the device's nft table flushed": (
        lambda s: sh("nft", "flush", "table", "inet", "nirunner", netns=s.lab.device),
        lambda s: "masquerade" in sh("nft", "list", "table", "inet", "nirunner",
                                     netns=s.lab.device).stdout),
}


@pytest.mark.parametrize("what", list(TAMPER))
def test_what_is_removed_behind_its_back_is_healed(site: Site, what: str) -> None:
    tamper, present = TAMPER[what]
    assert site.works() and present(site)
    pids = site.pids()
    tamper(site)
    t0 = time.monotonic()
    try:
        wait_for(lambda: present(site), 2.0, f"{what}: restored")
    except LabError:
        print(site.events())
        raise
    print(f"{what}: restored in {time.monotonic() - t0:.2f}s")
    wait_for(site.works, 5, "traffic through the NAT and the port map again")
    healed = [ln for ln in site.events().splitlines() if "healed" in ln]
    assert healed, site.events()
    assert site.pids() == pids  # healed without restarting anything
    if what != "the device's nft table flushed":
        assert any(H1 in ln for ln in healed[-2:]), healed


def test_a_deletion_just_after_our_own_change_is_healed(site: Site) -> None:
    """The supervisor mutes an NI's kernel events while it changes the NI and for a
    moment after (they are its own). A route someone deletes in that moment is still
    healed: the deletion is reported once the mute ends."""
    app = f"nrc{R}-late"
    sh("ip", "netns", "add", app)
    try:
        with site.api() as api:
            api.attach(H1, f"/run/netns/{app}", "eth0")  # h1 is muted until ~0.5 s after
            sh("ip", "route", "del", "default", netns=f"nr-{H1}")
        wait_for(lambda: "default" in sh("ip", "route", netns=f"nr-{H1}").stdout, 3.0,
                 "the default route deleted within the mute: restored")
        assert "while nirunner was changing it" in site.events()
        wait_for(site.works, 5, "traffic through the NAT and the port map again")
    finally:
        with site.api() as api:
            api.detach(H1, f"/run/netns/{app}", "eth0")
        sh("ip", "netns", "del", app, check=False)


def test_a_lease_flood_from_random_macs_is_dropped_at_the_edge(site: Site) -> None:
    """DISCOVERs from random MACs through one app port (issue 10's flood) get no lease
    since the app edge (issue 11): an app port sends only with its own MAC. Every frame
    is counted; status keeps showing the 2 attached apps."""
    from runner.drivers.dhcp import DhcpError, acquire

    lab = site.lab
    flood = lab.app("flood", H2)  # the second attached app of h2 (cli is the first)
    try:
        macs = [":".join(["02", *(f"{b:02x}" for b in os.urandom(5))]) for _ in range(10)]
        for mac in macs:
            with pytest.raises(DhcpError):
                acquire(f"/run/netns/{flood}", "eth0", mac, timeout=1)
        st = json.loads(lab.cli("inspect", H2, "--json").stdout)
        port = next(p for p in st["appEdge"]["ports"] if p["port"] != _cli_port(site, st))
        assert port["drops"].get("mac", 0) >= len(macs), port
        assert len(st["apps"]) == 2 and all(a["attached"] for a in st["apps"]), st["apps"]
    finally:
        lab.cli("detach", H2, "--netns", f"/run/netns/{flood}", check=False)
        sh("ip", "netns", "del", flood, check=False)


def test_apps_are_the_attached_ones_and_unexpired_leases(site: Site) -> None:
    """Issue 10: 100 leases from random MACs (each from an app port of its own MAC, the
    only way past the app edge), their apps gone again: status counts attached apps
    plus distinct unexpired leases, never more, and the 2 attached apps once they expire."""
    from runner.drivers.dhcp import acquire

    lab = site.lab
    second = lab.app("cli2", H2)  # with cli: the 2 attached apps of h2
    passer = f"{lab.prefix}-passer"
    sh("ip", "netns", "add", passer)
    try:
        def count() -> tuple[int, int, int]:
            apps = site.status()[H2]["apps"]
            return len(apps), sum(a["attached"] for a in apps), sum(
                1 for a in apps if not a["attached"])

        for _ in range(100):
            mac = ":".join(["02", *(f"{b:02x}" for b in os.urandom(5))])
            lab.cli("attach", H2, "--netns", f"/run/netns/{passer}", "--mac", mac)
            acquire(f"/run/netns/{passer}", "eth0", mac, timeout=5)
            lab.cli("detach", H2, "--netns", f"/run/netns/{passer}")
        apps, attached, by_lease = count()
        print(f"after 100 leases: {apps} apps, {attached} attached, {by_lease} by lease alone")
        assert attached == 2 and by_lease == 100 and apps == attached + by_lease
        deadline = time.monotonic() + 200  # leases of 2 minutes, and dnsmasq's own slack
        while (found := count())[0] != 2:
            assert found[0] <= found[1] + found[2]
            assert time.monotonic() < deadline, found
            time.sleep(5)
    finally:
        sh("ip", "netns", "del", passer, check=False)
        lab.cli("detach", H2, "--netns", f"/run/netns/{second}", check=False)
        sh("ip", "netns", "del", second, check=False)


def _cli_port(site: Site, st: dict[str, object]) -> str:
    """The bridge port of the cli app (the one attached first)."""
    attached = st["attached"]
    assert isinstance(attached, list)
    return str(next(a["hostIfname"] for a in attached if a["netns"].endswith("-cli")))


def test_supervisor_log_has_no_traceback(site: Site) -> None:
    log = (site.lab.base / "supervisor.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    assert os.path.exists(site.lab.socket)
