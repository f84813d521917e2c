"""A sample as Prometheus metric families (pure: a Sample in, families out).

Labels are bounded: an NI, a port map, a direction, an SA kind, a state or
service from a small fixed set. Never a flow, an app address or a MAC.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from runner.metrics.sample import NISample, Sample
from runner.net import names

NI_STATES = ("running", "degraded", "pending", "failed", "unknown")
VPN_UP = {"ike": ("ESTABLISHED", "REKEYING"), "child": ("INSTALLED", "REKEYING")}


def families(s: Sample) -> Iterator[Metric]:
    yield from _ni_families(s.nis)
    yield from _vpn_families([n for n in s.nis if n.vpn is not None])
    nis = GaugeMetricFamily("nirunner_nis", "Network instances in the desired state")
    nis.add_metric([], len(s.nis))
    yield nis
    up = GaugeMetricFamily("nirunner_containerd_up", "1 when containerd answered the last "
                                                     "sample's calls")
    up.add_metric([], 1 if s.containerd_up else 0)
    yield up
    err = GaugeMetricFamily("nirunner_items_in_error", "Items whose last operation failed, "
                                                       "by item kind", labels=["kind"])
    for kind, n in sorted(s.items_in_error.items()):
        err.add_metric([kind], n)
    yield err
    took = GaugeMetricFamily("nirunner_metrics_sample_seconds",
                             "What taking the current sample cost (reads outside the lock)")
    took.add_metric([], s.seconds)
    yield took
    age = GaugeMetricFamily("nirunner_metrics_sample_timestamp_seconds",
                            "When the current sample was taken (Unix time)")
    age.add_metric([], s.taken)
    yield age


def _ni_families(nis: tuple[NISample, ...]) -> Iterator[Metric]:
    L = ["ni"]
    info = GaugeMetricFamily("nirunner_ni_info", "An NI: its type and uplink",
                             labels=["ni", "type", "uplink"])
    state = GaugeMetricFamily("nirunner_ni_state", "1 for the NI's state (as `status` shows "
                              "it), 0 for the others", labels=["ni", "state"])
    restarts = CounterMetricFamily("nirunner_ni_task_restarts", "Restarts of the NI's task "
                                   "after it exited (since its last apply)", labels=L)
    running = GaugeMetricFamily("nirunner_ni_task_running", "1 while the NI's task runs",
                                labels=L)
    mem = GaugeMetricFamily("nirunner_ni_memory_bytes", "Memory used by the NI's task "
                            "(cgroup usage, page cache included)", labels=L)
    mem_limit = GaugeMetricFamily("nirunner_ni_memory_limit_bytes", "The NI's memory limit",
                                  labels=L)
    cpu = CounterMetricFamily("nirunner_ni_cpu_seconds", "CPU time used by the NI's task",
                              labels=L)
    cpu_limit = GaugeMetricFamily("nirunner_ni_cpu_limit_cores", "The NI's CPU limit",
                                  labels=L)
    periods = CounterMetricFamily("nirunner_ni_cpu_periods", "CFS periods in which the "
                                  "NI's task ran", labels=L)
    throttled = CounterMetricFamily("nirunner_ni_cpu_throttled_periods", "Periods in which "
                                    "the NI's task was held back by its CPU limit", labels=L)
    throttled_s = CounterMetricFamily("nirunner_ni_cpu_throttled_seconds", "Time the NI's "
                                      "task was held back by its CPU limit", labels=L)
    pids = GaugeMetricFamily("nirunner_ni_pids", "Processes in the NI's task", labels=L)
    pids_limit = GaugeMetricFamily("nirunner_ni_pids_limit", "The NI's pids limit", labels=L)
    oom = CounterMetricFamily("nirunner_ni_oom_kills", "Processes of the NI's task killed "
                              "for want of memory", labels=L)
    apps = GaugeMetricFamily("nirunner_ni_apps", "Apps of the NI: attached or holding an "
                             "unexpired lease, each once", labels=L)
    leases = GaugeMetricFamily("nirunner_ni_leases", "Unexpired DHCP leases of the NI",
                               labels=L)
    attached = GaugeMetricFamily("nirunner_ni_attached", "Apps plugged in through the API",
                                 labels=L)
    service = GaugeMetricFamily("nirunner_ni_service_running", "1 while a service of the "
                                "NI's task runs (ni-init's view)", labels=["ni", "service"])
    t_bytes = CounterMetricFamily("nirunner_ni_transit_bytes", "Bytes through the NI's "
                                  "transit link, into the NI (in) or out of it (out)",
                                  labels=["ni", "direction"])
    t_packets = CounterMetricFamily("nirunner_ni_transit_packets", "Packets through the NI's "
                                    "transit link", labels=["ni", "direction"])
    pm_bytes = CounterMetricFamily("nirunner_port_map_bytes", "Bytes of a port map's flows, "
                                   "both directions", labels=["ni", "port_map"])
    pm_packets = CounterMetricFamily("nirunner_port_map_packets", "Packets of a port map's "
                                     "flows, both directions", labels=["ni", "port_map"])
    for n in nis:
        ni = [n.name]
        info.add_metric([n.name, n.type, n.uplink], 1)
        for st in NI_STATES:
            state.add_metric([n.name, st], 1 if n.state == st else 0)
        restarts.add_metric(ni, n.restarts)
        running.add_metric(ni, 1 if n.task_running else 0)
        mem_limit.add_metric(ni, n.memory_limit)
        cpu_limit.add_metric(ni, n.cpu_limit)
        pids_limit.add_metric(ni, n.pids_limit)
        u = n.usage
        if u is not None:
            mem.add_metric(ni, u.memory_bytes)
            cpu.add_metric(ni, u.cpu_ns / 1e9)
            periods.add_metric(ni, u.cpu_periods)
            throttled.add_metric(ni, u.cpu_throttled_periods)
            throttled_s.add_metric(ni, u.cpu_throttled_ns / 1e9)
            pids.add_metric(ni, u.pids)
            if u.oom_kills is not None:
                oom.add_metric(ni, u.oom_kills)
        apps.add_metric(ni, n.apps)
        leases.add_metric(ni, n.leases)
        attached.add_metric(ni, n.attached)
        for svc, st in sorted(n.services.items()):
            service.add_metric([n.name, svc], 1 if st == "running" else 0)
        for direction in (names.TRANSIT_IN, names.TRANSIT_OUT):
            if direction in n.transit:
                pkts, byts = n.transit[direction]
                t_packets.add_metric([n.name, direction], pkts)
                t_bytes.add_metric([n.name, direction], byts)
        for pm, (pkts, byts) in sorted(n.port_maps.items()):
            pm_packets.add_metric([n.name, pm], pkts)
            pm_bytes.add_metric([n.name, pm], byts)
    yield from (info, state, running, restarts, mem, mem_limit, cpu, cpu_limit, periods,
                throttled, throttled_s, pids, pids_limit, oom, apps, leases, attached,
                service, t_bytes, t_packets, pm_bytes, pm_packets)


def _vpn_families(nis: list[NISample]) -> Iterator[Metric]:
    up = GaugeMetricFamily("nirunner_vpn_up", "1 while the VPN NI's tunnel carries traffic "
                           "(CHILD SA installed)", labels=["ni"])
    sa = GaugeMetricFamily("nirunner_vpn_sa_up", "1 while the IKE SA is established / the "
                           "CHILD SA installed", labels=["ni", "sa"])
    sa_state = GaugeMetricFamily("nirunner_vpn_sa_state", "1 for the SA's state as charon "
                                 "names it (DOWN when there is none)",
                                 labels=["ni", "sa", "state"])
    byts = CounterMetricFamily("nirunner_vpn_bytes", "Bytes through the CHILD SA (starts "
                               "again at 0 with each new SA)", labels=["ni", "direction"])
    pkts = CounterMetricFamily("nirunner_vpn_packets", "Packets through the CHILD SA",
                               labels=["ni", "direction"])
    rekeys = CounterMetricFamily("nirunner_vpn_rekeys", "SAs replaced by new ones while up "
                                 "(rekeys), as seen between samples", labels=["ni", "sa"])
    for n in nis:
        st = n.vpn or {}
        up.add_metric([n.name], 1 if st.get("up") else 0)
        for kind in ("ike", "child"):
            s = (st.get(kind) or {}).get("state") or "DOWN"
            sa.add_metric([n.name, kind], 1 if s in VPN_UP[kind] else 0)
            sa_state.add_metric([n.name, kind, s], 1)
            rekeys.add_metric([n.name, kind], n.vpn_rekeys.get(kind, 0))
        child = st.get("child") or {}
        for direction, key in (("in", "In"), ("out", "Out")):
            byts.add_metric([n.name, direction], int(child.get(f"bytes{key}", 0)))
            pkts.add_metric([n.name, direction], int(child.get(f"packets{key}", 0)))
    yield from (up, sa, sa_state, byts, pkts, rekeys)
