"""The benchmark lab: the test lab (device, wan router, inet host, private containerd,
the supervisor) plus three more "device" netns on the same wan router, for the
hand-made floor, for CNI and for podman, so that none shares a netns (198.19/16:
runner.lab.vpnpeer's peers take 198.18.<i>.0/24):

    inet 192.0.2.10 -- wan -- device eth0 198.51.100.2   (nirunner's supervisor)
                         +--- fdev   eth0 198.19.0.2     (the floor: ip, nft, ctr by hand)
                         +--- cdev   eth0 198.19.1.2     (CNI plugins + ctr)
                         +--- pdev   eth0 198.19.2.2     (podman + netavark)

Everything carries the lab prefix (netns, /run/<prefix>, the containerd
namespaces `nrbench` of nirunner's NI tasks and `nrbench-ref` of the floor's and
CNI's tasks in the private containerd, podman's state under /run/<prefix>/podman)
and goes at teardown.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from runner.lab import pidfiles
from runner.lab.containerd import PrivateContainerd
from runner.lab.podman import LabPodman
from runner.lab.topology import INET_IP, Lab, LabError, sh, wait_for

BENCH_NS = "nrbench-ref"  # containerd namespace of the floor's and CNI's tasks
EXTRA_DEVICES = {  # name suffix -> (device address, gateway on the wan router, wan ifname)
    "fdev": ("198.19.0.2/24", "198.19.0.1/24", "w2"),
    "cdev": ("198.19.1.2/24", "198.19.1.1/24", "w3"),
    "pdev": ("198.19.2.2/24", "198.19.2.1/24", "w4"),
}
SERVE_SECONDS = 3600


class BenchLab:
    def __init__(self, prefix: str, image_archive: str = "") -> None:
        self.lab = Lab(prefix, image_archive=image_archive)
        self.lab.containerd = PrivateContainerd(self.lab.base / "containerd",
                                                (self.lab.namespace, BENCH_NS))
        self.prefix = prefix
        self.fdev = f"{prefix}-fdev"
        self.cdev = f"{prefix}-cdev"
        self.pdev = f"{prefix}-pdev"
        self.pdev_address = EXTRA_DEVICES["pdev"][0].split("/")[0]
        self.image = ""
        self.profile_dir: Path | None = None  # py-spy the supervisor into this dir
        self._profiles = 0
        self._py_spy: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> Path:
        return self.lab.base

    @property
    def address(self) -> str:
        return self.lab.containerd.address

    # -- building -------------------------------------------------------------------

    def build(self) -> None:
        lab = self.lab
        lab.build()
        lab.start_dns({"www.example.test": INET_IP})
        self.serve(lab.inet, "tcp", 7000, "inet")
        for suffix, (addr, gw, wan_if) in EXTRA_DEVICES.items():
            dev = f"{self.prefix}-{suffix}"
            sh("ip", "netns", "add", dev)
            sh("ip", "link", "set", "lo", "up", netns=dev)
            sh("ip", "link", "add", "eth0", "netns", dev, "type", "veth", "peer", "name",
               wan_if, "netns", lab.wan)
            sh("ip", "addr", "add", addr, "dev", "eth0", netns=dev)
            sh("ip", "link", "set", "eth0", "up", netns=dev)
            sh("ip", "addr", "add", gw, "dev", wan_if, netns=lab.wan)
            sh("ip", "link", "set", wan_if, "up", netns=lab.wan)
            sh("ip", "route", "add", "default", "via", gw.split("/")[0], netns=dev)
            sh("sysctl", "-qw", "net.ipv4.ip_forward=1", netns=dev)
        lab.start_containerd()
        self.image = lab.image
        from runner.containerd.client import Client
        from runner.containerd.images import import_archive

        with Client(self.address, BENCH_NS) as c:  # images are per containerd namespace
            import_archive(c, lab.image_archive)
        lab.write_config(self.image)

    def podman(self) -> LabPodman:
        """podman with the netavark backend in pdev, its state under the lab's dir."""
        return self._podman().setup()

    def _podman(self) -> LabPodman:
        return LabPodman(self.base / "podman", self.pdev, backend="netavark")

    def serve(self, netns: str, proto: str, port: int, name: str) -> subprocess.Popen[bytes]:
        p = self.lab.spawn(netns, sys.executable, "-m", "runner.lab.net", "serve", proto,
                       str(port), "--name", name, "--seconds", str(SERVE_SECONDS))
        kind = "-t" if proto == "tcp" else "-u"
        wait_for(lambda: bool(sh("ss", "-Hln", kind, f"sport = :{port}", netns=netns,
                                 check=False).stdout.strip()),
                 10, f"{proto} server on {netns}:{port}")
        return p

    def kill(self, p: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(5)

    # -- the supervisor, optionally under py-spy ------------------------------------

    def start_supervisor(self, timeout: float = 120) -> float:
        """Start it in the device netns; seconds until its API socket is there (the
        socket appears after the initial reconcile, so: until all NIs are adopted)."""
        lab = self.lab
        log = open(lab.base / "supervisor.log", "ab")  # noqa: SIM115 - child owns it
        cmd = ["nsenter", f"--net=/run/netns/{lab.device}", sys.executable, "-m",
               "runner.cli.main", "supervise", "--config", str(lab.config_path)]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lab.socket)  # a stale one would look like a ready supervisor
        t0 = time.monotonic()
        lab.supervisor = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=log, start_new_session=True)
        log.close()
        pidfiles.record(lab.pids, "supervisor", lab.supervisor.pid)
        sup = lab.supervisor
        wait_for(lambda: os.path.exists(lab.socket) or sup.poll() is not None,
                 timeout, "the supervisor's API socket", step=0.005)
        took = time.monotonic() - t0
        if sup.poll() is not None:
            raise LabError(f"supervisor exited; see {lab.base / 'supervisor.log'}")
        if self.profile_dir:
            self._start_py_spy(sup.pid)
        return took

    def _start_py_spy(self, pid: int) -> None:
        from bench.profile import py_spy_cmd

        assert self.profile_dir is not None
        self.stop_py_spy()
        self._profiles += 1
        out = str(self.profile_dir / f"py-spy-{self._profiles}.txt")
        self._py_spy = self.lab.track(
            subprocess.Popen(py_spy_cmd(pid, out), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL,
                             stderr=open(self.base / "py-spy.log", "ab"),
                             start_new_session=True), f"py-spy-{self._profiles}")
        time.sleep(0.5)

    def stop_py_spy(self) -> None:
        if self._py_spy is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._py_spy.pid, signal.SIGINT)
            try:
                self._py_spy.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self._py_spy.pid, signal.SIGKILL)
                self._py_spy.wait(5)
            self.lab.untrack(self._py_spy)
            self._py_spy = None

    def supervisor_pid(self) -> int:
        assert self.lab.supervisor is not None
        return self.lab.supervisor.pid

    # -- apps --------------------------------------------------------------------------

    def app_netns(self, tag: str) -> str:
        name = f"{self.prefix}-a{tag}"
        sh("ip", "netns", "add", name)
        return name

    def del_netns(self, *names: str) -> None:
        for n in names:
            sh("ip", "netns", "del", n, check=False)

    # -- teardown ----------------------------------------------------------------------

    def teardown(self) -> None:
        self.stop_py_spy()
        if (self.base / "podman").is_dir():  # its containers, netns and aardvark-dns
            self._podman().teardown()
        self.lab.teardown()  # supervisor, servers, containerd (all namespaces), netns, dirs
        for n in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
            if n.startswith("nr-bench-"):  # the bench's NIs, should the state be lost
                sh("ip", "netns", "del", n, check=False)


def leftovers(prefix: str) -> list[str]:
    """What a bench lab could leave behind; empty after a clean teardown."""
    out = [f"netns {n}" for n in (os.listdir("/run/netns") if os.path.isdir("/run/netns")
                                  else []) if n.startswith((prefix, "nr-bench-"))]
    if Path("/run", prefix).exists():
        out.append(f"dir /run/{prefix}")
    for d in Path("/sys/fs/cgroup").iterdir():
        if (d / BENCH_NS).is_dir():
            out.append(f"cgroup {d / BENCH_NS}")
        if (d / prefix).is_dir():  # the NI tasks' namespace: the lab prefix
            out.append(f"cgroup {d / prefix}")
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError):
                if f"/run/{prefix}/".encode() in (p / "cmdline").read_bytes():
                    out.append(f"process {p.name}")
    return out
