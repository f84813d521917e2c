"""App ACLs and the flow log on real packets, in a hand-made NI (no supervisor, no containerd).

The NI runs the tables as rendered (`ni`, `bridge edge`, `inet acl`), a real
dnsmasq with the rendered `nftset=` lines (upstream: a dnsmasq on the wan whose
answer the tests change), and the flow-log collector in a thread, reading real
conntrack events and nflog packets of the NI netns.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from runner.drivers import netns as ns
from runner.flowlog import counters, writer
from runner.flowlog.collector import SYSCTLS, Collector, Listener
from runner.flowlog.records import AppIndex, Recorder
from runner.lab.edgelab import (
    GATEWAY,
    SERVERS,
    UPLINK,
    UPSTREAM_DNS,
    WAN_CLIENT2,
    WAN_GW,
    EdgeLab,
)
from runner.lab.topology import sh, wait_for
from runner.lab.witness import witness, witnessed_bytes
from runner.net.appedge import (
    AclPortMap,
    AclProtocol,
    AclRule,
    Action,
    AppAcl,
    AppPort,
    Direction,
    Limit,
    NIAcls,
    RateUnit,
)
from runner.render import appedge
from tests.integration.conftest import RUN_ID

pytestmark = pytest.mark.integration

WWW = "www.example.test"
TTL = 2  # the upstream's TTL for www
GRACE = 1  # the collector keeps an address this much past its TTL
PLC = ("plc", "02:00:00:00:00:10", "10.1.0.10")
HMI = ("hmi", "02:00:00:00:00:11", "10.1.0.11")
TCP, UDP = AclProtocol.TCP, AclProtocol.UDP
EGRESS, INGRESS = Direction.EGRESS, Direction.INGRESS
# flows end fast, so that their records come while the test waits
FAST_CT = {f"net/netfilter/nf_conntrack_tcp_timeout_{s}": "1"
           for s in ("time_wait", "close", "close_wait", "fin_wait", "last_ack")}


def rule(direction: Direction, action: Action, **kw: Any) -> AclRule:
    return AclRule(direction, action, **kw)


def net(cidr: str) -> IPv4Network:
    return IPv4Network(cidr)


@dataclass
class AclLab:
    lab: EdgeLab
    log: Path
    recorder: Recorder
    present: frozenset[str] = frozenset()
    upstream: subprocess.Popen[bytes] | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def apply(self, *plc_rules: AclRule) -> float:
        """The plc's ACLs (with its port map) applied live; returns the seconds it took."""
        plc = self.lab.apps["plc"]
        acls = NIAcls("lab", (AppAcl("plc", plc.mac, (IPv4Address(plc.ip),), plc_rules,
                                     (AclPortMap("plc-web", TCP, 80),)),))
        t0 = time.monotonic()
        self.lab.nft(appedge.acl_ruleset(acls, self.present))
        took = time.monotonic() - t0
        self.present = appedge.objects(acls)
        self.recorder.rule_labels = appedge.rule_labels(acls)
        return took

    def answer(self, ip: str) -> None:
        """The wan's DNS now answers `ip` for www (TTL 2 s)."""
        if self.upstream is not None:
            self.upstream.kill()
            self.upstream.wait(5)
        self.upstream = self.lab.spawn(
            self.lab.wan, "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
            "--bind-interfaces", f"--listen-address={UPSTREAM_DNS}", "--pid-file=",
            "--user=root", "--conf-file=/dev/null", f"--host-record={WWW},{ip}",
            f"--local-ttl={TTL}")
        wait_for(lambda: self.resolve("plc", upstream=True) == [ip], 10, "the wan's DNS")

    def resolve(self, app: str, upstream: bool = False) -> list[str]:
        server = UPSTREAM_DNS if upstream else GATEWAY
        where = self.lab.wan if upstream else self.lab.apps[app].netns
        res = sh(sys.executable, "-m", "runner.lab.dnsq", server, WWW, netns=where, check=False)
        return res.stdout.split()

    def records(self, **match: Any) -> list[dict[str, Any]]:
        return [r for r in writer.read(self.log)
                if all(r.get(k) == v for k, v in match.items())]


@pytest.fixture(scope="module")
def acl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclLab]:
    lab = EdgeLab(f"nrt{RUN_ID}a")
    stop = threading.Event()
    thread = None
    try:
        lab.build()
        for name, mac, ip in (PLC, HMI):
            lab.app(name, mac, ip)
        ns.set_sysctls({**SYSCTLS, **FAST_CT}, lab.ni)
        plc, hmi = lab.apps["plc"], lab.apps["hmi"]
        lab.nft(appedge.edge_ruleset("lab", [
            AppPort(plc.port, plc.mac, "plc", (IPv4Address(plc.ip),)),
            AppPort(hmi.port, hmi.mac, "hmi", (IPv4Address(hmi.ip),))]))
        index = AppIndex({plc.ip: "plc", hmi.ip: "hmi"}, {plc.mac: "plc", hmi.mac: "hmi"})
        recorder = Recorder("lab", lambda: index, [WWW], drop_idle=1.0, host_grace=GRACE)
        log = tmp_path_factory.mktemp("flowlog") / "flows.jsonl"
        a = AclLab(lab, log, recorder, stop=stop)
        a.apply()
        lab.spawn(lab.ni, "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                  "--bind-interfaces", "--interface=br0", "--pid-file=", "--user=root",
                  "--conf-file=/dev/null", f"--server={UPSTREAM_DNS}",
                  *(f"--{line}" for line in appedge.dnsmasq_nftsets(NIAcls("lab", (AppAcl(
                      "plc", plc.mac, (), (rule(EGRESS, Action.ALLOW, host=WWW),)),)))))
        lab.serve(lab.wan, "tcp", 80, "inet")
        lab.serve(plc.netns, "tcp", 80, "plc")
        lab.spawn(lab.wan, "iperf3", "-s", "-p", "5201", "-B", SERVERS[0])
        listener = Listener(lab.ni)
        listener.open()
        collector = Collector(listener, recorder, writer.RotatingJsonl(log),
                              lab.nft, reap_every=1.0)
        thread = threading.Thread(target=collector.run, args=(stop,), daemon=True)
        thread.start()
        a.answer(SERVERS[0])
        yield a
    finally:
        stop.set()
        if thread is not None:
            thread.join(10)
        lab.teardown()


def test_host_rule_follows_a_changed_dns_answer_within_one_ttl(acl: AclLab) -> None:
    lab, plc = acl.lab, acl.lab.apps["plc"]
    old, new = SERVERS
    acl.apply(rule(EGRESS, Action.ALLOW, host=WWW, protocol=TCP, ports=(80, 80)))
    assert acl.resolve("plc") == [old]
    assert lab.connect(plc.netns, old, 80) == f"inet sees {UPLINK}"
    assert lab.connect(plc.netns, new, 80, timeout=1) is None  # tcp/80, but not www
    acl.answer(new)
    changed = time.monotonic()
    wait_for(lambda: acl.resolve("plc") == [new], TTL + 5, "the new answer through the NI")
    assert lab.connect(plc.netns, new, 80) == f"inet sees {UPLINK}"
    # the old address goes once no answer lets a client use it anymore
    deadline = changed + TTL + GRACE + 1.5
    while lab.connect(plc.netns, old, 80, timeout=0.5) is not None:
        assert time.monotonic() < deadline, "the old address is still allowed"
    print(f"old address refused {time.monotonic() - changed:.2f} s after the change (TTL {TTL})")
    dns = acl.records(type="dns", app="plc", query=WWW)
    assert {a["data"] for r in dns for a in r["answers"]} >= {old, new}
    acl.answer(old)


def test_limit_rule_caps_a_udp_stream(acl: AclLab) -> None:
    lab, plc = acl.lab, acl.lab.apps["plc"]
    server = SERVERS[0]
    acl.apply(rule(EGRESS, Action.ALLOW, remote=net(f"{server}/32"), protocol=TCP,
                   ports=(5201, 5201)),
              rule(EGRESS, Action.LIMIT, remote=net(f"{server}/32"), protocol=UDP,
                   ports=(5201, 5201), limit=Limit(1_250_000, RateUnit.BYTES, burst=125_000)))
    witness(lab.wan, "udp dport 5201")

    def received() -> tuple[int, float]:
        return witnessed_bytes(lab.wan), time.monotonic()

    # A bytes limit's bucket holds one second of its rate plus the burst, and starts
    # full: the steady rate is measured from the second second on.
    iperf = lab.spawn(plc.netns, "iperf3", "-c", server, "-p", "5201", "-u", "-b", "40M",
                      "-l", "1200", "-t", "6")
    time.sleep(2)
    b1, t1 = received()
    time.sleep(3)
    b2, t2 = received()
    iperf.wait(20)
    got = (b2 - b1) * 8 / (t2 - t1)
    print(f"UDP at 40 Mbit/s through a 10 Mbit/s limit: {got / 1e6:.2f} Mbit/s")
    assert 8e6 <= got <= 12e6, f"{got / 1e6:.1f} Mbit/s through a 10 Mbit/s limit"
    rules = counters.acl_rules(lab.nft_json("table", "inet", "acl"))
    assert rules["plc egress 1"]["bytes"] > (b2 - b1) * 2  # offered 40 Mbit/s, passed 10


def test_ingress_drop_refuses_a_port_maps_source_range(acl: AclLab) -> None:
    lab = acl.lab
    acl.apply(rule(INGRESS, Action.DROP, remote=net(f"{WAN_CLIENT2}/32"), protocol=TCP,
                   ports=(80, 80)))

    def via_port_map(source: str) -> str | None:
        res = sh(sys.executable, "-m", "runner.lab.net", "connect", "tcp", UPLINK, "8080",
                 "--timeout", "1", "--source", source, netns=lab.wan, check=False)
        return res.stdout.strip() if res.returncode == 0 else None

    assert via_port_map(WAN_CLIENT2) is None
    assert via_port_map(WAN_GW) == f"plc sees {WAN_GW}"
    rules = counters.acl_rules(lab.nft_json("table", "inet", "acl"))
    assert rules["plc ingress 0"]["packets"] >= 1
    assert rules["plc portmap plc-web"]["packets"] >= 1


_HELD = """
import socket, sys
c = socket.create_connection((sys.argv[1], 80), timeout=2)
c.sendall(b"hi\\n"); c.recv(100); print("ready", flush=True)
sys.stdin.readline(); c.settimeout(0.2)
try:
    c.sendall(b"hi\\n"); print("ok" if c.recv(100) else "closed")
except OSError:
    print("blocked")
"""


def _held_flow(acl: AclLab, change: tuple[AclRule, ...]) -> tuple[str, float]:
    """A TCP flow of the plc to the inet host, then `change` applied, then one more round
    trip (0.2 s at most): its outcome, and how long the apply took."""
    plc = acl.lab.apps["plc"]
    p = subprocess.Popen(["ip", "netns", "exec", plc.netns, sys.executable, "-c", _HELD,
                          SERVERS[0]], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdin is not None
        assert p.stdout.readline().strip() == "ready"
        took = acl.apply(*change)
        p.stdin.write("go\n")
        p.stdin.flush()
        return p.stdout.readline().strip(), took
    finally:
        p.kill()
        p.wait(5)


def test_acl_change_takes_effect_live_on_running_flows(acl: AclLab) -> None:
    to_old = rule(EGRESS, Action.ALLOW, remote=net(f"{SERVERS[0]}/32"), protocol=TCP,
                  ports=(80, 80))
    to_new = rule(EGRESS, Action.ALLOW, remote=net(f"{SERVERS[1]}/32"), protocol=TCP,
                  ports=(80, 80))
    acl.apply(to_old)
    assert _held_flow(acl, (to_old,))[0] == "ok"  # the same rules: the flow goes on
    # other rules that still allow it: decided again, allowed again, not disturbed
    assert _held_flow(acl, (to_new, to_old))[0] == "ok"
    outcome, took = _held_flow(acl, (to_new,))
    print(f"ACL change applied in {took * 1000:.0f} ms; the running flow: {outcome}")
    assert outcome == "blocked" and took < 0.2
    assert acl.lab.connect(acl.lab.apps["plc"].netns, SERVERS[1], 80) == f"inet sees {UPLINK}"


def test_flow_log_has_byte_counts_drops_and_dns(acl: AclLab) -> None:
    lab, plc = acl.lab, acl.lab.apps["plc"]
    server = SERVERS[0]
    acl.apply(rule(EGRESS, Action.ALLOW, remote=net(f"{server}/32"), protocol=TCP,
                   ports=(5202, 5202)),
              rule(EGRESS, Action.DROP, protocol=UDP, ports=(9, 9)))
    # a transfer whose size is known at both ends (iperf3 -n counts what it wrote into
    # its socket, some of which its teardown discards)
    sink = subprocess.Popen(["ip", "netns", "exec", lab.wan, sys.executable, "-m",
                             "runner.lab.net", "sink", server, "5202"],
                            stdout=subprocess.PIPE, text=True)
    wait_for(lambda: bool(sh("ss", "-Hlnt", "sport = :5202", netns=lab.wan).stdout.strip()),
             10, "the sink")
    sh(sys.executable, "-m", "runner.lab.net", "send", server, "5202", str(20 << 20),
       netns=plc.netns, timeout=60)
    sent = int(sink.communicate(timeout=30)[0])
    assert sent == 20 << 20
    sh(sys.executable, "-c", "import socket; s = socket.socket(socket.AF_INET, "
       f"socket.SOCK_DGRAM); [s.sendto(b'x' * 100, ('{server}', 9)) for _ in range(5)]",
       netns=plc.netns)
    assert lab.connect(lab.wan, UPLINK, 8080) == f"plc sees {WAN_GW}"
    hmi = lab.apps["hmi"]  # and the hmi tries an address not its own: the edge drops it
    sh("ip", "addr", "add", "10.1.0.77/32", "dev", "eth0", netns=hmi.netns)
    sh("ping", "-c2", "-i0.2", "-W1", "-I", "10.1.0.77", GATEWAY, netns=hmi.netns, check=False)
    sh("ip", "addr", "del", "10.1.0.77/32", "dev", "eth0", netns=hmi.netns)

    def data_flow() -> list[dict[str, Any]]:
        return [r for r in acl.records(type="flow", app="plc", dport=5202, verdict="allow")
                if r["bytes_out"] > sent / 2]

    wait_for(lambda: data_flow() and acl.records(verdict="drop", dport=9)
             and acl.records(dir="ingress", app="plc", dport=80)
             and acl.records(reason="edge ip", app="hmi", src="10.1.0.77"), 30,
             "the transfer's, the drops' and the port map's records")
    flow = data_flow()[-1]
    print(f"flow log: {flow['bytes_out']} bytes out (IP) for {sent} bytes of TCP payload")
    assert abs(flow["bytes_out"] - sent) / sent < 0.05, (flow, sent)
    assert flow["rule"] == "plc egress 0" and flow["dst"] == server and flow["src"] == plc.ip
    assert flow["pkts_in"] > 0 and flow["end"] >= flow["start"] > 0
    drop = acl.records(verdict="drop", dport=9)[-1]
    assert drop["app"] == "plc" and drop["reason"] == "acl plc egress 1"
    assert drop["pkts_logged"] == 5
