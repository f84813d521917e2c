"""Scale: N NIs at once; then the supervisor's footprint, its idle cost, a no-op
apply, an in-process reconcile pass, restarts with N NIs (time to all adopted),
and the delete of all of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import probe
from bench.bringup import PORT_BASE, Run, _finish, manifest, ni_name
from bench.lab import BenchLab
from runner.api.client import ApiClient

REPO = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Scale:
    n: int
    up: Run | None = None
    sup_rss: int = 0
    sup_hwm: int = 0
    sup_threads: int = 0
    ni_cgroup: list[int] = field(default_factory=list)  # memory.usage_in_bytes per task
    ni_cgroup_rss: list[int] = field(default_factory=list)  # total_rss of memory.stat
    shim_rss: list[int] = field(default_factory=list)
    shim_pss: list[int] = field(default_factory=list)
    idle_window: float = 0.0
    idle_cpu: float = 0.0  # CPU seconds of the supervisor in the window
    noop_apply: list[float] = field(default_factory=list)
    status_call: list[float] = field(default_factory=list)
    reconcile: list[float] = field(default_factory=list)  # in-process pass, nothing to do
    reconcile_cpu: list[float] = field(default_factory=list)  # its CPU time (own process)
    reconcile_steps: dict = field(default_factory=dict)
    restart: list[float] = field(default_factory=list)
    restarted_tasks: int = 0  # tasks whose pid changed across restarts (should be 0)
    delete_all: float = 0.0


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def _pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def shims(address: str) -> dict[str, int]:
    """container id -> shim pid, for the lab's containerd."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if argv and argv[0].endswith("containerd-shim-runc-v2") and address in argv \
                and "-id" in argv:
            out[argv[argv.index("-id") + 1]] = int(d.name)
    return out


def cgroup_memory(cid: str, namespace: str) -> tuple[int, int]:
    d = Path("/sys/fs/cgroup/memory") / namespace / cid
    if d.is_dir():  # cgroup v1
        usage = int((d / "memory.usage_in_bytes").read_text())
        stat = dict(line.split() for line in (d / "memory.stat").read_text().splitlines())
        return usage, int(stat.get("total_rss", 0))
    d = Path("/sys/fs/cgroup") / namespace / cid  # v2
    usage = int((d / "memory.current").read_text())
    stat = dict(line.split() for line in (d / "memory.stat").read_text().splitlines())
    return usage, int(stat.get("anon", 0))


def _pids(api: ApiClient) -> dict[str, int]:
    return {s["name"]: s["task"]["pid"] for s in api.status([])}


def inproc(blab: BenchLab, *args: str) -> dict:
    cmd = ["nsenter", f"--net=/run/netns/{blab.lab.device}", sys.executable, "-m",
           "bench.inproc", "--config", str(blab.lab.config_path), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    if res.returncode != 0:
        raise RuntimeError(f"bench.inproc {' '.join(args)}: {res.stderr.strip()[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def run(blab: BenchLab, n: int, restarts: int, noops: int, idle_window: float,
        rounds: int, cprofile: str | None = None, timeout: float = 600) -> Scale:
    sc = Scale(n)
    names = [ni_name(i) for i in range(n)]
    apps = [blab.app_netns(f"s-{i}") for i in range(n)]
    docs = [(f"{nm}.yaml", manifest(nm, PORT_BASE + i)) for i, nm in enumerate(names)]
    try:
        with ApiClient(blab.lab.socket) as api:
            t0 = time.monotonic()
            api.apply(docs)
            t_setup = time.monotonic()
            for nm, app in zip(names, apps, strict=True):
                api.attach(nm, f"/run/netns/{app}", "eth0")
            t_plug = time.monotonic()
            ready = probe.check_all(apps, t0 + timeout)
            sc.up = _finish(Run("nirunner", n), t0, t_setup, t_plug, ready)
        time.sleep(1.0)
        pid = blab.supervisor_pid()
        sc.sup_rss, sc.sup_hwm = _status_kb(pid, "VmRSS"), _status_kb(pid, "VmHWM")
        sc.sup_threads = len(os.listdir(f"/proc/{pid}/task"))
        sh = shims(blab.address)
        for nm in names:
            cid = f"ni-{nm}"
            usage, rss = cgroup_memory(cid, blab.lab.namespace)
            sc.ni_cgroup.append(usage)
            sc.ni_cgroup_rss.append(rss)
            if cid in sh:
                sc.shim_rss.append(_status_kb(sh[cid], "VmRSS"))
                sc.shim_pss.append(_pss(sh[cid]))
        # idle: nothing changes; the daemon should sleep (a full resync runs every 60 s)
        c0, w0 = cpu_seconds(pid), time.monotonic()
        time.sleep(idle_window)
        sc.idle_cpu, sc.idle_window = cpu_seconds(pid) - c0, time.monotonic() - w0
        with ApiClient(blab.lab.socket) as api:
            for _ in range(noops):
                t = time.monotonic()
                api.apply(docs)
                sc.noop_apply.append(time.monotonic() - t)
            for _ in range(3):
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
            t = time.monotonic()
            api.delete(names)
            sc.delete_all = time.monotonic() - t
    finally:
        blab.del_netns(*apps)
    return sc

