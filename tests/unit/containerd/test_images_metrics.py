from __future__ import annotations

import hashlib

import pytest
from google.protobuf import any_pb2

from runner.containerd import metrics
from runner.containerd.images import chain_ids
from runner.pb.containerd.cgroups.v1 import metrics_pb2 as v1
from runner.pb.containerd.cgroups.v2 import metrics_pb2 as v2


def test_chain_ids_follow_the_oci_rule() -> None:
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    second = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    assert chain_ids([a]) == [a]
    assert chain_ids([a, b]) == [a, second]


def test_decode_cgroup_v1() -> None:
    m = v1.Metrics()
    m.memory.usage.usage = 5 << 20
    m.memory.usage.limit = 64 << 20
    m.memory.usage.failcnt = 3
    m.memory_oom_control.oom_kill = 1
    m.cpu.usage.total = 12345
    m.cpu.throttling.periods = 40
    m.cpu.throttling.throttled_periods = 7
    m.cpu.throttling.throttled_time = 9_000_000
    m.pids.current = 2
    m.pids.limit = 128
    data = any_pb2.Any()
    data.Pack(m, type_url_prefix="")
    u = metrics.decode(data)
    assert (u.cgroup, u.memory_bytes, u.memory_limit, u.oom_kills, u.memory_failcnt) == (
        "v1", 5 << 20, 64 << 20, 1, 3)
    assert (u.cpu_ns, u.pids, u.pids_limit) == (12345, 2, 128)
    assert (u.cpu_periods, u.cpu_throttled_periods, u.cpu_throttled_ns) == (40, 7, 9_000_000)


def test_decode_cgroup_v1_unlimited() -> None:
    m = v1.Metrics()
    m.memory.usage.limit = 9223372036854771712  # what v1 reports for "no limit"
    data = any_pb2.Any()
    data.Pack(m)
    assert metrics.decode(data).memory_limit is None
    assert metrics.decode(data).pids_limit is None


def test_decode_cgroup_v2() -> None:
    m = v2.Metrics()
    m.memory.usage = 7 << 20
    m.memory.usage_limit = 32 << 20
    m.memory_events.oom_kill = 2
    m.cpu.usage_usec = 10
    m.cpu.nr_periods = 30
    m.cpu.nr_throttled = 3
    m.cpu.throttled_usec = 250
    m.pids.current = 4
    m.pids.limit = 50
    data = any_pb2.Any()
    data.Pack(m)
    u = metrics.decode(data)
    assert (u.cgroup, u.memory_bytes, u.memory_limit, u.oom_kills, u.cpu_ns, u.pids) == (
        "v2", 7 << 20, 32 << 20, 2, 10_000, 4)
    assert (u.cpu_periods, u.cpu_throttled_periods, u.cpu_throttled_ns) == (30, 3, 250_000)


def test_decode_unknown_type() -> None:
    with pytest.raises(ValueError, match="unknown metrics type"):
        metrics.decode(any_pb2.Any(type_url="x/y.Z"))
