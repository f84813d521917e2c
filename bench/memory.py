"""Memory per NI (or per podman network), with shared monitors counted once.

Each unit (an NI's task, a podman container) is charged:
- its cgroup: the memory charged to it as memory.stat counts it, RSS, page cache and
  kernel memory (v1: total_rss + total_cache + memory.kmem.usage_in_bytes; v2: anon +
  file + kernel), and its RSS (total_rss / anon) alongside. Not memory.usage_in_bytes
  or memory.current: the kernel documents them as fuzzy (they include what a CPU has
  charged in advance, up to 64 pages; 4 of 6 NI tasks of a lab showed 1.2 MiB there
  against 0.95 MiB counted);
- a share of its monitor: containerd-shim-runc-v2, the parent of the task's init
  (the shim is a child subreaper), or podman's conmon. One runc v2 shim serves
  every task whose OCI spec carries the same `io.containerd.runc.v2.group`
  annotation: its RSS and its PSS are counted once and split evenly among the
  tasks it serves;
- a share of daemons serving every unit alike (podman's aardvark-dns).

The cgroups miss kernel memory charged elsewhere, as an NI's nft sets (made by the
supervisor) and netdevs: `mem_free()` before and after a bring-up of N NIs, divided by
N, is what the whole machine gave for each (the supervisor's and containerd's growth
and page cache included).

"RSS-equivalent" = cgroup charge + monitor RSS share + daemon RSS share; the PSS
variant takes the PSS of the monitor and daemons (their shared library pages
split among every process mapping them) instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SHIM = "containerd-shim-runc-v2"


@dataclass(frozen=True)
class Unit:
    name: str
    pid: int  # its init process
    monitor: int  # the shim's (or conmon's) pid
    cgroup: int  # charged bytes: RSS + page cache + kernel memory (memory.stat, kmem)
    cgroup_rss: int  # memory.stat total_rss (v1) / anon (v2)


@dataclass(frozen=True)
class Proc:
    rss: int
    pss: int


@dataclass
class Footprint:
    """Per unit, in the order of the units; JSON-friendly (plain lists)."""

    cgroup: list[int] = field(default_factory=list)
    cgroup_rss: list[int] = field(default_factory=list)
    monitor_rss: list[float] = field(default_factory=list)  # its share of its monitor
    monitor_pss: list[float] = field(default_factory=list)
    monitors: int = 0  # distinct monitor processes
    daemon_rss: float = 0.0  # per unit: its share of the daemons serving all
    daemon_pss: float = 0.0

    @property
    def units(self) -> int:
        return len(self.cgroup)

    def rss(self) -> list[float]:
        return [c + m + self.daemon_rss for c, m in zip(self.cgroup, self.monitor_rss,
                                                        strict=True)]

    def pss(self) -> list[float]:
        return [c + m + self.daemon_pss for c, m in zip(self.cgroup, self.monitor_pss,
                                                        strict=True)]


def shares(units: Sequence[Unit], procs: dict[int, Proc], daemons: Sequence[int] = ()
           ) -> Footprint:
    """Split each monitor among the units it serves and the daemons among all units."""
    served = Counter(u.monitor for u in units)
    fp = Footprint(monitors=len(served))
    for u in units:
        m = procs[u.monitor]
        fp.cgroup.append(u.cgroup)
        fp.cgroup_rss.append(u.cgroup_rss)
        fp.monitor_rss.append(m.rss / served[u.monitor])
        fp.monitor_pss.append(m.pss / served[u.monitor])
    if units:
        fp.daemon_rss = sum(procs[d].rss for d in daemons) / len(units)
        fp.daemon_pss = sum(procs[d].pss for d in daemons) / len(units)
    return fp


# -- reading /proc and the cgroup files ------------------------------------------------


def mem_free() -> int:
    """The machine's free memory (MemFree), bytes."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemFree:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemFree in /proc/meminfo")


def proc(pid: int) -> Proc:
    rss = pss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1]) * 1024
    return Proc(rss, pss)


def ppid(pid: int) -> int:
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text[text.rindex(")") + 2:].split()[1])


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def cgroup_dir(pid: int) -> Path:
    """The process's memory cgroup directory (v1 memory controller, else v2)."""
    v2 = None
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return Path("/sys/fs/cgroup/memory") / path.lstrip("/")
        if controllers == "":
            v2 = Path("/sys/fs/cgroup") / path.lstrip("/")
    if v2 is None:
        raise RuntimeError(f"process {pid}: no memory cgroup")
    return v2


V2_KERNEL = ("kernel_stack", "pagetables", "percpu", "sock", "slab")  # before "kernel" (5.18)


def cgroup_memory(d: Path) -> tuple[int, int]:
    """(charged bytes, RSS) of a memory cgroup directory (see the module doc)."""
    stat = {k: int(v) for k, v in
            (line.split() for line in (d / "memory.stat").read_text().splitlines())}
    kmem = d / "memory.kmem.usage_in_bytes"
    if (d / "memory.usage_in_bytes").exists():  # v1
        rss = stat.get("total_rss", 0)
        kernel = int(kmem.read_text()) if kmem.exists() else 0
        return rss + stat.get("total_cache", 0) + kernel, rss
    rss = stat.get("anon", 0)
    kernel = stat["kernel"] if "kernel" in stat else sum(stat.get(k, 0) for k in V2_KERNEL)
    return rss + stat.get("file", 0) + kernel, rss


def unit(name: str, pid: int, monitor: int = 0) -> Unit:
    """The unit of a task's (or container's) init; its monitor is its parent unless given."""
    usage, rss = cgroup_memory(cgroup_dir(pid))
    return Unit(name, pid, monitor or ppid(pid), usage, rss)


def containerd_units(address: str, namespace: str, ids: Sequence[str] | None = None
                     ) -> list[Unit]:
    """The running tasks of a containerd namespace (or those of `ids`), each with its shim."""
    from runner.containerd import tasks
    from runner.containerd.client import Client

    with Client(address, namespace) as c:
        infos = [t for t in tasks.list_tasks(c) if t.status == "running" and t.pid]
    want = set(ids) if ids is not None else None
    out = []
    for t in sorted(infos, key=lambda t: t.container_id):
        if want is not None and t.container_id not in want:
            continue
        u = unit(t.container_id, t.pid)
        if not comm(u.monitor).startswith(SHIM[:15]):  # comm is cut at 15 characters
            raise RuntimeError(f"task {t.container_id}: its parent {u.monitor} is "
                               f"{comm(u.monitor)!r}, not a {SHIM}")
        out.append(u)
    return out


def footprint(units: Sequence[Unit], daemons: Sequence[int] = ()) -> Footprint:
    pids = {u.monitor for u in units} | set(daemons)
    return shares(units, {p: proc(p) for p in pids}, daemons)
