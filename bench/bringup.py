"""NI bring-up, from "apply" to ready, for nirunner, the floor and CNI.

Ready = task running, and from an app plugged into the NI's bridge: a DHCP
OFFER from the NI's dnsmasq, a lease taken by busybox udhcpc, and a TCP
connection through the NAT(s) to the inet host answered. The clock starts at
the apply call (nirunner, through its API) or at the start of the script (floor,
CNI) and stops when the last NI is ready. Plugging the app is inside the clock
for all three (nirunner: its attach API; floor and CNI: the same netlink calls
by hand).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field

from bench import manual, memory, probe
from bench.lab import BENCH_NS, BenchLab
from runner.api.client import ApiClient
from runner.lab.topology import INET_IP

PORT_BASE = 10000


def ni_name(i: int) -> str:
    return f"bench-{i}"


def manifest(name: str, port: int, extra_ports: tuple[int, ...] = ()) -> str:
    pms = [f"{{name: web, protocol: tcp, uplinkPort: {port}, target: 10.1.0.10, "
           f"targetPort: 80}}"]
    pms += [f"{{name: p{p}, protocol: tcp, uplinkPort: {p}, target: 10.1.0.10, "
            f"targetPort: 80}}" for p in extra_ports]
    return ("apiVersion: nirunner/v1\nkind: NetworkInstance\n"
            f"metadata: {{name: {name}}}\n"
            "spec:\n  type: local\n  uplink: eth0\n  subnet: 10.1.0.0/24\n"
            f"  dns: {{upstream: [{INET_IP}]}}\n"
            f"  portMaps: [{', '.join(pms)}]\n"
            "  resources: {memory: 64Mi, cpu: 0.25, pids: 128}\n")


@dataclass
class Run:
    method: str
    n: int
    total: float = 0.0  # start -> last NI ready
    setup: float = 0.0  # start -> apply/script returned
    plugged: float = 0.0  # start -> apps plugged
    ready: list[float] = field(default_factory=list)  # per NI: start -> ready
    offer: list[float] = field(default_factory=list)  # per NI: start -> DHCP offer
    attach: list[float] = field(default_factory=list)  # nirunner: each attach call
    delete: float = 0.0  # all removed, until their links on the device are gone
    footprint: memory.Footprint | None = None  # memory per NI once all were ready


def _finish(run: Run, t0: float, t_setup: float, t_plug: float,
            ready: list[probe.Ready]) -> Run:
    run.setup = t_setup - t0
    run.plugged = t_plug - t0
    run.ready = [r.tcp - t0 for r in ready]
    run.offer = [r.offer - t0 for r in ready]
    run.total = max(run.ready)
    return run


def nirunner_up(blab: BenchLab, api: ApiClient, n: int, apps: list[str], run: Run,
                via_cli: bool = False, timeout: float = 180) -> list[str]:
    """Apply n NIs, attach one app each (each call timed), wait until all are ready."""
    names = [ni_name(i) for i in range(n)]
    docs = [(f"{nm}.yaml", manifest(nm, PORT_BASE + i)) for i, nm in enumerate(names)]
    if via_cli:
        f = blab.base / f"{apps[0]}.yaml"
        f.write_text("---\n".join(t for _, t in docs))
        t0 = time.monotonic()
        blab.lab.cli("apply", "-f", str(f))
    else:
        t0 = time.monotonic()
        api.apply(docs)
    t_setup = time.monotonic()
    for nm, app in zip(names, apps, strict=True):
        t = time.monotonic()
        api.attach(nm, f"/run/netns/{app}", "eth0")
        run.attach.append(time.monotonic() - t)
    t_plug = time.monotonic()
    ready = probe.check_all(apps, t0 + timeout)
    _finish(run, t0, t_setup, t_plug, ready)
    return names


def nirunner_footprint(blab: BenchLab) -> memory.Footprint:
    """Memory per NI of the lab's NI tasks (all of them: the bench runs one set at a time)."""
    return memory.footprint(memory.containerd_units(blab.address, blab.lab.namespace))


def nirunner(blab: BenchLab, n: int, tag: str, via_cli: bool = False,
             timeout: float = 180, footprint: bool = False) -> Run:
    apps = [blab.app_netns(f"{tag}-{i}") for i in range(n)]
    run = Run("nirunner-cli" if via_cli else "nirunner", n)
    try:
        with ApiClient(blab.lab.socket) as api:
            names = nirunner_up(blab, api, n, apps, run, via_cli, timeout)
            if footprint:
                run.footprint = nirunner_footprint(blab)
            t = time.monotonic()
            api.delete(names)
            run.delete = time.monotonic() - t
    finally:
        blab.del_netns(*apps)
    return run


def manual_run(blab: BenchLab, kind: str, n: int, tag: str, timeout: float = 180,
               group_size: int = 0, footprint: bool = False) -> Run:
    """kind: floor | floor-par | cni; floor-par with group_size > 0: shared shims."""
    device = blab.cdev if kind == "cni" else blab.fdev
    names = [ni_name(i) for i in range(n)]
    ports = {nm: PORT_BASE + i for i, nm in enumerate(names)}
    plans, device_nft = manual.plans(blab, device, [manifest(nm, ports[nm]) for nm in names])
    nis = manual._prepare(blab, kind, tag, plans, ports, group_size)
    apps = [blab.app_netns(f"{tag}-{i}") for i in range(n)]
    if kind == "cni":
        script = manual.cni_script(blab, nis)
    else:
        nft_file = blab.base / kind / f"{tag}-device.nft"
        nft_file.write_text(device_nft)
        script = (manual.floor_script(blab, nis, nft_file) if kind == "floor" else
                  manual.floor_parallel_script(blab, nis, nft_file, blab.base / kind))
    run = Run(kind if not group_size else f"{kind}-g{group_size}", n)
    try:
        t0 = time.monotonic()
        manual.run_script(blab, device, script, f"{kind}-{tag}")
        t_setup = time.monotonic()
        for i, (ni, app) in enumerate(zip(nis, apps, strict=True)):
            probe.plug(ni.netns, app, f"ap{i}", f"02:42:00:00:{i >> 8:02x}:{i & 255:02x}")
        t_plug = time.monotonic()
        ready = probe.check_all(apps, t0 + timeout)
        _finish(run, t0, t_setup, t_plug, ready)
        if footprint:
            run.footprint = memory.footprint(memory.containerd_units(
                blab.address, BENCH_NS, [x.cid for x in nis]))
        if kind == "cni":
            _check_cni_stayed_in_lab()
    finally:
        t = time.monotonic()
        manual.remove(blab, nis, device, kind)
        run.delete = time.monotonic() - t
        blab.del_netns(*apps)
        subprocess.run(["rm", "-rf", str(blab.base / kind)], check=False)
        if kind == "cni":  # host-local's leases (the DEL released them; start clean)
            subprocess.run(["rm", "-rf", str(blab.base / "cni" / "ipam")], check=False)
    return run


def _check_cni_stayed_in_lab() -> None:
    """The CNI plugins ran in the lab's cdev netns: nothing of them in ours."""
    res = subprocess.run(["ip", "-o", "link", "show", manual.CNI_BRIDGE],
                         capture_output=True, text=True)
    if res.returncode == 0:
        print(f"WARNING: a {manual.CNI_BRIDGE} link exists in the machine's netns",
              file=sys.stderr)
