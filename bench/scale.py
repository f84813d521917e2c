"""Scale: the curve, N NIs at once for each N (1, 10, 50, 100, 250 in the full run):
bring-up until all are ready, attach with N NIs up, memory per NI (shared shims
counted once), the supervisor's RSS, delete of all N; and, at one N (100), the
details the targets name: idle CPU, no-op apply, status, an in-process reconcile
pass, restarts until all adopted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import memory
from bench.bringup import PORT_BASE, Run, manifest, nirunner_footprint, nirunner_up
from bench.lab import BenchLab
from runner.api.client import ApiClient

REPO = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
EXTRA_ATTACHES = 5  # attach + detach calls at each N, once all NIs are ready
FREE_MIN_N = 50  # MemFree moves by a few MiB on its own: per NI, only meaningful over many


@dataclass
class Point:
    n: int
    up: Run | None = None  # its attach list: the bring-up's attach calls
    attach: list[float] = field(default_factory=list)  # extra attaches, N NIs ready
    detach: list[float] = field(default_factory=list)  # and their detaches
    sup_rss: int = 0
    sup_hwm: int = 0
    sup_threads: int = 0
    footprint: memory.Footprint | None = None
    delete: float = 0.0  # delete of all N NIs (API)
    more: list[float] = field(default_factory=list)  # all-ready times of extra rounds
    free_drop: int = 0  # MemFree lost from before the apply to all N ready, bytes

    def totals(self) -> list[float]:
        """All-ready time of every round at this N (the measured one first)."""
        return ([self.up.total] if self.up else []) + self.more

    def attaches(self) -> list[float]:
        """Every attach call made with N NIs applied."""
        return (self.up.attach if self.up else []) + self.attach


@dataclass
class Scale:
    """Details at one N."""

    n: int
    idle_window: float = 0.0
    idle_cpu: float = 0.0  # CPU seconds of the supervisor in the window
    noop_apply: list[float] = field(default_factory=list)
    status_call: list[float] = field(default_factory=list)
    reconcile: list[float] = field(default_factory=list)  # in-process pass, nothing to do
    reconcile_cpu: list[float] = field(default_factory=list)  # its CPU time (own process)
    reconcile_steps: dict = field(default_factory=dict)
    restart: list[float] = field(default_factory=list)
    restarted_tasks: int = 0  # tasks whose pid changed across restarts (should be 0)


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def _pids(api: ApiClient) -> dict[str, int]:
    return {s["name"]: s["task"]["pid"] for s in api.status([])}


def inproc(blab: BenchLab, *args: str) -> dict:
    cmd = ["nsenter", f"--net=/run/netns/{blab.lab.device}", sys.executable, "-m",
           "bench.inproc", "--config", str(blab.lab.config_path), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    if res.returncode != 0:
        raise RuntimeError(f"bench.inproc {' '.join(args)}: {res.stderr.strip()[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def point(blab: BenchLab, n: int, at_n: Callable[[list[str]], None] | None = None,
          timeout: float = 900) -> Point:
    """N NIs up, measured, `at_n(names)` while they are up, then all deleted (timed)."""
    p = Point(n)
    apps = [blab.app_netns(f"n{n}-{i}") for i in range(n)]
    extra = [blab.app_netns(f"x{n}-{j}") for j in range(EXTRA_ATTACHES)]
    names: list[str] = []
    try:
        with ApiClient(blab.lab.socket, timeout=timeout) as api:
            p.up = Run("nirunner", n)
            free0 = 0
            if n >= FREE_MIN_N:
                time.sleep(1.0)  # the kernel frees the last point's netns a moment after
                free0 = memory.mem_free()
            names = nirunner_up(blab, api, n, apps, p.up, timeout=timeout)
            time.sleep(1.0)  # dnsmasq and the supervisor settle after the probes
            if free0:
                p.free_drop = free0 - memory.mem_free()
            pid = blab.supervisor_pid()
            p.sup_rss, p.sup_hwm = _status_kb(pid, "VmRSS"), _status_kb(pid, "VmHWM")
            p.sup_threads = len(os.listdir(f"/proc/{pid}/task"))
            p.footprint = nirunner_footprint(blab)
            for j, app in enumerate(extra):
                t = time.monotonic()
                api.attach(names[j % n], f"/run/netns/{app}", "eth0")
                p.attach.append(time.monotonic() - t)
            for j, app in enumerate(extra):
                t = time.monotonic()
                api.detach(names[j % n], f"/run/netns/{app}", "eth0")
                p.detach.append(time.monotonic() - t)
        if at_n is not None:
            at_n(names)
        with ApiClient(blab.lab.socket, timeout=timeout) as api:
            t = time.monotonic()
            api.delete(names)
            p.delete = time.monotonic() - t
    finally:
        blab.del_netns(*apps, *extra)
    return p


def details(blab: BenchLab, names: list[str], restarts: int, noops: int, idle_window: float,
            rounds: int, cprofile: str | None = None, timeout: float = 600) -> Scale:
    """With `names` up (those of point()): idle CPU, no-op apply, status, an in-process
    reconcile pass (daemon stopped), then restarts until all adopted."""
    n = len(names)
    sc = Scale(n)
    docs = [(f"{nm}.yaml", manifest(nm, PORT_BASE + i)) for i, nm in enumerate(names)]
    pid = blab.supervisor_pid()
    # idle: nothing changes; the daemon should sleep
    c0, w0 = cpu_seconds(pid), time.monotonic()
    time.sleep(idle_window)
    sc.idle_cpu, sc.idle_window = cpu_seconds(pid) - c0, time.monotonic() - w0
    with ApiClient(blab.lab.socket) as api:
        for _ in range(noops):
            t = time.monotonic()
            api.apply(docs)
            sc.noop_apply.append(time.monotonic() - t)
        for _ in range(max(3, noops)):
            t = time.monotonic()
            api.status([])
            sc.status_call.append(time.monotonic() - t)
        before = _pids(api)
    for i in range(restarts):
        blab.lab.stop_supervisor()
        if i == 0:
            extra = ["--cprofile", cprofile] if cprofile else []
            res = inproc(blab, "reconcile", "--rounds", str(rounds), *extra)
            sc.reconcile, sc.reconcile_steps = res["rounds"], res["steps"]
            sc.reconcile_cpu = res["cpu"]
        sc.restart.append(blab.start_supervisor(timeout=timeout))
    with ApiClient(blab.lab.socket) as api:
        after = _pids(api)
    sc.restarted_tasks = sum(1 for k in before if after.get(k) != before[k])
    return sc
