"""The two references nirunner is compared with, built by hand for the same NI shape:

floor: a minimal shell script doing the kernel and containerd work by hand, per NI:
  ip netns add; transit veth + addresses (ip); bridge, addresses, default route in
  the NI (one `ip -batch`); the NI's sysctls (one sysctl); its nft table (one
  `nft -f`); then one `nft -f` of the device table for all NIs; then per NI
  `ctr run -d` of the same image with the same mounts, caps and limits.

floor-par: the same work, in parallel: the per-NI kernel work in 2 shards (two
  shell scripts at once, every other NI each), then the device table, then the
  `ctr run -d`s 4 at a time (xargs -P 4). Optionally with shared shims: tasks
  annotated `io.containerd.runc.v2.group=<group>` in groups of a given size share
  one containerd-shim-runc-v2.

cni: the same, except that the transit link (device bridge, veth, host-local
  address, default route, masquerade) and the port map come from Debian's
  reference CNI plugins (bridge + host-local + portmap, one ADD per NI), run
  inside the lab's cdev netns with CNI_NETNS pointing at the NI's lab netns.

The rulesets, files and sysctls are nirunner's own plan for the same manifests
(runner.plan), so the kernel ends up in the same state. Each script runs inside
its lab "device" netns (nsenter --net), never in the machine's own.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.lab import BENCH_NS, BenchLab
from runner.drivers import facts as live_facts
from runner.drivers import links
from runner.drivers import netns as ns
from runner.model.manifest import parse_documents
from runner.model.types import SupervisorConfig, Uplink
from runner.plan import site
from runner.plan.facts import Facts
from runner.plan.ni import NIPlan

CNI_PATH = "/usr/lib/cni"
CNI_POOL = "169.254.100.0/22"
CNI_BRIDGE = "cni0"
SHIM_GROUP = "io.containerd.runc.v2.group"  # tasks with the same value share a shim
KINDS = {"floor": "f", "floor-par": "fp", "cni": "c"}  # kind -> letter of its names
SHARDS = 2  # floor-par: kernel work in this many parallel scripts
STARTS = 4  # floor-par: `ctr run -d` at a time


@dataclass
class ManualNI:
    name: str  # NI name (as in the manifest)
    netns: str  # lab netns of the NI
    cid: str  # containerd container id (namespace nrbench)
    plan: NIPlan
    cfg: Path
    state: Path
    port: int  # the uplink port of its port map
    group: str = ""  # its shim group (floor-par with shared shims), "" for a shim of its own


def plans(blab: BenchLab, device: str, manifests: Sequence[str]) -> tuple[dict[str, NIPlan], str]:
    """nirunner's plan of the NIs for the given lab device netns; and its device table."""
    config = bench_config(str(blab.base / "resolv.conf"))
    facts = ns.run_in(device, lambda: live_facts.read(config, config.resolv_conf))
    return plans_for(config, facts, manifests)


def bench_config(resolv_conf: str) -> SupervisorConfig:
    return SupervisorConfig(uplinks=(Uplink("eth0", "eth0"),), resolv_conf=resolv_conf)


def plans_for(config: SupervisorConfig, facts: Facts, manifests: Sequence[str]
              ) -> tuple[dict[str, NIPlan], str]:
    """The same from given facts (pure)."""
    nis = [x.ni for m in manifests for x in parse_documents(m, "bench")]
    p = site.build(config, facts, nis, {})
    return p.nis, p.device.nft


def _sysctl_args(values: dict[str, str]) -> str:
    return " ".join(f"{k.replace('/', '.')}={v}" for k, v in values.items())


def _ctr_run(blab: BenchLab, n: ManualNI) -> str:
    r = n.plan.resources
    quota = max(1000, round(r.cpu * 100_000))
    group = ["--annotation", f"{SHIM_GROUP}={n.group}"] if n.group else []
    args = [
        "ctr", "--address", blab.address, "-n", BENCH_NS, "run", "-d", "--null-io", *group,
        "--read-only", "--with-ns", f"network:/run/netns/{n.netns}",
        "--mount", f"type=bind,src={n.cfg},dst=/etc/nirunner,options=rbind:ro:nosuid:nodev",
        "--mount", f"type=bind,src={n.state},dst=/var/lib/nirunner,options=rbind:rw:nosuid:nodev",
        "--mount", "type=tmpfs,src=tmpfs,dst=/run,options=nosuid:nodev:mode=755:size=16m",
        "--mount", "type=tmpfs,src=tmpfs,dst=/tmp,options=nosuid:nodev:mode=1777:size=16m",
        "--cap-add", "CAP_NET_ADMIN", "--device", "/dev/net/tun",
        "--memory-limit", str(r.memory), "--cpu-quota", str(quota), "--cpu-period", "100000",
        blab.image, n.cid, "/sbin/ni-init",
    ]
    return shlex.join(args)


def _ni_inside(n: ManualNI, with_transit: bool) -> list[str]:
    """Bridge (fixed MAC), gateway address, [transit address, default route] in the NI."""
    p = n.plan
    batch = ["link set lo up",
             f"link add {p.bridge.name} address {p.bridge.mac} mtu {p.mtu} type bridge",
             f"addr add {p.bridge.address} dev {p.bridge.name}",
             f"link set {p.bridge.name} up"]
    if with_transit and p.transit:
        batch += [f"addr add {p.transit.ni_addr} dev {p.transit.ni_if}",
                  f"link set {p.transit.ni_if} up",
                  f"route add default via {p.transit.device_addr.ip}"]
    return [
        f"ip -n {n.netns} -batch - <<'EOF'\n" + "\n".join(batch) + "\nEOF",
        f"nsenter --net=/run/netns/{n.netns} sysctl -qw {_sysctl_args(p.sysctls)}",
        f"nsenter --net=/run/netns/{n.netns} nft -f {n.cfg / 'ni.nft'}",
    ]


def _prepare(blab: BenchLab, kind: str, tag: str, nis: dict[str, NIPlan],
             ports: dict[str, int], group_size: int = 0) -> list[ManualNI]:
    """Config files of each NI; `group_size` > 0: tasks share shims in groups of that size."""
    out = []
    letter = KINDS[kind]
    for i, (name, p) in enumerate(nis.items()):
        d = blab.base / kind / f"{tag}-{i}"
        cfg, state = d / "config", d / "state"
        cfg.mkdir(parents=True, exist_ok=True)
        state.mkdir(parents=True, exist_ok=True)
        for fname, text in p.files.items():
            (cfg / fname).write_text(text)
        (cfg / "ni.nft").write_text(p.nft)
        ns_name = f"{blab.prefix}-{letter}{tag}-{i}"
        group = f"b{letter}-{tag}-g{i // group_size}" if group_size > 0 else ""
        out.append(ManualNI(name, ns_name, f"b{letter}-{tag}-{i}", p, cfg, state,
                            ports[name], group))
    return out


def _kernel_lines(n: ManualNI) -> list[str]:
    """One NI's netns, transit link and inside, by hand."""
    t = n.plan.transit
    assert t is not None
    return [
        f"ip netns add {n.netns}",
        f"ip link add {t.device_if} mtu {n.plan.mtu} type veth peer name {t.ni_if} "
        f"mtu {n.plan.mtu} netns {n.netns}",
        f"ip addr add {t.device_addr} dev {t.device_if}",
        f"ip link set {t.device_if} up",
        *_ni_inside(n, with_transit=True),
    ]


def floor_script(blab: BenchLab, nis: list[ManualNI], device_nft: Path) -> str:
    lines = ["set -e"]
    for n in nis:
        lines += _kernel_lines(n)
    lines.append(f"nft -f {device_nft}")
    lines += [_ctr_run(blab, n) + " >/dev/null" for n in nis]
    return "\n".join(lines) + "\n"


def floor_parallel_script(blab: BenchLab, nis: list[ManualNI], device_nft: Path,
                          workdir: Path, shards: int = SHARDS, starts: int = STARTS) -> str:
    """The floor's work in parallel: kernel work in `shards` scripts at once (every
    shards-th NI each), the device table, then `starts` `ctr run -d` at a time. The
    shard scripts and the list of ctr commands are written into `workdir`."""
    lines = ["set -e"]
    for k in range(shards):
        shard = workdir / f"shard{k}.sh"
        body = ["set -e"] + [x for n in nis[k::shards] for x in _kernel_lines(n)]
        shard.write_text("\n".join(body) + "\n")
        lines.append(f"bash {shard} & p{k}=$!")
    lines += [f"wait $p{k}" for k in range(shards)]  # set -e: a failed shard fails it all
    lines.append(f"nft -f {device_nft}")
    runs = workdir / "ctr-runs"
    runs.write_text("".join(_ctr_run(blab, n) + " >/dev/null\n" for n in nis))
    lines.append(f"xargs -a {runs} -d '\\n' -P {starts} -n 1 bash -c")
    return "\n".join(lines) + "\n"


def cni_conf(blab: BenchLab) -> dict:
    return {"cniVersion": "1.0.0", "name": "ni", "type": "bridge", "bridge": CNI_BRIDGE,
            "isGateway": True, "ipMasq": True, "mtu": 1500,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": CNI_POOL}]],
                     "routes": [{"dst": "0.0.0.0/0"}],
                     "dataDir": str(blab.base / "cni" / "ipam")}}


def _portmap_head(port: int) -> str:
    conf = {"cniVersion": "1.0.0", "name": "ni", "type": "portmap",
            "capabilities": {"portMappings": True}, "snat": True,
            "runtimeConfig": {"portMappings": [
                {"hostPort": port, "containerPort": port, "protocol": "tcp"}]}}
    return json.dumps(conf)[:-1] + ', "prevResult": '


def cni_script(blab: BenchLab, nis: list[ManualNI], verb: str = "ADD") -> str:
    bridge = blab.base / "cni" / "bridge.json"
    bridge.parent.mkdir(parents=True, exist_ok=True)
    bridge.write_text(json.dumps(cni_conf(blab)))
    lines = ["set -e", f"export CNI_PATH={CNI_PATH} CNI_IFNAME=uplink0"]
    for n in nis:
        env = f"CNI_COMMAND={verb} CNI_CONTAINERID={n.cid} CNI_NETNS=/run/netns/{n.netns}"
        if verb == "DEL":  # libcni order: portmap, then bridge
            pm = n.cfg.parent / "portmap.json"
            pm.write_text(_portmap_head(n.port) + "{}}")
            lines += [f"{env} {CNI_PATH}/portmap < {pm} || true",
                      f"{env} {CNI_PATH}/bridge < {bridge} || true"]
            continue
        head = shlex.quote(_portmap_head(n.port))
        lines += [
            f"ip netns add {n.netns}",
            f"res=$({env} {CNI_PATH}/bridge < {bridge})",
            f"printf '%s%s}}' {head} \"$res\" | {env} {CNI_PATH}/portmap >/dev/null",
            *_ni_inside(n, with_transit=False),
        ]
    if verb == "ADD":
        lines += [_ctr_run(blab, n) + " >/dev/null" for n in nis]
    return "\n".join(lines) + "\n"


def run_script(blab: BenchLab, device: str, text: str, name: str) -> None:
    path = blab.base / f"{name}.sh"
    path.write_text(text)
    res = subprocess.run(["nsenter", f"--net=/run/netns/{device}", "bash", str(path)],
                         capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"{name} script failed: {res.stderr.strip()[-2000:]}")


def remove(blab: BenchLab, nis: list[ManualNI], device: str, kind: str) -> None:
    """Tasks and containers, CNI DEL, netns; then wait until the device's links of
    them have gone (netns teardown is asynchronous)."""
    from runner.containerd import tasks
    from runner.containerd.client import Client

    def rm(n: ManualNI) -> None:
        with Client(blab.address, BENCH_NS) as c:
            tasks.remove_container(c, n.cid)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(rm, nis))
    if kind == "cni":
        run_script(blab, device, cni_script(blab, nis, "DEL"), "cni-del")
    for n in nis:
        subprocess.run(["ip", "netns", "del", n.netns], capture_output=True)

    def gone() -> bool:
        names = links.in_netns(device, lambda ip: [str(x.get("ifname")) for x in ip.get_links()])
        return not any((x.startswith("nr") and x[2:].isdigit()) or x.startswith("veth")
                       for x in names)

    import time

    deadline = time.monotonic() + 30
    while not gone():
        if time.monotonic() > deadline:
            raise RuntimeError(f"links of removed NIs still in {device}")
        time.sleep(0.02)
