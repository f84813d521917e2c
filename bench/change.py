"""Change latency: a port map added to a running NI, until a TCP connection from
the wan router through it is answered by the app behind it.

nirunner: the manifest applied again with the new port map (API). Floor: the
same two rulesets (device table and the NI's table, from nirunner's plan)
loaded by hand with `nft -f`. Each round maps a new uplink port.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field

from bench import manual, probe
from bench.lab import BenchLab
from runner.api.client import ApiClient
from runner.lab.topology import INET_IP

APP_MAC = "02:00:00:00:0c:10"
PORT0 = 20000


def manifest(name: str, port: int) -> str:
    return ("apiVersion: nirunner/v1\nkind: NetworkInstance\n"
            f"metadata: {{name: {name}}}\n"
            "spec:\n  type: local\n  uplink: eth0\n  subnet: 10.1.0.0/24\n"
            f"  dns: {{upstream: [{INET_IP}]}}\n"
            f"  dhcp: {{reservations: [{{name: app, mac: '{APP_MAC}', ip: 10.1.0.10}}]}}\n"
            f"  portMaps: [{{name: p{port}, protocol: tcp, uplinkPort: {port}, target: app, "
            "targetPort: 80}]\n")


@dataclass
class Change:
    nirunner: list[float] = field(default_factory=list)
    nirunner_apply: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)


def _through(blab: BenchLab, addr: str, port: int, t0: float) -> float:
    return probe.in_netns(blab.lab.wan, lambda: probe.tcp_works(
        addr, port, t0 + 30, every=0.002)) - t0


def run(blab: BenchLab, rounds: int) -> Change:
    ch = Change()
    name = "bench-chg"
    app = blab.app_netns("chg")
    fapp = blab.app_netns("fchg")
    nis: list[manual.ManualNI] = []
    servers: list[subprocess.Popen[bytes]] = []
    try:
        with ApiClient(blab.lab.socket) as api:
            api.apply([(f"{name}.yaml", manifest(name, PORT0))])
            api.attach(name, f"/run/netns/{app}", "eth0", mac=APP_MAC)
            probe.take_lease(app)
            servers.append(blab.serve(app, "tcp", 80, "app"))
            # the floor's NI, with its app and server
            plans, dev_nft = manual.plans(blab, blab.fdev, [manifest(name, PORT0)])
            nis = manual._prepare(blab, "floor", "chg", plans, {name: PORT0})
            nft_file = blab.base / "floor" / "chg-device.nft"
            nft_file.write_text(dev_nft)
            manual.run_script(blab, blab.fdev, manual.floor_script(blab, nis, nft_file),
                              "floor-chg")
            probe.plug(nis[0].netns, fapp, "ap0", APP_MAC)
            probe.in_netns(fapp, lambda: probe.dhcp_offer("eth0", time.monotonic() + 30))
            probe.take_lease(fapp)
            servers.append(blab.serve(fapp, "tcp", 80, "app"))
            for k in range(1, rounds + 1):
                port = PORT0 + k
                t0 = time.monotonic()
                api.apply([(f"{name}.yaml", manifest(name, port))])
                ch.nirunner_apply.append(time.monotonic() - t0)
                ch.nirunner.append(_through(blab, "198.51.100.2", port, t0))

                plans, dev_nft = manual.plans(blab, blab.fdev, [manifest(name, port)])
                nft_file.write_text(dev_nft)
                (nis[0].cfg / "ni.nft").write_text(plans[name].nft)
                script = (f"nft -f {nft_file}\n"
                          f"nsenter --net=/run/netns/{nis[0].netns} nft -f {nis[0].cfg}/ni.nft\n")
                t0 = time.monotonic()
                manual.run_script(blab, blab.fdev, script, "floor-chg-pm")
                ch.floor.append(_through(blab, "198.19.0.2", port, t0))
            api.delete([name])
    finally:
        for p in servers:
            blab.kill(p)
        if nis:
            manual.remove(blab, nis, blab.fdev, "floor")
        blab.del_netns(app, fapp)
        subprocess.run(["rm", "-rf", str(blab.base / "floor")], check=False)
    return ch
