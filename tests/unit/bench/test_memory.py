"""Memory per unit: a shared monitor is counted once and split among the units it serves."""

from __future__ import annotations

import pytest

from bench.memory import Proc, Unit, cgroup_memory, shares

MIB = 1 << 20


def test_a_shim_per_task_is_charged_whole() -> None:
    units = [Unit("a", 10, 1, 1 * MIB, MIB // 2), Unit("b", 20, 2, 2 * MIB, MIB)]
    fp = shares(units, {1: Proc(13 * MIB, 3 * MIB), 2: Proc(12 * MIB, 2 * MIB)})
    assert fp.monitors == 2 and fp.units == 2
    assert fp.rss() == [14 * MIB, 14 * MIB]
    assert fp.pss() == [4 * MIB, 4 * MIB]
    assert fp.cgroup_rss == [MIB // 2, MIB]


def test_a_shared_shim_is_split_among_its_tasks() -> None:
    # one shim (pid 1) serves a, b, c; another (pid 2) serves d alone
    units = [Unit(n, 10 + i, 1 if n != "d" else 2, MIB, 0) for i, n in enumerate("abcd")]
    fp = shares(units, {1: Proc(15 * MIB, 6 * MIB), 2: Proc(12 * MIB, 3 * MIB)})
    assert fp.monitors == 2
    assert fp.monitor_rss == [5 * MIB, 5 * MIB, 5 * MIB, 12 * MIB]
    assert fp.monitor_pss == [2 * MIB, 2 * MIB, 2 * MIB, 3 * MIB]
    # every byte of the monitors is counted exactly once
    assert sum(fp.monitor_rss) == 27 * MIB
    assert fp.rss() == [6 * MIB, 6 * MIB, 6 * MIB, 13 * MIB]


def test_daemons_serving_all_are_split_among_all() -> None:
    units = [Unit("a", 10, 1, MIB, 0), Unit("b", 11, 2, MIB, 0)]
    procs = {1: Proc(2 * MIB, MIB), 2: Proc(2 * MIB, MIB), 9: Proc(4 * MIB, 2 * MIB)}
    fp = shares(units, procs, daemons=[9])
    assert fp.daemon_rss == 2 * MIB and fp.daemon_pss == MIB
    assert fp.rss() == [5 * MIB, 5 * MIB]
    assert fp.pss() == [3 * MIB, 3 * MIB]


def test_no_units() -> None:
    fp = shares([], {}, daemons=[])
    assert fp.units == 0 and fp.rss() == [] and fp.monitors == 0


def test_a_monitor_not_read_is_an_error() -> None:
    with pytest.raises(KeyError):
        shares([Unit("a", 10, 7, MIB, 0)], {})


def test_cgroup_files_v1_and_v2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What memory.stat counts (and kernel memory), not the fuzzy usage counters."""
    v1 = tmp_path / "v1"
    v1.mkdir()
    (v1 / "memory.usage_in_bytes").write_text("1048576\n")  # a CPU's precharge in it
    (v1 / "memory.stat").write_text("cache 1024\nrss 512\ntotal_cache 4096\n"
                                    "total_rss 2048\n")
    assert cgroup_memory(v1) == (2048 + 4096, 2048)
    (v1 / "memory.kmem.usage_in_bytes").write_text("8192\n")
    assert cgroup_memory(v1) == (2048 + 4096 + 8192, 2048)
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.current").write_text("1048576\n")
    (v2 / "memory.stat").write_text("anon 3072\nfile 1024\nkernel_stack 512\n"
                                    "pagetables 256\nslab 128\n")
    assert cgroup_memory(v2) == (3072 + 1024 + 512 + 256 + 128, 3072)
    (v2 / "memory.stat").write_text("anon 3072\nfile 1024\nkernel 2000\nslab 128\n")
    assert cgroup_memory(v2) == (3072 + 1024 + 2000, 3072)
