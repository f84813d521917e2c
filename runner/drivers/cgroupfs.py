"""A task's usage read from its cgroup's own files.

containerd's Metrics call asks each task's shim in turn, and the shim reads these
same files (and many more): ~1 ms per task, 100 ms for `status` of 100 NIs. The
handful of files status and the metrics need, read here, cost ~0.1 ms per task.
A task whose cgroup is not where its cgroupsPath says (another cgroup driver, a
supervisor in a container) is left to containerd (None).
"""

from __future__ import annotations

from pathlib import Path

from runner.containerd.metrics import Usage, limit

ROOT = Path("/sys/fs/cgroup")


def _read(path: str) -> str:
    with open(path, "rb", buffering=0) as f:  # kernel files: one read, no text layer
        return f.read().decode("ascii").strip()


def _int(path: str) -> int:
    return int(_read(path))


def _fields(path: str) -> dict[str, int]:
    """A flat-keyed file ("nr_periods 12\\n..."), as numbers."""
    out = {}
    for line in _read(path).splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def _max(path: str) -> int | None:
    text = _read(path)
    return None if text == "max" else limit(int(text))


def usage(cgroups_path: str, root: Path = ROOT) -> Usage | None:
    """The usage of the cgroup at `cgroups_path` ("/<namespace>/<container id>"), v1 or
    v2; None if it is not there (or was removed while being read)."""
    rel = cgroups_path.strip("/")
    try:
        if (root / "cgroup.controllers").exists():
            return _v2(f"{root}/{rel}")
        return _v1(str(root), rel)
    except (FileNotFoundError, ValueError):
        return None


def _v1(root: str, rel: str) -> Usage:
    mem, pids = f"{root}/memory/{rel}", f"{root}/pids/{rel}"
    throttling = _fields(f"{root}/cpu/{rel}/cpu.stat")
    return Usage(
        cgroup="v1",
        memory_bytes=_int(f"{mem}/memory.usage_in_bytes"),
        memory_limit=limit(_int(f"{mem}/memory.limit_in_bytes")),
        memory_max_bytes=_int(f"{mem}/memory.max_usage_in_bytes"),
        oom_kills=_fields(f"{mem}/memory.oom_control").get("oom_kill"),
        memory_failcnt=_int(f"{mem}/memory.failcnt"),
        cpu_ns=_int(f"{root}/cpuacct/{rel}/cpuacct.usage"),
        cpu_throttled_periods=throttling.get("nr_throttled", 0),
        pids=_int(f"{pids}/pids.current"),
        pids_limit=_max(f"{pids}/pids.max"),
        cpu_periods=throttling.get("nr_periods", 0),
        cpu_throttled_ns=throttling.get("throttled_time", 0),
    )


def _v2(cg: str) -> Usage:
    cpu = _fields(f"{cg}/cpu.stat")
    return Usage(
        cgroup="v2",
        memory_bytes=_int(f"{cg}/memory.current"),
        memory_limit=_max(f"{cg}/memory.max"),
        memory_max_bytes=None,
        oom_kills=_fields(f"{cg}/memory.events").get("oom_kill"),
        memory_failcnt=None,
        cpu_ns=cpu.get("usage_usec", 0) * 1000,
        cpu_throttled_periods=cpu.get("nr_throttled", 0),
        pids=_int(f"{cg}/pids.current"),
        pids_limit=_max(f"{cg}/pids.max"),
        cpu_periods=cpu.get("nr_periods", 0),
        cpu_throttled_ns=cpu.get("throttled_usec", 0) * 1000,
    )
