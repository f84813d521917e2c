"""The supervisor as a systemd service, with the test playing systemd's part.

- notify: a datagram socket as $NOTIFY_SOCKET with $WATCHDOG_USEC set; READY=1
  only once the NIs' tasks run, WATCHDOG=1 at half the interval, STOPPING=1 and
  NI tasks left running (same PIDs) on SIGTERM.
- capabilities: the supervisor runs as the unit runs it (its CapabilityBoundingSet=,
  NoNewPrivileges=, UMask=, read from the unit file we ship) through setpriv, and
  does a real apply, attach, DHCP, DNS, NAT, port map, VPN tunnel, delete and
  restart; with any one capability of the set taken away, an apply fails.

systemd is not PID 1 here, so systemd-run cannot be used; setpriv sets the same
bounding set systemd would (for root, the bounding set is what the process gets).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runner.image.build import build_image
from runner.install import files
from runner.lab.topology import INET_IP, Lab, sh, wait_for
from runner.lab.vpnpeer import PeerConn, VpnPeer
from tests.integration.conftest import RUN_ID

R = RUN_ID
N1, N2, L1, V1 = (f"{x}-{R}" for x in ("n1", "n2", "l1", "v1"))
PSK = f"service-psk-{R}"
TICK = os.sysconf("SC_CLK_TCK")


def local(name: str, extra: str = "") -> str:
    return (f"apiVersion: nirunner/v1\nkind: NetworkInstance\nmetadata: {{name: {name}}}\n"
            f"spec:\n  type: local\n  uplink: eth0\n  subnet: 10.1.0.0/24\n"
            f"  dns: {{upstream: [{INET_IP}]}}\n{extra}")


@dataclass
class Site:
    lab: Lab
    peer: VpnPeer
    apps: list[str] = field(default_factory=list)

    def apply(self, name: str, text: str, check: bool = True) -> Any:
        f = self.lab.base / f"{name}.yaml"
        f.write_text(text)
        return self.lab.cli("apply", "-f", str(f), check=check)

    def status(self) -> dict[str, dict[str, Any]]:
        return {s["name"]: s for s in json.loads(self.lab.cli("status", "--json").stdout)}

    def tasks(self) -> dict[str, int]:
        """Running tasks by container id -> PID, from containerd (no supervisor needed)."""
        out = sh("ctr", "--address", self.lab.containerd.address, "-n", self.lab.namespace,
                 "tasks", "ls").stdout.splitlines()[1:]
        return {w[0]: int(w[1]) for w in (ln.split() for ln in out) if w[-1] == "RUNNING"}

    def app(self, name: str, ni: str) -> str:
        ns = self.lab.app(name, ni)
        self.apps.append(ns)
        return ns


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    lab = Lab(f"nrs{R}", image_archive=str(build_image().archive))
    try:
        lab.build()
        lab.start_dns({"www.example.test": INET_IP})
        lab.serve(lab.inet, "tcp", 7000, "inet")
        peer = VpnPeer(lab, 1)
        peer.build()
        peer.add(PeerConn("edge", "hq", "edge@svc", "10.50.0.0/24", psk=PSK.encode()))
        peer.start()
        peer.serve(7000, "site")
        lab.secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (lab.secrets_dir / "v1.psk").write_text(PSK + "\n")
        (lab.secrets_dir / "v1.psk").chmod(0o600)
        lab.start_containerd()
        lab.write_config(lab.image)
        yield Site(lab, peer)
    finally:
        lab.teardown()


# --- notify ----------------------------------------------------------------------------------


class FakeSystemd:
    """The service manager's end: a datagram socket; every message with its arrival
    (monotonic, and CLOCK_BOOTTIME to compare with process start times)."""

    def __init__(self, path: Path, on_ready: Any) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.got: list[tuple[float, float, str]] = []
        self.ready = threading.Event()
        self.on_ready = on_ready
        self.ready_seen: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            now = (time.monotonic(), time.clock_gettime(time.CLOCK_BOOTTIME))
            self.got.append((*now, msg))
            if "READY=1" in msg.split("\n") and not self.ready.is_set():
                self.ready_seen = self.on_ready()  # what is true the moment READY arrives
                self.ready.set()

    def messages(self, key: str) -> list[tuple[float, float, str]]:
        return [g for g in self.got if any(ln.startswith(key) for ln in g[2].split("\n"))]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def _started_at(pid: int) -> float:
    """A process's start, in seconds of CLOCK_BOOTTIME (/proc/PID/stat field 22)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text[text.rindex(")") + 2:].split()[19]) / TICK


def test_ready_after_the_nis_run_watchdog_pings_and_sigterm_leaves_tasks(site: Site) -> None:
    lab = site.lab
    lab.start_supervisor()
    site.apply("n", local(N1) + "---\n" + local(N2))
    cids = {f"ni-{N1}", f"ni-{N2}"}
    wait_for(lambda: cids <= set(site.tasks()), 30, "both NI tasks")
    lab.stop_supervisor()
    # the tasks die while no supervisor runs: the next one must start them again
    ctr = ["ctr", "--address", lab.containerd.address, "-n", lab.namespace]
    for cid in cids:
        sh(*ctr, "tasks", "kill", "-s", "SIGKILL", cid)
    wait_for(lambda: not cids & set(site.tasks()), 15, "the tasks to die")
    for cid in cids:
        sh(*ctr, "tasks", "rm", cid, check=False)

    systemd = FakeSystemd(lab.base / "notify.sock",
                          on_ready=lambda: (os.path.exists(lab.socket), site.tasks()))
    try:
        lab.start_supervisor(wait=False, env={"NOTIFY_SOCKET": str(systemd.path),
                                              "WATCHDOG_USEC": "1000000"})
        assert systemd.ready.wait(60), (systemd.got, (lab.base / "supervisor.log").read_text())
        (_, ready_boot, ready_msg) = systemd.messages("READY=1")[0]
        socket_up, running = systemd.ready_seen
        # READY=1 came after the first reconcile started both tasks, and the API is up
        assert socket_up
        assert cids <= set(running), running
        for cid in cids:
            assert _started_at(running[cid]) <= ready_boot + 1 / TICK
        assert f"STATUS=serving on {lab.socket}; 2 NIs" in ready_msg.split("\n")
        first = [m for _, _, m in systemd.got if m.startswith("STATUS=first reconcile")]
        assert first == ["STATUS=first reconcile: 2 NIs"]

        time.sleep(3.2)
        pings = [t for t, _, _ in systemd.messages("WATCHDOG=1") if t >= systemd.got[0][0]]
        gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
        assert len(pings) >= 5, systemd.got
        assert all(0.3 < g < 0.8 for g in gaps[-5:]), gaps  # every 0.5 s: half of 1 s

        proc = lab.supervisor
        assert proc is not None
        lab.stop_supervisor(signal.SIGTERM)
        assert proc.returncode == 0
        wait_for(lambda: bool(systemd.messages("STOPPING=1")), 5, "STOPPING=1")
        assert {c: p for c, p in site.tasks().items() if c in cids} == \
               {c: running[c] for c in cids}  # the same tasks, still running
    finally:
        systemd.close()
        if lab.supervisor is None:
            lab.start_supervisor()
        lab.cli("delete", N1, N2, check=False)
        lab.stop_supervisor()


# --- capabilities ----------------------------------------------------------------------------


def unit_sandbox() -> dict[str, str]:
    """The unit's capability and privilege settings, as shipped."""
    keep = ("CapabilityBoundingSet", "NoNewPrivileges", "UMask")
    out = {}
    for line in files.unit("/usr/bin/nirunner").splitlines():
        key, _, value = line.partition("=")
        if key in keep:
            out[key] = value
    assert set(out) == set(keep), out
    return out


def as_the_unit_runs_it(caps: list[str], sandbox: dict[str, str]) -> tuple[str, ...]:
    """setpriv with the unit's bounding set (for root, the capabilities it ends up with),
    no_new_privs and umask."""
    bounding = ",".join(["-all", *(f"+{c.removeprefix('CAP_').lower()}" for c in caps)])
    cmd = ["setpriv", f"--bounding-set={bounding}"]
    if sandbox["NoNewPrivileges"] == "yes":
        cmd.append("--no-new-privs")
    return ("sh", "-c", f'umask {sandbox["UMask"]} && exec "$@"', "sh", *cmd, "--")


def capabilities(pid: int) -> set[str]:
    """The effective capabilities of a process, by name."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("CapEff")), 16)
    decoded = sh("capsh", f"--decode={mask:x}").stdout.strip().split("=", 1)[1]
    return set(decoded.upper().split(",")) if decoded else set()


def test_the_units_capabilities_are_enough(site: Site) -> None:
    lab, peer = site.lab, site.peer
    sandbox = unit_sandbox()
    caps = sandbox["CapabilityBoundingSet"].split()
    lab.start_supervisor(wrap=as_the_unit_runs_it(caps, sandbox))
    try:
        assert lab.supervisor is not None
        assert capabilities(lab.supervisor.pid) == set(caps)
        site.apply("l1", local(L1, "  dhcp: {reservations: [{name: web, mac: "
                                   "'02:00:00:00:05:10', ip: 10.1.0.10}]}\n"
                                   "  portMaps: [{name: web, protocol: tcp, uplinkPort: "
                                   "8080, target: web, targetPort: 80}]\n"))
        site.apply("v1", (
            f"apiVersion: nirunner/v1\nkind: NetworkInstance\nmetadata: {{name: {V1}}}\n"
            f"spec:\n  type: vpn\n  uplink: eth0\n  subnet: 10.50.0.0/24\n  vpn:\n"
            f"    remote: {peer.address}\n"
            f"    auth: {{psk: {{secretFile: {lab.secrets_dir / 'v1.psk'}}}}}\n"
            "    localId: edge@svc\n    remoteId: hq\n    remoteSubnets: [10.99.1.0/24]\n"
            "    ike: {proposals: [aes256-sha256-modp2048]}\n"
            "    esp: {proposals: [aes256gcm16]}\n"))
        web = lab.app(f"w{R}", L1, mac="02:00:00:00:05:10")
        app = site.app(f"a{R}", L1)
        vapp = site.app(f"v{R}", V1)
        site.apps.append(web)
        assert lab.dhcp(web, "web") == "10.1.0.10"
        assert lab.dhcp(app, "app").startswith("10.1.0.")
        assert lab.dhcp(vapp, "vapp").startswith("10.50.0.")
        res = sh(sys.executable, "-m", "runner.lab.dnsq", "10.1.0.1", "www.example.test",
                 netns=app, check=False)
        assert res.stdout.split() == [INET_IP]
        assert lab.connect(app, "tcp", INET_IP, 7000) == "inet sees 198.51.100.2"
        lab.serve(web, "tcp", 80, "web")
        assert lab.connect(lab.wan, "tcp", "198.51.100.2", 8080) == "web sees 198.51.100.1"
        wait_for(lambda: site.status()[V1]["vpn"]["up"], 30, "the tunnel")
        assert lab.connect(vapp, "tcp", peer.site_host(), 7000) is not None
        st = site.status()
        assert st[L1]["state"] == "running" and st[V1]["state"] == "running", st
        assert "memory" in st[L1]["usage"]  # task metrics through containerd
        assert "table inet ni" in lab.cli("inspect", L1).stdout  # nft in the NI netns
        # written under UMask=0077: the state is root's alone, and still works
        assert (lab.state_dir / "desired.json").stat().st_mode & 0o077 == 0

        pids = site.tasks()  # a restart under the same limits adopts the tasks
        lab.stop_supervisor()
        lab.start_supervisor(wrap=as_the_unit_runs_it(caps, sandbox))
        assert site.tasks() == pids
        assert lab.connect(app, "tcp", INET_IP, 7000) == "inet sees 198.51.100.2"

        lab.cli("detach", L1, "--netns", f"/run/netns/{app}")
        lab.cli("delete", L1, V1)
        assert f"nr-{L1}" not in sh("ip", "netns", "list").stdout  # umount, netns gone
        assert not {f"ni-{L1}", f"ni-{V1}"} & set(site.tasks())
    finally:
        lab.stop_supervisor()


@pytest.mark.parametrize("missing,error", [
    ("CAP_NET_ADMIN", "Operation not permitted"),  # links, nft, sysctls
    ("CAP_SYS_ADMIN", f"add netns nr-m-{R}"),  # ip netns add: unshare, mounts
])
def test_each_capability_of_the_set_is_needed(site: Site, missing: str, error: str) -> None:
    lab = site.lab
    sandbox = unit_sandbox()
    caps = [c for c in sandbox["CapabilityBoundingSet"].split() if c != missing]
    assert len(caps) == len(sandbox["CapabilityBoundingSet"].split()) - 1
    name = f"m-{R}"
    lab.start_supervisor(wrap=as_the_unit_runs_it(caps, sandbox), wait=False)
    try:
        assert lab.supervisor is not None
        wait_for(lambda: os.path.exists(lab.socket) or lab.supervisor.poll() is not None, 30,
                 "the supervisor to serve or to give up")
        if lab.supervisor.poll() is not None:  # it cannot even watch the kernel: said so
            log = (lab.base / "supervisor.log").read_text()
            assert error in log and "Operation not permitted" in log, log[-2000:]
            assert "Traceback" not in log[-2000:]
        else:
            res = site.apply(name, local(name), check=False)
            assert res.returncode == 1, res.stdout
            assert error in res.stderr and "Operation not permitted" in res.stderr, res.stderr
        assert f"ni-{name}" not in site.tasks()
    finally:
        lab.stop_supervisor()
        lab.start_supervisor()  # with every capability: clean up what was half made
        lab.cli("delete", name, check=False)
        lab.stop_supervisor()
