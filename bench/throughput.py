"""TCP throughput with iperf3, nirunner's paths against the floor's.

  NAT:      app (nirunner NI) -> br0 -> NI masquerade -> transit veth -> device
            masquerade -> eth0 -> wan -> inet 192.0.2.10
   floor:   a netns on a single veth into fdev, one masquerade -> eth0 -> wan -> inet
  port map: inet -> device eth0 198.51.100.2:5202 -> DNAT -> NI -> DNAT -> app:5201
   floor:   inet -> fdev eth0 198.19.0.2:5203 -> one DNAT -> the floor netns:5201
  by hand:  both paths again through an NI built by hand in fdev with nirunner's own
            rulesets (bench.manual's floor): what the topology costs, without nirunner
  VPN NI:   app -> VPN NI (charon, libipsec) -> double NAT -> wan -> the lab's VPN peer
            (runner.lab.vpnpeer) -> site host 10.99.1.10; only where VPN NIs exist
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field

from bench import manual, probe
from bench.change import APP_MAC
from bench.lab import BenchLab
from runner.api.client import ApiClient
from runner.lab.topology import INET_IP, sh, wait_for

FLOOR_NFT = """table inet benchfloor {}
delete table inet benchfloor
table inet benchfloor {
    chain pre {
        type nat hook prerouting priority dstnat; policy accept;
        iifname "eth0" tcp dport 5203 dnat ip to 10.99.0.2:5201
    }
    chain post {
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr 10.99.0.0/30 oifname "eth0" masquerade
    }
}
"""


def manifest(name: str) -> str:
    return ("apiVersion: nirunner/v1\nkind: NetworkInstance\n"
            f"metadata: {{name: {name}}}\n"
            "spec:\n  type: local\n  uplink: eth0\n  subnet: 10.1.0.0/24\n"
            f"  dns: {{upstream: [{INET_IP}]}}\n"
            f"  dhcp: {{reservations: [{{name: app, mac: '{APP_MAC}', ip: 10.1.0.10}}]}}\n"
            "  portMaps: [{name: perf, protocol: tcp, uplinkPort: 5202, target: app, "
            "targetPort: 5201}]\n")


VPN_PSK = b"nirunner bench pre-shared key, lab only"
VPN_SITE = "10.99.1.0/24"


def vpn_manifest(secret: str, cpu: float = 0.5) -> str:
    return ("apiVersion: nirunner/v1\nkind: NetworkInstance\nmetadata: {name: bench-vpn}\n"
            "spec:\n  type: vpn\n  uplink: eth0\n  subnet: 10.50.0.0/24\n"
            "  vpn:\n    remote: 198.18.1.2\n"
            f"    auth: {{psk: {{secretFile: {secret}}}}}\n"
            "    localId: edge@bench\n    remoteId: hq\n"
            f"    remoteSubnets: [{VPN_SITE}]\n"
            "    ike: {proposals: [aes256-sha256-modp2048]}\n"
            "    esp: {proposals: [aes256gcm16]}\n"
            f"  resources: {{memory: 64Mi, cpu: {cpu:g}, pids: 128}}\n")


@dataclass
class Throughput:
    seconds: float
    paths: dict[str, list[float]] = field(default_factory=dict)  # bits/s
    vpn: str = ""  # why VPN was not measured
    vpn_up: list[float] = field(default_factory=list)  # apply -> TCP through the tunnel
    vpn_failed: dict[str, list[str]] = field(default_factory=dict)  # path -> iperf3 errors
    vpn_throttled: dict[str, float] = field(default_factory=dict)  # path -> s throttled/s


def iperf(netns: str, host: str, port: int, seconds: float) -> float:
    res = subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "iperf3", "-c", host, "-p", str(port),
         "-t", f"{seconds:g}", "-O", "1", "-J"],
        capture_output=True, text=True, timeout=seconds + 30)
    out = json.loads(res.stdout or "{}")
    if res.returncode != 0 or "error" in out:
        raise RuntimeError(f"iperf3 in {netns} to {host}:{port}: "
                           f"{out.get('error') or res.stderr.strip()}")
    return float(out["end"]["sum_received"]["bits_per_second"])


def _iperf_server(blab: BenchLab, netns: str, bind: str | None = None) -> subprocess.Popen[bytes]:
    args = ["iperf3", "-s", "-p", "5201"] + (["-B", bind] if bind else [])
    p = blab.lab.spawn(netns, *args)
    wait_for(lambda: bool(sh("ss", "-Hlnt", "sport = :5201", netns=netns,
                             check=False).stdout.strip()), 10, f"iperf3 in {netns}")
    return p


def cpu_throttled(cid: str, namespace: str) -> float:
    """Seconds the task's cgroup was throttled by its CPU quota so far."""
    for d, key, scale in ((f"/sys/fs/cgroup/cpu/{namespace}/{cid}", "throttled_time", 1e9),
                          (f"/sys/fs/cgroup/{namespace}/{cid}", "throttled_usec", 1e6)):
        try:
            with open(f"{d}/cpu.stat") as f:
                stat = dict(line.split() for line in f)
            return int(stat[key]) / scale
        except (OSError, KeyError):
            continue
    return 0.0


def _vpn_iperf(tp: Throughput, key: str, app: str, site: str, seconds: float,
               reps: int, namespace: str) -> None:
    """iperf3 through the tunnel, each run once the tunnel answers; a failed run (the
    tunnel went down under load) is counted, not fatal."""
    throttled, spent = 0.0, 0.0
    for _ in range(reps):
        try:
            probe.in_netns(app, lambda: probe.tcp_works(site, 7100, time.monotonic() + 30))
            th, t = cpu_throttled("ni-bench-vpn", namespace), time.monotonic()
            tp.paths.setdefault(key, []).append(iperf(app, site, 5201, seconds))
            throttled += cpu_throttled("ni-bench-vpn", namespace) - th
            spent += time.monotonic() - t
        except (RuntimeError, TimeoutError) as e:
            tp.vpn_failed.setdefault(key, []).append(str(e))
    if spent:
        tp.vpn_throttled[key] = throttled / spent


def vpn(blab: BenchLab, tp: Throughput, seconds: float, reps: int) -> None:
    """A VPN NI against the lab's VPN peer (runner.lab.vpnpeer, libipsec on both ends):
    apply -> first TCP answer from the site host through the tunnel, then iperf3 to it.
    Sets tp.vpn to why not, when VPN NIs or the lab's peer are not there."""
    secret = blab.lab.secrets_dir / "vpn.psk"  # secretsDir of the lab's config
    secret.parent.mkdir(mode=0o700, exist_ok=True)
    secret.write_bytes(VPN_PSK)
    secret.chmod(0o600)
    f = blab.base / "vpn.yaml"
    f.write_text(vpn_manifest(str(secret)))
    res = blab.lab.cli("validate", "-f", str(f), "--config", str(blab.lab.config_path),
                       check=False)
    if res.returncode != 0:
        first = (res.stderr.strip().splitlines() or ["rejected"])[0]
        tp.vpn = ("n/a: VPN NIs not available (manifest type vpn rejected: "
                  f"{first.removeprefix('nirunner: ')})")
        return
    try:
        from runner.lab.vpnpeer import PeerConn, VpnPeer
    except ImportError as e:
        tp.vpn = f"n/a: VPN NIs accepted, but the lab has no VPN peer ({e})"
        return
    app = blab.app_netns("vpn")
    peer = VpnPeer(blab.lab, 1, site_subnets=(VPN_SITE,))
    procs: list[subprocess.Popen[bytes]] = []
    applied = False
    try:
        peer.build()
        peer.add(PeerConn("bench", local_id="hq", remote_id="edge@bench",
                          remote_ts="10.50.0.0/24", psk=VPN_PSK))
        peer.start()
        procs.append(blab.serve(peer.site_ns, "tcp", 7100, "site"))
        procs.append(_iperf_server(blab, peer.site_ns))
        site = peer.site_host()
        with ApiClient(blab.lab.socket) as api:
            for k in range(max(1, reps)):
                t0 = time.monotonic()
                api.apply([("vpn.yaml", f.read_text())])
                applied = True
                api.attach("bench-vpn", f"/run/netns/{app}", "eth0", mac=APP_MAC)

                def up(t0: float = t0) -> float:
                    probe.dhcp_offer("eth0", t0 + 60)
                    probe.take_lease(app)
                    return probe.tcp_works(site, 7100, t0 + 60)

                tp.vpn_up.append(probe.in_netns(app, up) - t0)
                if k == 0:
                    _vpn_iperf(tp, "vpn nirunner", app, site, seconds, reps, blab.lab.namespace)
                    # libipsec does ESP in charon, inside the task: its CPU limit bounds it
                    api.apply([("vpn.yaml", vpn_manifest(str(secret), cpu=2))])
                    _vpn_iperf(tp, "vpn nirunner cpu2", app, site, seconds, reps,
                               blab.lab.namespace)
                    api.apply([("vpn.yaml", f.read_text())])
                api.delete(["bench-vpn"])
                applied = False
    except Exception as e:
        tp.vpn = f"n/a: VPN measurement failed: {type(e).__name__}: {e}"
        if applied:
            with ApiClient(blab.lab.socket) as api:
                api.delete(["bench-vpn"])
    finally:
        for p in procs:
            blab.kill(p)
        peer.stop()
        blab.del_netns(app)


def run(blab: BenchLab, seconds: float, reps: int) -> Throughput:
    tp = Throughput(seconds)
    name = "bench-tp"
    app = blab.app_netns("tp")
    fc = f"{blab.prefix}-fc"
    happ = blab.app_netns("tph")
    procs: list[subprocess.Popen[bytes]] = []
    hand: list[manual.ManualNI] = []
    try:
        procs.append(_iperf_server(blab, blab.lab.inet, INET_IP))
        # the floor: one veth, one NAT
        sh("ip", "netns", "add", fc)
        sh("ip", "link", "add", "fc0", "netns", blab.fdev, "type", "veth", "peer", "name",
           "eth0", "netns", fc)
        sh("ip", "addr", "add", "10.99.0.1/30", "dev", "fc0", netns=blab.fdev)
        sh("ip", "link", "set", "fc0", "up", netns=blab.fdev)
        for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", "10.99.0.2/30",
                    "dev", "eth0"], ["ip", "link", "set", "eth0", "up"],
                    ["ip", "route", "add", "default", "via", "10.99.0.1"]):
            sh(*cmd, netns=fc)
        sh("nft", "-f", "-", netns=blab.fdev, input=FLOOR_NFT)
        procs.append(_iperf_server(blab, fc))
        # the same double NAT and port map, built by hand with nirunner's rulesets
        plans, dev_nft = manual.plans(blab, blab.fdev, [manifest(name)])
        hand = manual._prepare(blab, "floor", "tp", plans, {name: 5202})
        nft_file = blab.base / "floor" / "tp-device.nft"
        nft_file.write_text(dev_nft)
        manual.run_script(blab, blab.fdev, manual.floor_script(blab, hand, nft_file), "floor-tp")
        probe.plug(hand[0].netns, happ, "ap0", APP_MAC)
        probe.in_netns(happ, lambda: probe.dhcp_offer("eth0", time.monotonic() + 30))
        probe.take_lease(happ)
        procs.append(_iperf_server(blab, happ))
        # nirunner: an NI with an app behind a port map
        with ApiClient(blab.lab.socket) as api:
            api.apply([(f"{name}.yaml", manifest(name))])
            api.attach(name, f"/run/netns/{app}", "eth0", mac=APP_MAC)
            probe.in_netns(app, lambda: probe.dhcp_offer("eth0", time.monotonic() + 30))
            probe.take_lease(app)
            procs.append(_iperf_server(blab, app))
            paths = {
                "nat nirunner": (app, INET_IP, 5201),
                "nat floor": (fc, INET_IP, 5201),
                "nat by hand": (happ, INET_IP, 5201),
                "portmap nirunner": (blab.lab.inet, "198.51.100.2", 5202),
                "portmap floor": (blab.lab.inet, "198.19.0.2", 5203),
                "portmap by hand": (blab.lab.inet, "198.19.0.2", 5202),
            }
            for _ in range(reps):  # interleaved, so that noise hits all alike
                for key, (netns, host, port) in paths.items():
                    tp.paths.setdefault(key, []).append(iperf(netns, host, port, seconds))
            api.delete([name])
    finally:
        for p in procs:
            blab.kill(p)
        if hand:
            manual.remove(blab, hand, blab.fdev, "floor")
        sh("nft", "-f", "-", netns=blab.fdev, check=False,
           input="table inet benchfloor {}\ndelete table inet benchfloor\n")
        blab.del_netns(app, fc, happ)
        subprocess.run(["rm", "-rf", str(blab.base / "floor")], check=False)
    vpn(blab, tp, seconds, reps)
    return tp
