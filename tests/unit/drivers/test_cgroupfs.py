"""A task's usage from its cgroup files, v1 and v2 (a fake tree in tmp_path)."""

from __future__ import annotations

from pathlib import Path

from runner.drivers import cgroupfs

CG = "/nirunner/ni-alpha"
REL = CG.strip("/")


def _files(base: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")


def test_v1_reads_each_controller_and_no_limit_is_none(tmp_path: Path) -> None:
    rel = CG.strip("/")
    _files(tmp_path, {
        f"memory/{rel}/memory.usage_in_bytes": "3145728",
        f"memory/{rel}/memory.limit_in_bytes": "9223372036854771712",  # none
        f"memory/{rel}/memory.max_usage_in_bytes": "4194304",
        f"memory/{rel}/memory.failcnt": "2",
        f"memory/{rel}/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 1",
        f"cpuacct/{rel}/cpuacct.usage": "1500000000",
        f"cpu/{rel}/cpu.stat": "nr_periods 40\nnr_throttled 3\nthrottled_time 7000",
        f"pids/{rel}/pids.current": "2",
        f"pids/{rel}/pids.max": "64",
    })
    u = cgroupfs.usage(CG, tmp_path)
    assert u is not None
    assert (u.cgroup, u.memory_bytes, u.memory_limit, u.memory_max_bytes, u.memory_failcnt,
            u.oom_kills) == ("v1", 3 << 20, None, 4 << 20, 2, 1)
    assert (u.cpu_ns, u.cpu_periods, u.cpu_throttled_periods, u.cpu_throttled_ns) == (
        1_500_000_000, 40, 3, 7000)
    assert (u.pids, u.pids_limit) == (2, 64)


def test_v2_reads_one_directory(tmp_path: Path) -> None:
    _files(tmp_path, {
        "cgroup.controllers": "cpu memory pids",
        f"{REL}/memory.current": "1048576",
        f"{REL}/memory.max": "67108864",
        f"{REL}/memory.events": "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1",
        f"{REL}/cpu.stat": "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n"
                          "nr_periods 5\nnr_throttled 1\nthrottled_usec 30",
        f"{REL}/pids.current": "3",
        f"{REL}/pids.max": "max",
    })
    u = cgroupfs.usage(CG, tmp_path)
    assert u is not None
    assert (u.cgroup, u.memory_bytes, u.memory_limit, u.oom_kills, u.cpu_ns) == (
        "v2", 1 << 20, 64 << 20, 1, 2_500_000)
    assert (u.cpu_periods, u.cpu_throttled_periods, u.cpu_throttled_ns) == (5, 1, 30_000)
    assert (u.pids, u.pids_limit) == (3, None)


def test_a_cgroup_not_there_is_none(tmp_path: Path) -> None:
    assert cgroupfs.usage(CG, tmp_path) is None
    _files(tmp_path, {f"memory/{CG.strip('/')}/memory.usage_in_bytes": "garbage"})
    assert cgroupfs.usage(CG, tmp_path) is None  # half there, or unreadable: containerd's
