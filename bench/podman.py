"""Side by side with podman + netavark (Debian 12: podman 4.3, netavark and
aardvark-dns 1.4), for the same shape: N networks with one container each.

podman: in the lab netns `pdev` (on the wan router like the floor's device), its
  state under the lab's /run dir (runner.lab.podman, netavark backend). Per
  network: `podman network create --subnet 10.89.<i>.0/24` (distinct subnets:
  podman refuses a second network with a subnet in use; DNS enabled, podman's
  default, so aardvark-dns serves them) and `podman run -d` of busybox httpd on
  it with a port map (`-p <port>:80`), one network after the other, in one shell
  script. Ready = a TCP connection from the wan router to pdev's address and the
  mapped port answered by the container's httpd (netavark's DNAT, the bridge,
  the container up).
nirunner: N NIs applied (API) with one app attached each; ready = its usual
  DHCP offer, lease and TCP through the NAT to the inet host answered.

Memory per network: podman: the container's cgroup, its conmon (RSS and PSS) and
a share of aardvark-dns; nirunner: the NI task's cgroup and its shim's share.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bench import bringup, memory, probe
from bench.bringup import Run
from bench.lab import BenchLab
from runner.lab.podman import LabPodman

PORT0 = 30000
SUBNET = "10.89.{i}.0/24"


@dataclass
class PodmanSide:
    version: str = ""
    runs: dict[str, list[Run]] = field(default_factory=dict)  # "podman 20", "nirunner 1"
    delete: dict[str, list[float]] = field(default_factory=dict)  # of all N networks


def version() -> str:
    out = []
    for cmd in (["podman", "--version"], ["/usr/lib/podman/netavark", "--version"]):
        res = subprocess.run(cmd, capture_output=True, text=True)
        out.append(res.stdout.strip() or res.stderr.strip())
    return ", ".join(out)


def up_script(pm: LabPodman, n: int, prefix: str) -> str:
    """Create N networks and run one httpd container on each, one after the other."""
    lines = ["set -e"]
    for i in range(n):
        net, sub = f"{prefix}-n{i}", SUBNET.format(i=i)
        lines.append(shlex.join(pm.command("network", "create", "--subnet", sub, net))
                     + " >/dev/null")
        lines.append(shlex.join(pm.command(
            "run", "-d", "--name", f"{prefix}-c{i}", "--network", net,
            "--ip", sub.replace(".0/24", ".2"), "-p", f"{PORT0 + i}:80", pm.image,
            "httpd", "-f", "-p", "80", "-h", "/www")) + " >/dev/null")
    return "\n".join(lines) + "\n"


def _script(pm: LabPodman, text: str, path: str) -> None:
    with open(path, "w") as f:
        f.write(text)
    res = subprocess.run(["bash", path], capture_output=True, text=True, env=pm.env(),
                         timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"podman script failed: {res.stderr.strip()[-2000:]}")


def podman_run(blab: BenchLab, pm: LabPodman, n: int, tag: str, side: PodmanSide,
               footprint: bool, timeout: float = 180) -> Run:
    prefix = f"{blab.prefix}{tag}"
    run = Run("podman", n)
    addr = blab.pdev_address
    try:
        t0 = time.monotonic()
        _script(pm, up_script(pm, n, prefix), str(blab.base / f"podman-{tag}.sh"))
        t_setup = time.monotonic()

        def answered(i: int) -> float:
            return probe.in_netns(blab.lab.wan, lambda: probe.tcp_works(
                addr, PORT0 + i, t0 + timeout))

        with ThreadPoolExecutor(min(16, n)) as pool:
            done = list(pool.map(answered, range(n)))
        run.setup = run.plugged = t_setup - t0
        run.ready = [t - t0 for t in done]
        run.total = max(run.ready)
        if footprint:
            run.footprint = _podman_footprint(pm, [f"{prefix}-c{i}" for i in range(n)])
    finally:
        t = time.monotonic()
        names = [f"{prefix}-c{i}" for i in range(n)]
        pm.run("rm", "-f", "-t", "0", *names, check=False, timeout=300)
        pm.run("network", "rm", "-f", *[f"{prefix}-n{i}" for i in range(n)], check=False,
               timeout=300)
        side.delete.setdefault(f"podman {n}", []).append(time.monotonic() - t)
    return run


def _podman_footprint(pm: LabPodman, containers: list[str]) -> memory.Footprint:
    out = pm.run("inspect", "--format", "{{.State.Pid}} {{.State.ConmonPid}}", *containers)
    units = []
    for name, line in zip(containers, out.stdout.split("\n"), strict=False):
        pid, conmon = (int(x) for x in line.split())
        units.append(memory.unit(name, pid, conmon))
    daemons = []
    pidfile = pm.netavark_run / "aardvark-dns" / "aardvark.pid"
    if pidfile.exists():
        daemons.append(int(pidfile.read_text().split()[0]))
    return memory.footprint(units, daemons)


def nirunner_run(blab: BenchLab, n: int, tag: str, side: PodmanSide, footprint: bool) -> Run:
    from runner.api.client import ApiClient

    apps = [blab.app_netns(f"{tag}-{i}") for i in range(n)]
    run = Run("nirunner", n)
    try:
        with ApiClient(blab.lab.socket) as api:
            names = bringup.nirunner_up(blab, api, n, apps, run)
            if footprint:
                run.footprint = bringup.nirunner_footprint(blab)
            t = time.monotonic()
            api.delete(names)
            side.delete.setdefault(f"nirunner {n}", []).append(time.monotonic() - t)
    finally:
        blab.del_netns(*apps)
    return run


def run(blab: BenchLab, sizes: tuple[int, ...], reps: int,
        say: Callable[[str], None] = lambda _: None) -> PodmanSide:
    """Each size `reps` times (larger ones reps // 2), podman and nirunner alternating."""
    side = PodmanSide(version())
    pm = blab.podman()
    try:
        pm.import_busybox()
        for n in sizes:
            for k in range(reps if n == 1 else max(1, reps // 2)):
                say(f"podman + netavark side by side: {n} network(s), round {k + 1}")
                first = k == 0  # memory once per size
                side.runs.setdefault(f"podman {n}", []).append(
                    podman_run(blab, pm, n, f"p{n}r{k}", side, footprint=first))
                side.runs.setdefault(f"nirunner {n}", []).append(
                    nirunner_run(blab, n, f"q{n}r{k}", side, footprint=first))
    finally:
        pm.teardown()
    return side
