"""Supervisor reliability: crashes anywhere, restarts, reboots, live changes, concurrency.

A lab device with NIs r1 and r2 (the same subnet, on eth0); r1 maps eth0:8080
to its app `web`. Each test leaves the site as it found it (the module's tests
build on one lab to keep the run short).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.image.build import build_image
from runner.lab.topology import INET_IP, Lab, sh, wait_for
from tests.integration.conftest import RUN_ID

R = RUN_ID
R1, R2 = f"r1-{R}", f"r2-{R}"


def manifest(name: str, extra: str = "", subnet: str = "10.1.0.0/24") -> str:
    return (f"apiVersion: nirunner/v1\nkind: NetworkInstance\nmetadata: {{name: {name}}}\n"
            f"spec:\n  type: local\n  uplink: eth0\n  subnet: {subnet}\n"
            f"  dns: {{upstream: [{INET_IP}]}}\n{extra}")


R1_SPEC = ("  dhcp: {reservations: [{name: web, mac: '02:00:00:00:01:10', ip: 10.1.0.10}]}\n"
           "  portMaps: [{name: web, protocol: tcp, uplinkPort: 8080, target: web, "
           "targetPort: 80}]\n")


class Site:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.apps: dict[str, str] = {}
        self.ips: dict[str, str] = {}

    def apply(self, text: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        f = self.lab.base / f"m{time.monotonic_ns()}.yaml"
        f.write_text(text)
        return self.lab.cli("apply", "-f", str(f), check=check)

    def status(self) -> dict[str, dict]:
        return {s["name"]: s for s in json.loads(self.lab.cli("status", "--json").stdout)}

    def pids(self) -> dict[str, int]:
        return {n: s["task"]["pid"] for n, s in self.status().items()}

    def restart_supervisor(self, **kw: object) -> None:
        self.lab.stop_supervisor()
        self.lab.start_supervisor(**kw)  # type: ignore[arg-type]

    def inventory(self) -> dict[str, set[str]]:
        """Every nirunner-owned object of this lab, kernel and containerd."""
        lab, dev = self.lab, self.lab.device
        ctr = ["ctr", "--address", lab.containerd.address, "-n", lab.namespace]
        snaps = sh(*ctr, "snapshots", "ls").stdout.split("\n")[1:]
        return {
            "netns": {n.split()[0] for n in sh("ip", "netns", "list").stdout.splitlines()
                      if n.startswith("nr-") and n.split()[0].endswith(R)},  # not other labs
            "links": set(re.findall(r"^\d+: (nr\d+)@", sh("ip", "-o", "link", netns=dev).stdout,
                                    re.M)),
            "rules": set(re.findall(r"iif (nr\d+)", sh("ip", "rule", netns=dev).stdout)),
            "containers": set(sh(*ctr, "containers", "ls", "-q").stdout.split()),
            "tasks": {ln.split()[0] for ln in sh(*ctr, "tasks", "ls").stdout.splitlines()[1:]
                      if ln.split()[-1] == "RUNNING"},
            "snapshots": {s.split()[0] for s in snaps if s.startswith("ni-")},
            "state": {d.name for d in (lab.state_dir / "ni").iterdir()},
        }

    def expected(self) -> dict[str, set[str]]:
        st = self.status()
        linked = [s["transit"]["link"] for s in st.values() if "transit" in s]
        return {
            "netns": {f"nr-{n}" for n in st}, "links": set(linked), "rules": set(linked),
            "containers": {f"ni-{n}" for n in st}, "tasks": {f"ni-{n}" for n in st},
            "snapshots": {f"ni-{n}" for n in st}, "state": set(st),
        }

    def wait_converged(self, what: str, timeout: float = 30) -> None:
        """Wait until converged; on timeout, fail showing what differs."""
        try:
            wait_for(self.converged, timeout, what)
        except Exception:
            states = {n: (s["state"], s["reason"]) for n, s in self.status().items()}
            assert self.inventory() == self.expected(), states
            assert all(s == "running" for s, _ in states.values()), states
            raise

    def converged(self) -> bool:
        st = self.status()
        return all(s["state"] == "running" for s in st.values()) and \
            self.inventory() == self.expected()


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    lab = Lab(f"nrr{R}", image_archive=str(build_image().archive))
    try:
        lab.build()
        lab.start_dns({"www.example.test": INET_IP})
        lab.serve(lab.inet, "tcp", 7000, "inet")
        lab.start_containerd()
        lab.write_config(lab.image)
        lab.start_supervisor()
        s = Site(lab)
        s.apply(manifest(R1, R1_SPEC) + "---\n" + manifest(R2))
        for app, ni, mac in (("web", R1, "02:00:00:00:01:10"), ("hmi", R1, ""),
                             ("twin", R2, "")):
            s.apps[app] = lab.app(app, ni, mac)
            s.ips[app] = lab.dhcp(s.apps[app], app)
        lab.serve(s.apps["web"], "tcp", 80, "web")
        yield s
    finally:
        lab.teardown()


def _events(site: Site) -> str:
    return site.lab.cli("events").stdout


@pytest.mark.parametrize("point", ["netns", "links", "task", "rules"])
def test_supervisor_killed_inside_an_apply_converges(site: Site, point: str) -> None:
    lab = site.lab
    name = f"k{point[0]}-{R}"
    lab.stop_supervisor()
    lab.start_supervisor(env={"NIRUNNER_TEST_CRASH_AT": f"{point}:{name}"})
    res = site.apply(manifest(name, subnet="10.5.0.0/24"), check=False)
    assert res.returncode != 0  # the supervisor died under the client
    assert lab.supervisor is not None
    lab.supervisor.wait(10)
    assert lab.supervisor.returncode == -signal.SIGKILL
    os.unlink(lab.socket)
    lab.supervisor = None

    lab.start_supervisor()
    site.wait_converged("convergence after the crash")
    assert name in site.status()
    assert lab.connect(site.apps["twin"], "tcp", INET_IP, 7000) == "inet sees 198.51.100.2"
    lab.cli("delete", name)
    assert site.inventory() == site.expected()


def test_supervisor_restart_adopts_without_restarting(site: Site) -> None:
    before = site.pids()
    flow = subprocess.Popen(
        ["ip", "netns", "exec", site.apps["hmi"], sys.executable, "-m", "runner.lab.net",
         "connect", "tcp", INET_IP, "7000", "--hold", "6"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    site.restart_supervisor()
    out, err = flow.communicate(timeout=30)
    assert flow.returncode == 0, err  # one TCP connection, through NAT, all along
    assert int(out.split()[0]) >= 30
    assert site.pids() == before
    assert f"{len(before)} NIs, {len(before)} adopted as they were" in _events(site)


def test_killed_task_comes_back_and_apps_keep_their_address(site: Site) -> None:
    lab = site.lab
    old = site.pids()[R1]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: site.status()[R1]["task"]["pid"] not in (0, old)
             and site.status()[R1]["state"] == "running", 20, "the task to be restarted")
    st = site.status()[R1]
    assert st["task"]["restarts"] >= 1
    assert lab.dhcp(site.apps["hmi"], "hmi") == site.ips["hmi"]  # renewed, same address
    res = sh(sys.executable, "-m", "runner.lab.dnsq", "10.1.0.1", "web",
             netns=site.apps["hmi"], check=False)
    assert res.stdout.split() == ["10.1.0.10"]
    assert "task.exited" in _events(site)


def test_containerd_restart(site: Site) -> None:
    lab = site.lab
    before = site.pids()
    lab.containerd.stop_daemon_only()
    assert all(Path(f"/proc/{pid}").exists() for pid in before.values())  # tasks live on
    assert lab.connect(site.apps["twin"], "tcp", INET_IP, 7000) is not None
    lab.containerd.start()
    wait_for(lambda: "containerd.reconnected" in _events(site), 20, "the supervisor to reconnect")
    assert site.pids() == before
    deadline = time.monotonic() + 10
    while True:
        st = site.status()
        if all(s["state"] == "running" for s in st.values()):
            break
        assert time.monotonic() < deadline, {n: (s["state"], s["reason"]) for n, s in st.items()}
        time.sleep(0.2)
    # the new event subscription works: a killed task is restarted again
    os.kill(before[R2], signal.SIGKILL)
    wait_for(lambda: site.status()[R2]["task"]["pid"] not in (0, before[R2]), 20,
             "the task to be restarted after containerd's restart")


def test_uplink_address_change_moves_the_port_map(site: Site) -> None:
    lab, dev = site.lab, site.lab.device
    assert lab.connect(lab.wan, "tcp", "198.51.100.2", 8080) == "web sees 198.51.100.1"
    # keep the new address when the old (primary) one goes, as DHCP clients do
    sh("sysctl", "-qw", "net.ipv4.conf.eth0.promote_secondaries=1", netns=dev)
    try:
        sh("ip", "addr", "add", "198.51.100.3/24", "dev", "eth0", netns=dev)
        sh("ip", "addr", "del", "198.51.100.2/24", "dev", "eth0", netns=dev)
        sh("ip", "route", "replace", "default", "via", "198.51.100.1", "dev", "eth0",
           "metric", "100", netns=dev)
        t0 = time.monotonic()
        wait_for(lambda: lab.connect(lab.wan, "tcp", "198.51.100.3", 8080, timeout=0.5)
                 is not None, 5, "the port map on the new address")
        wait_for(lambda: lab.connect(lab.wan, "tcp", "198.51.100.2", 8080, timeout=0.5)
                 is None, 5, "the port map to leave the old address")
        print(f"port map followed the address in {time.monotonic() - t0:.2f}s")
        # and NAT follows too: the inet host sees the new address
        assert lab.connect(site.apps["hmi"], "tcp", INET_IP, 7000) == "inet sees 198.51.100.3"
    finally:
        sh("ip", "addr", "add", "198.51.100.2/24", "dev", "eth0", netns=dev, check=False)
        sh("ip", "addr", "del", "198.51.100.3/24", "dev", "eth0", netns=dev, check=False)
        sh("ip", "route", "replace", "default", "via", "198.51.100.1", "dev", "eth0",
           "metric", "100", netns=dev)
    wait_for(lambda: lab.connect(lab.wan, "tcp", "198.51.100.2", 8080, timeout=0.5)
             is not None, 5, "the port map back on the old address")


def test_uplink_down_and_up(site: Site) -> None:
    lab, dev = site.lab, site.lab.device
    sh("ip", "link", "set", "eth0", "down", netns=dev)
    try:
        assert lab.connect(site.apps["hmi"], "tcp", INET_IP, 7000, timeout=1) is None
    finally:
        sh("ip", "link", "set", "eth0", "up", netns=dev)
        sh("ip", "route", "replace", "default", "via", "198.51.100.1", "dev", "eth0",
           "metric", "100", netns=dev)
    wait_for(lambda: lab.connect(site.apps["hmi"], "tcp", INET_IP, 7000, timeout=0.5)
             is not None, 5, "NAT after the uplink came back")
    wait_for(lambda: lab.connect(lab.wan, "tcp", "198.51.100.2", 8080, timeout=0.5)
             is not None, 5, "the port map after the uplink came back")


def test_a_macvlan_on_an_uplink_is_no_uplink_change(site: Site) -> None:
    """Making or removing a macvlan of an uplink changes only its promiscuity count: the
    supervisor must not take that for an uplink change and plan again."""
    dev = site.lab.device
    before = _events(site).count("uplink.changed")
    sh("ip", "link", "add", "link", "eth1", "name", "mvx", "type", "macvlan", "mode",
       "bridge", netns=dev)
    sh("ip", "link", "del", "mvx", netns=dev)
    sh("ip", "link", "set", "eth1", "mtu", "1400", netns=dev)  # this one is a change
    try:
        wait_for(lambda: _events(site).count("uplink.changed") > before, 5, "the MTU change")
        assert _events(site).count("uplink.changed") == before + 1
    finally:
        sh("ip", "link", "set", "eth1", "mtu", "1500", netns=dev)


def test_live_changes_keep_the_task(site: Site) -> None:
    lab = site.lab
    before = site.pids()
    hmi_mac = sh("cat", "/sys/class/net/eth0/address", netns=site.apps["hmi"]).stdout.strip()
    changed = (
        "  dhcp: {reservations: [{name: web, mac: '02:00:00:00:01:10', ip: 10.1.0.10}, "
        f"{{name: hmi, mac: '{hmi_mac}', ip: 10.1.0.11}}]}}\n"
        "  portMaps: [{name: web, protocol: tcp, uplinkPort: 8080, target: web, "
        "targetPort: 80}, {name: web2, protocol: tcp, uplinkPort: 8088, target: web, "
        "targetPort: 80}]\n"
        "  resources: {memory: 96Mi}\n")
    spec = manifest(R1, changed).replace(
        f"dns: {{upstream: [{INET_IP}]}}",
        f"dns: {{upstream: [{INET_IP}], static: [{{name: archive, addresses: [10.1.0.30]}}]}}")
    site.apply(spec + "---\n" + manifest(R2))
    try:
        assert site.pids() == before
        assert lab.connect(lab.wan, "tcp", "198.51.100.2", 8088) == "web sees 198.51.100.1"
        res = sh(sys.executable, "-m", "runner.lab.dnsq", "10.1.0.1", "archive",
                 netns=site.apps["hmi"], check=False)
        assert res.stdout.split() == ["10.1.0.30"]
        sh("ip", "addr", "flush", "dev", "eth0", netns=site.apps["hmi"])
        assert lab.dhcp(site.apps["hmi"], "hmi") == "10.1.0.11"  # the new reservation
        cg = Path(f"/sys/fs/cgroup/memory/{lab.namespace}/ni-{R1}/memory.limit_in_bytes")
        assert int(cg.read_text()) == 96 << 20
        assert site.status()[R1]["usage"]["memoryLimit"] == 96 << 20
    finally:
        site.apply(manifest(R1, R1_SPEC) + "---\n" + manifest(R2))
        sh("ip", "addr", "flush", "dev", "eth0", netns=site.apps["hmi"])
        site.ips["hmi"] = lab.dhcp(site.apps["hmi"], "hmi")
    assert site.pids() == before


def test_concurrent_applies_and_deletes_end_consistent(site: Site) -> None:
    lab = site.lab
    names = [f"x{i}-{R}" for i in range(10)]
    errors: list[str] = []

    def apply(i: int) -> None:
        res = site.apply(manifest(names[i], subnet=f"10.{20 + i}.0.0/24"), check=False)
        if res.returncode != 0:
            errors.append(res.stderr)

    def delete(i: int) -> None:
        time.sleep(0.05 * i)
        lab.cli("delete", names[i], check=False)  # may come before the apply: fine

    threads = [threading.Thread(target=apply, args=(i,)) for i in range(10)]
    threads += [threading.Thread(target=delete, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    site.wait_converged("a consistent state")
    left = [n for n in names if n in site.status()]
    lab.cli("delete", *left) if left else None
    assert site.inventory() == site.expected()


def test_reboot_rebuilds_everything_and_apps_get_their_leases(site: Site) -> None:
    lab, dev = site.lab, site.lab.device
    ctr = ["ctr", "--address", lab.containerd.address, "-n", lab.namespace]
    lab.stop_supervisor()
    # "power off": tasks, NI and app namespaces and the device's rules are gone;
    # containerd's metadata and nirunner's state dir are on disk and stay
    for n in (R1, R2):
        sh(*ctr, "tasks", "kill", "-s", "SIGKILL", f"ni-{n}", check=False)
    for n in (R1, R2):
        wait_for(lambda n=n: "RUNNING" not in sh(*ctr, "tasks", "ls").stdout.split(f"ni-{n}")[-1]
                 .split("\n")[0], 10, "the task to stop")
        sh(*ctr, "tasks", "rm", f"ni-{n}", check=False)
        sh("ip", "netns", "del", f"nr-{n}")
    for app in site.apps.values():
        sh("ip", "netns", "del", app)
    sh("nft", "delete", "table", "inet", "nirunner", netns=dev)
    for line in sh("ip", "rule", netns=dev).stdout.splitlines():
        prio = line.split(":")[0]
        if "iif nr" in line or prio == "32000":
            sh("ip", "rule", "del", "priority", prio, netns=dev)
    sh("ip", "rule", "add", "priority", "0", "lookup", "local", netns=dev)
    for table in ("1000", "1001"):
        sh("ip", "route", "flush", "table", table, netns=dev, check=False)
    # "power on": the apps' namespaces come back, then the supervisor
    for app in site.apps.values():
        sh("ip", "netns", "add", app)
        sh("ip", "link", "set", "lo", "up", netns=app)
    lab.start_supervisor()
    site.wait_converged("everything rebuilt")
    for app, ns in site.apps.items():  # re-plugged by the supervisor, same MAC
        assert lab.dhcp(ns, app) == site.ips[app]
    lab.serve(site.apps["web"], "tcp", 80, "web")
    assert lab.connect(lab.wan, "tcp", "198.51.100.2", 8080) == "web sees 198.51.100.1"
    assert lab.connect(site.apps["twin"], "tcp", INET_IP, 7000) == "inet sees 198.51.100.2"


def test_repeated_crashes_mark_the_ni_failed(site: Site) -> None:
    lab = site.lab
    name = f"f-{R}"
    site.apply(manifest(name, subnet="10.6.0.0/24"))
    seen: set[int] = set()
    for _ in range(5):
        wait_for(lambda: site.status()[name]["task"]["pid"] not in (0, *seen)
                 or site.status()[name]["state"] == "failed", 40, "the next start")
        st = site.status()[name]
        if st["state"] == "failed":
            break
        pid = st["task"]["pid"]
        seen.add(pid)
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: site.status()[name]["state"] == "failed", 40, "the NI to be failed")
    assert "times in a row" in site.status()[name]["reason"]
    assert "ni.failed" in _events(site)
    lab.cli("delete", name)


def test_corrupt_state_is_reported_and_kept(site: Site, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "desired.json").write_text('{"format": 1, "checksum": "x", "body": {"nis": {}}')
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"stateDir: {state}\napiSocket: {tmp_path / 'api.sock'}\n"
                   f"containerd: {{address: {site.lab.containerd.address}}}\n")
    res = subprocess.run([sys.executable, "-m", "runner.cli.main", "supervise", "--config",
                          str(cfg)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 1
    assert "desired.json" in res.stderr and "Traceback" not in res.stderr
    assert (state / "desired.json").read_text().startswith('{"format": 1')


def test_orphans_are_removed(site: Site) -> None:
    from runner import nitask
    from runner.containerd.client import Client
    from runner.drivers import netns as ns

    lab = site.lab
    orphan, stray = f"o1-{R}", f"o2-{R}"
    lab.stop_supervisor()
    # what a crash could leave: an NI's netns and state dir, a container, a transit link
    sh("ip", "netns", "add", f"nr-{orphan}")
    (lab.state_dir / "ni" / orphan / "state").mkdir(parents=True)
    sh("ip", "link", "add", "nr99", "type", "veth", "peer", "name", "nr99p", netns=lab.device)
    cfg = lab.state_dir / "ni" / stray
    (cfg / "config").mkdir(parents=True)
    (cfg / "state").mkdir()
    with Client(lab.containerd.address, lab.namespace) as c:
        nitask.create(c, lab.image, nitask.NITask(
            name=stray, ni_type="local", uplink="", generation="x",
            netns_path=ns.path(f"nr-{orphan}"), config_dir=str(cfg / "config"),
            state_dir=str(cfg / "state"), log_path=str(cfg / "task.log")))
    # a netns that merely looks like ours (another supervisor's) stays
    sh("ip", "netns", "add", f"nr-{R}-foreign")
    try:
        lab.start_supervisor()
        site.wait_converged("the orphans to be removed")
        assert f"nr-{R}-foreign" in sh("ip", "netns", "list").stdout
        assert "orphan.removed" in _events(site) or "orphan removed" in _events(site)
    finally:
        sh("ip", "netns", "del", f"nr-{R}-foreign", check=False)


def test_subnet_change_rebuilds_the_ni(site: Site) -> None:
    lab = site.lab
    before = site.pids()
    site.apply(manifest(R1, R1_SPEC) + "---\n" + manifest(R2, subnet="10.9.0.0/24"))
    try:
        assert site.pids()[R2] != before[R2]
        assert site.pids()[R1] == before[R1]
        sh("ip", "addr", "flush", "dev", "eth0", netns=site.apps["twin"])
        assert lab.dhcp(site.apps["twin"], "twin").startswith("10.9.0.")
        assert lab.connect(site.apps["twin"], "tcp", INET_IP, 7000) == "inet sees 198.51.100.2"
    finally:
        site.apply(manifest(R1, R1_SPEC) + "---\n" + manifest(R2))
        sh("ip", "addr", "flush", "dev", "eth0", netns=site.apps["twin"])
        site.ips["twin"] = lab.dhcp(site.apps["twin"], "twin")


def test_events_follow_live(site: Site) -> None:
    lab = site.lab
    follow = subprocess.Popen(
        [sys.executable, "-m", "runner.cli.main", "events", "-f", "--socket", lab.socket],
        stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        os.kill(site.pids()[R2], signal.SIGKILL)
        seen: list[str] = []

        def read() -> None:
            assert follow.stdout is not None
            for line in follow.stdout:
                seen.append(line)
                if "task.exited" in line and R2 in line:
                    return

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(20)
        assert any("task.exited" in x and R2 in x for x in seen), seen
    finally:
        follow.kill()
        follow.wait(5)
    wait_for(lambda: site.status()[R2]["state"] == "running", 20, "the task to come back")
