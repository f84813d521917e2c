"""TCP throughput of a switch NI's app to a host on its uplink's segment, with iperf3,
against the same mechanism built by hand (issue 16, point 6):

  nirunner: app -> its veth -> the port table's `fwd` -> its macvlan of eth1 -> eth1
            -> the wan router's segment bridge -> segment host 203.0.113.20
  floor:    a netns with a macvlan of eth1 as its own interface (no NI in between)
            -> the same wire -> the same host

Both take their address from the segment's DHCP server (`Lab.add_segment`, which
this section adds to the bench lab: the last one to use eth1). Interleaved, so that
the machine's noise hits both alike.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field

from bench.lab import BenchLab
from bench.throughput import iperf
from runner.api.client import ApiClient
from runner.lab.topology import SEGMENT_HOST_IP, sh, wait_for

NAME = "bench-sw"
APP_MAC, FLOOR_MAC = "02:00:00:00:5e:b1", "02:00:00:00:5e:b2"


def manifest() -> str:
    return ("apiVersion: nirunner/v1\nkind: NetworkInstance\n"
            f"metadata: {{name: {NAME}}}\n"
            "spec:\n  type: switch\n  uplink: eth1\n")


@dataclass
class SwitchThroughput:
    seconds: float
    paths: dict[str, list[float]] = field(default_factory=dict)  # bits/s


def run(blab: BenchLab, seconds: float, reps: int) -> SwitchThroughput:
    lab = blab.lab
    tp = SwitchThroughput(seconds)
    app, floor = blab.app_netns("sw"), blab.app_netns("swf")
    procs: list[subprocess.Popen[bytes]] = []
    applied = False
    try:
        seg = lab.add_segment()
        procs.append(lab.spawn(seg, "iperf3", "-s", "-p", "5201"))
        wait_for(lambda: bool(sh("ss", "-Hlnt", "sport = :5201", netns=seg,
                                 check=False).stdout.strip()), 10, "iperf3 on the segment")
        # the floor: a macvlan of eth1 as the netns's own interface
        sh("ip", "link", "add", "eth0", "link", "eth1", "netns", floor, "address", FLOOR_MAC,
           "type", "macvlan", "mode", "bridge", netns=lab.device)
        for netns in (app, floor):
            sh("ip", "link", "set", "lo", "up", netns=netns)
        sh("ip", "link", "set", "eth0", "up", netns=floor)
        lab.dhcp(floor, "floor")
        with ApiClient(lab.socket) as api:
            api.apply([(f"{NAME}.yaml", manifest())])
            applied = True
            api.attach(NAME, f"/run/netns/{app}", "eth0", mac=APP_MAC)
            lab.dhcp(app, "app")
            paths = {"switch nirunner": app, "switch floor": floor}
            for _ in range(reps):
                for key, netns in paths.items():
                    tp.paths.setdefault(key, []).append(
                        iperf(netns, SEGMENT_HOST_IP, 5201, seconds))
            api.delete([NAME])
            applied = False
    finally:
        if applied:
            with ApiClient(lab.socket) as api:
                api.delete([NAME])
        for p in procs:
            blab.kill(p)
        blab.del_netns(app, floor)
    return tp
