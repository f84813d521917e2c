"""The app edge's cost: TCP throughput through an NI bridge with anti-spoofing and 50 ACL
rules, and with conntrack accounting and the flow-log collector, each against none;
the collector's CPU at 1,000 new flows a second, standalone and in the supervisor.

    python -m bench.appedge [--seconds 5] [--reps 3] [--flows 1000] [--window 10]

Root. The throughput and the standalone collector: a hand-made NI
(runner.lab.edgelab: `ip` and `nft`, no supervisor, no containerd) under the prefix
`nrbae`, removed at the end; "none" is only possible there (every NI of the
supervisor has its edge). The setups are interleaved so that machine noise hits them
alike. `bench.run` takes these rows into its table (`handmade`), and adds the flow
log's cost inside the supervisor, on one of its NIs (`in_supervisor`). Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from bench.throughput import iperf
from runner.drivers import netns as ns
from runner.flowlog.collector import SYSCTLS
from runner.lab.edgelab import SERVERS, EdgeLab
from runner.lab.topology import INET_IP, sh, wait_for
from runner.net.appedge import (
    AclProtocol,
    AclRule,
    Action,
    AppAcl,
    AppPort,
    Direction,
    NIAcls,
)
from runner.render import appedge

PREFIX = "nrbae"
PLC = ("plc", "02:00:00:00:00:10", "10.1.0.10")
OFF = {k: "0" for k in SYSCTLS}

# one datagram from a new source port each time, at a steady rate, for `seconds`
_FLOWS = """
import socket, sys, time
rate, seconds, host = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
start = time.monotonic(); n = 0
while time.monotonic() - start < seconds:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"x", (host, 9999)); s.close(); n += 1
    d = start + n / rate - time.monotonic()
    if d > 0:
        time.sleep(d)
print(n / (time.monotonic() - start))
"""


def fifty_rules(server: str) -> tuple[AclRule, ...]:
    """49 rules that do not match the measured flow, then the one that allows it."""
    miss = tuple(AclRule(Direction.EGRESS, Action.DROP, remote=IPv4Network(f"203.0.113.{i}/32"),
                         protocol=AclProtocol.TCP, ports=(1000 + i, 1000 + i))
                 for i in range(49))
    return (*miss, AclRule(Direction.EGRESS, Action.ALLOW, remote=IPv4Network(f"{server}/32"),
                           protocol=AclProtocol.TCP, ports=(5201, 5201)))


class Bench:
    def __init__(self, lab: EdgeLab) -> None:
        self.lab = lab
        self.plc = lab.apps["plc"]
        self.collector: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkdtemp(prefix="nrbae-")) / "flows.jsonl"

    def plain(self) -> None:
        self.stop_collector()
        ns.set_sysctls(OFF, self.lab.ni)
        self.lab.nft("table bridge edge {}\ndelete table bridge edge\n"
                     "table inet acl {}\ndelete table inet acl\n")

    def edge_acl(self) -> None:
        self.plain()
        p = self.plc
        self.lab.nft(appedge.edge_ruleset("bench", [
            AppPort(p.port, p.mac, "plc", (IPv4Address(p.ip),))]))
        acls = NIAcls("bench", (AppAcl("plc", p.mac, (IPv4Address(p.ip),),
                                       fifty_rules(SERVERS[0])),), dns_log=False)
        self.lab.nft(appedge.acl_ruleset(acls))

    def flowlog(self, starts: bool = False) -> None:
        self.plain()
        self.collector = self.lab.spawn(
            self.lab.ni, sys.executable, "-m", "runner.flowlog.collector", "--netns",
            self.lab.ni, "--out", str(self.log), "--max-bytes", str(1 << 30),
            "--app", f"plc={self.plc.ip},{self.plc.mac}",
            *(["--starts"] if starts else []))
        wait_for(lambda: sh("cat", "/proc/sys/net/netfilter/nf_conntrack_acct",
                            netns=self.lab.ni).stdout.strip() == "1", 10, "the collector")
        time.sleep(0.5)

    def stop_collector(self) -> None:
        if self.collector is not None:
            self.collector.terminate()
            self.collector.wait(10)
            self.collector = None

    def cpu(self) -> float:
        """CPU seconds the collector (python under `ip netns exec`) used so far."""
        assert self.collector is not None
        pids = sh("pgrep", "-P", str(self.collector.pid), check=False).stdout.split() or [
            str(self.collector.pid)]
        total = 0.0
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total


def throughput(b: Bench, seconds: float, reps: int) -> dict[str, list[float]]:
    """Rounds of one run per setup, the order rotated each round (noise and drift hit all)."""
    setups: list[tuple[str, Callable[[], None]]] = [
        ("none", b.plain), ("anti-spoofing + 50 ACL rules", b.edge_acl),
        ("conntrack accounting + flow log", b.flowlog)]
    got: dict[str, list[float]] = {k: [] for k, _ in setups}
    for r in range(reps):
        for name, setup in setups[r % 3:] + setups[:r % 3]:
            setup()
            got[name].append(iperf(b.plc.netns, SERVERS[0], 5201, seconds))
    b.plain()
    return got


def flow_cpu(b: Bench, rate: int, window: float, starts: bool) -> tuple[float, float, int]:
    """(collector CPU share, flows/s achieved, records written in the window)."""
    b.flowlog(starts)
    # unreplied UDP flows end 1 s after their datagram: ends come as fast as starts
    ns.set_sysctls({"net/netfilter/nf_conntrack_udp_timeout": "1"}, b.lab.ni)
    gen = subprocess.Popen(["ip", "netns", "exec", b.plc.netns, sys.executable, "-c", _FLOWS,
                            str(rate), str(window + 4), SERVERS[0]],
                           stdout=subprocess.PIPE, text=True)
    time.sleep(2)  # steady state: flows end as fast as they start
    lines0 = sum(1 for _ in open(b.log)) if b.log.exists() else 0
    c0, t0 = b.cpu(), time.monotonic()
    time.sleep(window)
    c1, t1 = b.cpu(), time.monotonic()
    lines1 = sum(1 for _ in open(b.log))
    out, _ = gen.communicate(timeout=30)
    b.stop_collector()
    ns.set_sysctls({"net/netfilter/nf_conntrack_udp_timeout": "30"}, b.lab.ni)
    return (c1 - c0) / (t1 - t0), float(out.strip() or 0), lines1 - lines0


NONE, EDGE_ACL, FLOW_LOG = ("none", "anti-spoofing + 50 ACL rules",
                             "conntrack accounting + flow log")


@dataclass
class Handmade:
    """What the hand-made NI measured."""

    throughput: dict[str, list[float]] = field(default_factory=dict)  # setup -> bit/s
    # "ends only" / "ends + starts" -> (CPU share of one core, flows/s achieved, records)
    collector: dict[str, tuple[float, float, int]] = field(default_factory=dict)

    def ratios(self, setup: str) -> list[float]:
        """Per-round ratios of a setup to none (each round ran every setup once)."""
        return [x / n for x, n in zip(self.throughput[setup], self.throughput[NONE],
                                      strict=True)]


def handmade(seconds: float, reps: int, flows: int, window: float,
             prefix: str = PREFIX) -> Handmade:
    """Throughput of the three setups in rotated rounds, then the standalone collector."""
    lab = EdgeLab(prefix)
    out = Handmade()
    try:
        lab.build()
        lab.app(*PLC)
        lab.spawn(lab.wan, "iperf3", "-s", "-p", "5201", "-B", SERVERS[0])
        wait_for(lambda: bool(sh("ss", "-Hlnt", "sport = :5201", netns=lab.wan,
                                 check=False).stdout.strip()), 10, "iperf3")
        b = Bench(lab)
        out.throughput = throughput(b, seconds, reps)
        for starts in (False, True):
            out.collector["ends + starts" if starts else "ends only"] = flow_cpu(
                b, flows, window, starts)
    finally:
        lab.teardown()
    return out


@dataclass
class InSupervisor:
    """The flow log of one of the supervisor's NIs at `rate` new flows/s."""

    rate: int
    window: float
    achieved: float = 0.0  # flows/s the generator made
    cpu: float = 0.0  # the supervisor's CPU share of one core meanwhile
    idle_cpu: float = 0.0  # the same over an equal window before, without the flows
    records: int = 0  # flow records written in the window


EDGE_NI = "bench-edge"
EDGE_MAC = "02:00:00:00:be:10"


def in_supervisor(blab: Any, rate: int, window: float) -> InSupervisor:
    """The supervisor's CPU while an app of one of its NIs (flow log on, the default) makes
    `rate` new UDP flows a second, against the same window without them."""
    from bench.scale import cpu_seconds
    from runner.api.client import ApiClient

    lab = blab.lab
    text = ("apiVersion: nirunner/v1\nkind: NetworkInstance\n"
            f"metadata: {{name: {EDGE_NI}}}\n"
            "spec:\n  type: local\n  uplink: eth0\n  subnet: 10.1.0.0/24\n"
            f"  apps: [{{name: gen, mac: '{EDGE_MAC}', ip: 10.1.0.10}}]\n")
    out = InSupervisor(rate, window)
    app = blab.app_netns("edge")
    with ApiClient(lab.socket) as api:
        api.apply([("bench-edge.yaml", text)])
        try:
            api.attach(EDGE_NI, f"/run/netns/{app}", "eth0", app="gen")
            lab.dhcp(app, "gen")
            ns.set_sysctls({"net/netfilter/nf_conntrack_udp_timeout": "1"}, f"nr-{EDGE_NI}")
            log = lab.state_dir / "ni" / EDGE_NI / "flows.jsonl"
            pid = lab.supervisor.pid

            def lines() -> int:
                return sum(1 for _ in open(log)) if log.exists() else 0

            c0, t0 = cpu_seconds(pid), time.monotonic()
            time.sleep(window)
            out.idle_cpu = (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
            gen = subprocess.Popen(["ip", "netns", "exec", app, sys.executable, "-c", _FLOWS,
                                    str(rate), str(window + 4), INET_IP],
                                   stdout=subprocess.PIPE, text=True)
            time.sleep(2)  # steady state: flows end as fast as they start
            n0, c0, t0 = lines(), cpu_seconds(pid), time.monotonic()
            time.sleep(window)
            n1, c1, t1 = lines(), cpu_seconds(pid), time.monotonic()
            achieved, _ = gen.communicate(timeout=30)
            out.cpu, out.records = (c1 - c0) / (t1 - t0), n1 - n0
            out.achieved = float(achieved.strip() or 0)
        finally:
            api.delete([EDGE_NI])
            blab.del_netns(app)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.appedge")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--flows", type=int, default=1000)
    ap.add_argument("--window", type=float, default=10)
    a = ap.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    h = handmade(a.seconds, a.reps, a.flows, a.window)
    print(f"TCP app -> inet through the NI bridge, iperf3 {a.seconds:g} s, {a.reps} rounds "
          "(one run per setup each, order rotated)\n")
    print("| setup | median Gbit/s | min-max | median of per-round ratios to none |\n"
          "|---|---|---|---|")
    for name, xs in h.throughput.items():
        print(f"| {name} | {statistics.median(xs) / 1e9:.2f} | {min(xs) / 1e9:.2f}-"
              f"{max(xs) / 1e9:.2f} | {statistics.median(h.ratios(name)):.2f}x |")
    print(f"\nFlow-log collector at {a.flows} new flows/s (UDP, one datagram each), "
          f"CPU over {a.window:g} s\n")
    print("| records | CPU of one core | flows/s achieved | records in window |\n"
          "|---|---|---|---|")
    for what, (share, achieved, recs) in h.collector.items():
        print(f"| {what} | {share * 100:.1f} % | {achieved:.0f} | {recs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
