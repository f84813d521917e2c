"""Task metrics from containerd, decoded for cgroup v1 and v2 into one small value."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import any_pb2

from runner.pb.containerd.cgroups.v1 import metrics_pb2 as v1
from runner.pb.containerd.cgroups.v2 import metrics_pb2 as v2

_UNLIMITED = 1 << 62  # cgroup v1 reports "no limit" as a huge page-rounded number


@dataclass(frozen=True)
class Usage:
    cgroup: str  # "v1" or "v2"
    memory_bytes: int
    memory_limit: int | None
    memory_max_bytes: int | None
    oom_kills: int | None
    memory_failcnt: int | None
    cpu_ns: int
    cpu_throttled_periods: int
    pids: int
    pids_limit: int | None
    cpu_periods: int = 0  # CFS periods that ran (throttled ones included)
    cpu_throttled_ns: int = 0  # time the task was held back by its CPU limit


def limit(value: int) -> int | None:
    """A limit as containerd and cgroup v1 report it: 0 or a huge number is none."""
    return None if value == 0 or value >= _UNLIMITED else value


def decode(data: any_pb2.Any) -> Usage:
    """Decode the Any of a Metric; the type name says which cgroup version.

    containerd sends bare type names (no "type.googleapis.com/" prefix), which
    Any.Unpack() does not accept, so the value is parsed directly.
    """
    name = data.type_url.rsplit("/", 1)[-1]
    if name == v1.Metrics.DESCRIPTOR.full_name:
        m1 = v1.Metrics.FromString(data.value)
        oom = m1.memory_oom_control.oom_kill if m1.HasField("memory_oom_control") else None
        return Usage(
            cgroup="v1",
            memory_bytes=m1.memory.usage.usage,
            memory_limit=limit(m1.memory.usage.limit),
            memory_max_bytes=m1.memory.usage.max,
            oom_kills=oom,
            memory_failcnt=m1.memory.usage.failcnt,
            cpu_ns=m1.cpu.usage.total,
            cpu_throttled_periods=m1.cpu.throttling.throttled_periods,
            pids=m1.pids.current,
            pids_limit=limit(m1.pids.limit),
            cpu_periods=m1.cpu.throttling.periods,
            cpu_throttled_ns=m1.cpu.throttling.throttled_time,
        )
    if name == v2.Metrics.DESCRIPTOR.full_name:
        m2 = v2.Metrics.FromString(data.value)
        return Usage(
            cgroup="v2",
            memory_bytes=m2.memory.usage,
            memory_limit=limit(m2.memory.usage_limit),
            memory_max_bytes=None,
            oom_kills=m2.memory_events.oom_kill if m2.HasField("memory_events") else None,
            memory_failcnt=None,
            cpu_ns=m2.cpu.usage_usec * 1000,
            cpu_throttled_periods=m2.cpu.nr_throttled,
            pids=m2.pids.current,
            pids_limit=limit(m2.pids.limit),
            cpu_periods=m2.cpu.nr_periods,
            cpu_throttled_ns=m2.cpu.throttled_usec * 1000,
        )
    raise ValueError(f"unknown metrics type {data.type_url!r}")
