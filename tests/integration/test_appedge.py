"""The app edge through the real supervisor: manifests with spec.apps, real packets.

One lab for the module (device netns with the supervisor, wan router, inet host
192.0.2.10 and .11 with TCP servers, iperf3 and a DNS server whose answer the
tests change) and one NI:

    plc    declared, fixed 10.5.0.10, ACLs (host www.example.test tcp/80, a UDP limit,
           tcp 5201-5202 to the inet host, drop udp/9, drop ingress from 198.51.100.9),
           port map 8085 -> plc:80; attached with `attach --app plc`
    hmi    declared, fixed 10.5.0.11, no ACLs; port map 8086 -> hmi:80
    scada  declared without an address (a lease under its name), no ACLs
    rogue  not declared: a lease, and every attack of the spoofing tests

Issue 11's "what must be shown" 1-6, each below, plus the flow log over the API.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from ipaddress import IPv4Address
from typing import Any

import pytest

from runner.image.build import build_image
from runner.lab.topology import INET_IP, Lab, sh, wait_for
from runner.lab.witness import unwitness, witness, witnessed, witnessed_bytes
from runner.supervisor.edgewatch import HOST_GRACE
from tests.integration.conftest import RUN_ID

pytestmark = pytest.mark.integration

R = RUN_ID
NI = f"ae-{R}"
NS = f"nr-{NI}"
GW = "10.5.0.1"
UPLINK = "198.51.100.2"
WAN_GW, WAN_CLIENT2 = "198.51.100.1", "198.51.100.9"
INET_2 = "192.0.2.11"
WWW = "www.example.test"
TTL = 2
PLC = ("plc", "02:00:00:00:0e:10", "10.5.0.10")
HMI = ("hmi", "02:00:00:00:0e:11", "10.5.0.11")
SCADA_MAC = "02:00:00:00:0e:12"
# flows end fast in the NI, so that their records come while a test waits
FAST_CT = [f"net.netfilter.nf_conntrack_tcp_timeout_{s}=1"
           for s in ("time_wait", "close", "close_wait", "fin_wait", "last_ack")]

PLC_ACLS = f"""\
        - {{allow: egress, host: {WWW}, protocol: tcp, ports: "80"}}
        - {{limit: egress, remote: {INET_IP}, protocol: udp, ports: "5201", rate: 10Mbit,
           burst: 128KiB}}
        - {{allow: egress, remote: {INET_IP}, protocol: tcp, ports: "5201-5202"}}
        - {{drop: egress, protocol: udp, ports: "9"}}
        - {{drop: ingress, remote: {WAN_CLIENT2}, protocol: tcp, ports: "80"}}
"""


def manifest(plc_acls: str = PLC_ACLS) -> str:
    return f"""\
apiVersion: nirunner/v1
kind: NetworkInstance
metadata: {{name: {NI}}}
spec:
  type: local
  uplink: eth0
  subnet: 10.5.0.0/24
  dns: {{upstream: [{INET_IP}]}}
  dhcp: {{range: {{start: 10.5.0.100, end: 10.5.0.199}}}}
  apps:
    - name: plc
      mac: "{PLC[1]}"
      ip: {PLC[2]}
      acls:
{plc_acls}    - {{name: hmi, mac: "{HMI[1]}", ip: {HMI[2]}}}
    - {{name: scada, mac: "{SCADA_MAC}"}}
  portMaps:
    - {{name: plc-web, protocol: tcp, uplinkPort: 8085, target: plc, targetPort: 80}}
    - {{name: hmi-web, protocol: tcp, uplinkPort: 8086, target: hmi, targetPort: 80}}
"""


class Edge:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.apps: dict[str, str] = {}  # app -> netns
        self.ips: dict[str, str] = {}
        self.macs: dict[str, str] = {}

    def apply(self, text: str) -> float:
        """Apply a manifest; returns when the CLI returned (time.monotonic())."""
        f = self.lab.base / "edge.yaml"
        f.write_text(text)
        self.lab.cli("apply", "-f", str(f))
        return time.monotonic()

    def inspect(self) -> dict[str, Any]:
        return json.loads(self.lab.cli("inspect", NI, "--json").stdout)

    def drops(self, app: str) -> dict[str, int]:
        ports = self.inspect()["appEdge"]["ports"]
        return next(p["drops"] for p in ports if p["mac"] == self.macs[app])

    def rules(self) -> dict[str, dict[str, int]]:
        return self.inspect()["appEdge"]["rules"]

    def connect(self, app: str, host: str, port: int, timeout: float = 2.0,
                proto: str = "tcp") -> str | None:
        return self.lab.connect(self.apps[app], proto, host, port, timeout)

    def resolve(self, app: str, name: str = WWW) -> list[str]:
        res = sh(sys.executable, "-m", "runner.lab.dnsq", GW, name, netns=self.apps[app],
                 check=False)
        return res.stdout.split()

    def spoof(self, app: str, *args: str) -> None:
        sh(sys.executable, "-m", "runner.lab.spoof", args[0], "eth0", *args[1:],
           netns=self.apps[app])

    def neigh_mac(self, netns: str, ip: str, dev: str) -> str | None:
        out = sh("ip", "-j", "neigh", "show", ip, "dev", dev, netns=netns).stdout
        entries = json.loads(out or "[]")
        return entries[0].get("lladdr") if entries else None

    def flows(self, **match: Any) -> list[dict[str, Any]]:
        out = self.lab.cli("flows", NI, "--json").stdout
        recs = [json.loads(line) for line in out.splitlines() if line.strip()]
        return [r for r in recs if all(r.get(k) == v for k, v in match.items())]

    def task_pid(self) -> int:
        st = json.loads(self.lab.cli("status", NI, "--json").stdout)[0]
        return int(st["task"]["pid"])

    def dnsmasq_pid(self) -> str:
        path = self.lab.state_dir / "ni" / NI / "state" / "services.status"
        for line in path.read_text().splitlines():
            w = line.split()
            if w[0] == "dnsmasq" and w[1] == "running":
                return dict(x.split("=", 1) for x in w[2:])["pid"]
        return ""


@pytest.fixture(scope="module")
def edge() -> Iterator[Edge]:
    lab = Lab(f"nre{R}", image_archive=str(build_image().archive))
    try:
        lab.build()
        sh("ip", "addr", "add", f"{INET_2}/24", "dev", "eth0", netns=lab.inet)
        sh("ip", "addr", "add", f"{WAN_CLIENT2}/24", "dev", "w0", netns=lab.wan)
        lab.start_dns({WWW: INET_IP}, ttl=TTL)
        lab.serve(lab.inet, "tcp", 80, "inet")
        lab.start_containerd()
        lab.write_config(lab.image)
        lab.start_supervisor()
        e = Edge(lab)
        e.apply(manifest())
        sh("sysctl", "-qw", *FAST_CT, netns=NS)
        for (name, mac, _), app in ((PLC, "plc"), (HMI, "")):
            # the plc by name (its MAC comes from the declaration), the hmi by its MAC
            e.apps[name] = lab.app(name, NI, "" if app else mac, app)
        e.apps["scada"] = lab.app("scada", NI, SCADA_MAC)
        e.apps["rogue"] = lab.app("rogue", NI)
        for name, netns in e.apps.items():
            e.ips[name] = lab.dhcp(netns, name)
            e.macs[name] = sh("cat", "/sys/class/net/eth0/address", netns=netns).stdout.strip()
            # no RA from the NI ever comes: let the app's kernel take them, so a rogue one shows
            sh("sysctl", "-qw", "net.ipv6.conf.eth0.accept_ra=2", netns=netns)
        lab.serve(e.apps["plc"], "tcp", 80, "plc")
        lab.serve(e.apps["hmi"], "tcp", 80, "hmi")
        lab.serve(e.apps["rogue"], "tcp", 80, "rogue")
        yield e
    finally:
        lab.teardown()


def test_declared_apps_get_their_identity(edge: Edge) -> None:
    assert edge.ips["plc"] == PLC[2] and edge.macs["plc"] == PLC[1]  # attach --app plc
    assert edge.ips["hmi"] == HMI[2]
    assert edge.ips["scada"].startswith("10.5.0.1")  # a lease from the range ...
    assert edge.resolve("hmi", "scada") == [edge.ips["scada"]]  # ... under its name
    ports = {p["mac"]: p["app"] for p in edge.inspect()["appEdge"]["ports"]}
    assert ports == {PLC[1]: "plc", HMI[1]: "hmi", SCADA_MAC: "scada",
                     edge.macs["rogue"]: None}
    bad = edge.lab.cli("attach", NI, "--netns", "/run/netns/" + edge.apps["hmi"],
                       "--ifname", "eth1", "--app", "plcc", check=False)
    assert bad.returncode == 1 and "'plcc' is not a declared app" in bad.stderr


def test_ordinary_traffic_of_every_app_is_unaffected(edge: Edge) -> None:
    """1 (last part): what each app did before the edge, it still does."""
    lab = edge.lab
    for app in ("hmi", "scada", "rogue"):  # no ACLs: anything, as before
        assert lab.ping(edge.apps[app], GW), app
        assert edge.connect(app, INET_IP, 80) == f"inet sees {UPLINK}", app
    for app in ("scada", "rogue"):
        assert edge.connect(app, HMI[2], 80) == f"hmi sees {edge.ips[app]}", app
    assert edge.connect("hmi", edge.ips["rogue"], 80) == f"rogue sees {HMI[2]}"
    # the plc has ACLs: what they allow (and DHCP and DNS to its gateway), nothing else
    assert edge.resolve("plc") == [INET_IP]
    assert edge.connect("plc", INET_IP, 80) == f"inet sees {UPLINK}"
    assert not lab.ping(edge.apps["plc"], GW)
    assert edge.connect("plc", HMI[2], 80, timeout=1) is None  # not allowed by its rules
    assert edge.connect("hmi", PLC[2], 80, timeout=1) is None  # only the port map is
    assert lab.connect(lab.wan, "tcp", UPLINK, 8085) == f"plc sees {WAN_GW}"
    assert lab.connect(lab.wan, "tcp", UPLINK, 8086) == f"hmi sees {WAN_GW}"
    for app in ("plc", "hmi", "scada", "rogue"):
        assert edge.drops(app) == {}, app


# -- 1. spoofing ----------------------------------------------------------------------------


def test_another_apps_address_is_dropped_and_counted(edge: Edge) -> None:
    rogue = edge.apps["rogue"]
    before = edge.drops("rogue").get("ip", 0)
    sh("ip", "addr", "add", f"{HMI[2]}/32", "dev", "eth0", netns=rogue)
    try:
        assert sh("ping", "-c2", "-i0.2", "-W1", "-I", HMI[2], GW, netns=rogue,
                  check=False).returncode != 0
    finally:
        sh("ip", "addr", "del", f"{HMI[2]}/32", "dev", "eth0", netns=rogue)
    assert edge.drops("rogue").get("ip", 0) >= before + 2


def test_gratuitous_arp_for_another_address_cannot_take_the_port_map(edge: Edge) -> None:
    lab, rogue = edge.lab, edge.apps["rogue"]
    before = edge.drops("rogue").get("arp", 0)
    sh("ip", "neigh", "flush", "dev", "br0", netns=NS)
    assert lab.ping(NS, PLC[2]) and edge.neigh_mac(NS, PLC[2], "br0") == PLC[1]
    sh("ip", "addr", "add", f"{PLC[2]}/32", "dev", "eth0", netns=rogue)
    try:
        edge.spoof("rogue", "arp", "--sender-ip", PLC[2])
        assert edge.neigh_mac(NS, PLC[2], "br0") == PLC[1]
        for _ in range(3):  # the port map keeps reaching the plc (3 of 3)
            assert lab.connect(lab.wan, "tcp", UPLINK, 8085) == f"plc sees {WAN_GW}"
    finally:
        sh("ip", "addr", "del", f"{PLC[2]}/32", "dev", "eth0", netns=rogue)
    assert edge.drops("rogue").get("arp", 0) >= before + 3


def test_gateway_arp_poisoning_is_dropped(edge: Edge) -> None:
    hmi = edge.apps["hmi"]
    before = edge.drops("rogue").get("arp", 0)
    sh("ip", "neigh", "flush", "dev", "eth0", netns=hmi)
    assert edge.lab.ping(hmi, GW)
    gw_mac = edge.neigh_mac(hmi, GW, "eth0")
    time.sleep(1.1)  # past the neighbour's locktime, so a reply could override it
    edge.spoof("rogue", "arp", "--sender-ip", GW, "--target-ip", HMI[2], "--to", HMI[1],
               "--reply")
    assert edge.neigh_mac(hmi, GW, "eth0") == gw_mac != edge.macs["rogue"]
    assert edge.drops("rogue").get("arp", 0) >= before + 3


def test_rogue_dhcp_server_is_dropped(edge: Edge) -> None:
    hmi = edge.apps["hmi"]
    witness(hmi, "udp sport 67 udp dport 68")
    edge.spoof("rogue", "dhcp-offer", "--yiaddr", "10.5.0.99")
    time.sleep(0.2)
    assert witnessed(hmi) == 0
    assert edge.drops("rogue").get("dhcp_server", 0) >= 3
    unwitness(hmi)


def test_rogue_router_advertisement_is_dropped(edge: Edge) -> None:
    hmi = edge.apps["hmi"]

    def link_local(netns: str) -> bool:
        out = sh("ip", "-6", "addr", "show", "dev", "eth0", "scope", "link", netns=netns).stdout
        return "inet6" in out and "tentative" not in out

    wait_for(lambda: link_local(edge.apps["rogue"]) and link_local(hmi), 10, "link-local")
    edge.spoof("rogue", "ra")
    time.sleep(0.3)
    assert "fe80::" not in sh("ip", "-6", "route", "show", "default", netns=hmi).stdout
    assert edge.drops("rogue").get("ra", 0) >= 3


def test_frames_from_another_mac_are_dropped(edge: Edge) -> None:
    rogue = edge.apps["rogue"]
    sh("ip", "link", "set", "eth0", "address", "02:00:00:00:0e:67", netns=rogue)
    try:
        sh("ip", "neigh", "flush", "dev", "br0", netns=NS)
        assert not edge.lab.ping(rogue, GW)
    finally:
        sh("ip", "link", "set", "eth0", "address", edge.macs["rogue"], netns=rogue)
    assert edge.drops("rogue").get("mac", 0) >= 1
    assert edge.lab.ping(rogue, GW)  # its own MAC and leased address: fine again


def test_a_released_lease_takes_its_address_away_live(edge: Edge) -> None:
    """Leases from dnsmasq's file, live: a released address is refused from then on, a
    new lease is allowed at once. (The release is our own DHCP client's, from the app.)"""
    from runner.drivers import dhcp

    scada = edge.apps["scada"]
    assert edge.lab.ping(scada, GW)
    lease = dhcp.acquire(scada, "eth0", SCADA_MAC, "scada")
    assert str(lease.address.ip) == edge.ips["scada"]
    dhcp.release_from_client(scada, "eth0", SCADA_MAC, lease)
    leases = edge.lab.state_dir / "ni" / NI / "state" / "dnsmasq.leases"
    wait_for(lambda: SCADA_MAC not in leases.read_text(), 5, "the release in the lease file")
    wait_for(lambda: not edge.lab.ping(scada, GW), 3, "the released address to be refused")
    edge.ips["scada"] = edge.lab.dhcp(scada, "scada")  # and a new lease works at once
    assert edge.lab.ping(scada, GW)


def edge_set(name: str) -> str:
    return sh("nft", "list", "set", "bridge", "edge", name, netns=NS).stdout


def test_a_new_lease_is_allowed_from_its_ack_even_with_the_supervisor_stopped(
        edge: Edge) -> None:
    """The app's first ARP and packet right after the ACK pass: the table learned the
    ACK its NI sent, before (here: without) the supervisor following the lease file;
    once it follows, the address is in mac_ip with the lease's own timeout."""
    from runner.drivers import dhcp

    lab, scada = edge.lab, edge.apps["scada"]
    lease = dhcp.acquire(scada, "eth0", SCADA_MAC, "scada")
    dhcp.release_from_client(scada, "eth0", SCADA_MAC, lease)
    ip = str(lease.address.ip)
    wait_for(lambda: ip not in edge_set("mac_ip"), 5, "the released address to go")
    assert lab.supervisor is not None
    os.killpg(lab.supervisor.pid, signal.SIGSTOP)
    try:
        assert not lab.ping(scada, GW)  # released: refused
        edge.ips["scada"] = lab.dhcp(scada, "scada")
        assert lab.ping(scada, GW)  # ARP and ICMP from the new lease, at once
        assert edge.ips["scada"] not in edge_set("mac_ip")  # nobody told the table
        # raw keys, printed as integers without leading zeros
        acked = (f"{hex(int(SCADA_MAC.replace(':', ''), 16))} . "
                 f"{hex(int(IPv4Address(edge.ips['scada'])))} ")
        assert acked in edge_set("acked")
    finally:
        os.killpg(lab.supervisor.pid, signal.SIGCONT)
    wait_for(lambda: edge.ips["scada"] in edge_set("mac_ip"), 5, "the supervisor's lease")
    # (the fixed addresses' ACKs stay: those are the ports' anyway)
    wait_for(lambda: acked not in edge_set("acked"), 5, "the ACK's element taken over")
    assert lab.ping(scada, GW)


# -- 2. host names --------------------------------------------------------------------------


def test_host_rule_follows_a_changed_dns_answer_within_one_ttl(edge: Edge) -> None:
    lab = edge.lab
    assert edge.resolve("plc") == [INET_IP]
    assert edge.connect("plc", INET_IP, 80) == f"inet sees {UPLINK}"
    assert edge.connect("plc", INET_2, 80, timeout=1) is None  # tcp/80, but not www
    lab.start_dns({WWW: INET_2}, ttl=TTL)
    changed = time.monotonic()
    wait_for(lambda: edge.resolve("plc") == [INET_2], TTL + 5, "the new answer through the NI")
    assert edge.connect("plc", INET_2, 80) == f"inet sees {UPLINK}"
    # the old address goes once no answer lets a client use it (TTL + the collector's grace)
    while edge.connect("plc", INET_IP, 80, timeout=0.5) is not None:
        assert time.monotonic() < changed + TTL + HOST_GRACE + 2, "the old address is allowed"
    print(f"old address refused {time.monotonic() - changed:.2f} s after the DNS change "
          f"(TTL {TTL} s)")
    lab.start_dns({WWW: INET_IP}, ttl=TTL)
    wait_for(lambda: edge.resolve("plc") == [INET_IP], TTL + 5, "the old answer back")


# -- 3. limit --------------------------------------------------------------------------------


def test_limit_rule_caps_a_udp_stream(edge: Edge) -> None:
    lab = edge.lab
    server = lab.spawn(lab.inet, "iperf3", "-s", "-p", "5201", "-B", INET_IP)
    wait_for(lambda: bool(sh("ss", "-Hlnt", "sport = :5201", netns=lab.inet).stdout.strip()),
             10, "iperf3 server")
    witness(lab.inet, "udp dport 5201")

    def received() -> tuple[int, float]:
        return witnessed_bytes(lab.inet), time.monotonic()

    iperf = lab.spawn(edge.apps["plc"], "iperf3", "-c", INET_IP, "-p", "5201", "-u",
                      "-b", "40M", "-l", "1200", "-t", "6")
    # a bytes limit's bucket holds one second of its rate plus the burst, and starts
    # full: the steady rate is measured from the second second on
    time.sleep(2)
    b1, t1 = received()
    time.sleep(3)
    b2, t2 = received()
    iperf.wait(20)
    got = (b2 - b1) * 8 / (t2 - t1)
    print(f"UDP offered at 40 Mbit/s through a 10 Mbit/s limit: {got / 1e6:.2f} Mbit/s")
    assert 8e6 <= got <= 12e6, f"{got / 1e6:.1f} Mbit/s through a 10 Mbit/s limit"
    assert edge.rules()["plc egress 1"]["bytes"] > (b2 - b1) * 2  # offered 40, passed 10
    server.kill()
    unwitness(lab.inet)


# -- 4. ingress drop of a port map's source range ------------------------------------------


def test_ingress_drop_refuses_a_port_maps_source_range(edge: Edge) -> None:
    lab = edge.lab

    def via_port_map(source: str) -> str | None:
        res = sh(sys.executable, "-m", "runner.lab.net", "connect", "tcp", UPLINK, "8085",
                 "--timeout", "1", "--source", source, netns=lab.wan, check=False)
        return res.stdout.strip() if res.returncode == 0 else None

    before = edge.rules().get("plc ingress 4", {}).get("packets", 0)
    assert via_port_map(WAN_CLIENT2) is None
    assert via_port_map(WAN_GW) == f"plc sees {WAN_GW}"
    rules = edge.rules()
    assert rules["plc ingress 4"]["packets"] > before
    assert rules["plc portmap plc-web"]["packets"] >= 1


# -- 5. the flow log -------------------------------------------------------------------------

def _follow(lab: Lab) -> tuple[subprocess.Popen[str], list[dict[str, Any]], threading.Event]:
    """`nirunner flows NI -f --json` running, its records collected as they come."""
    p = subprocess.Popen([sys.executable, "-m", "runner.cli.main", "flows", NI, "-f", "--json",
                          "--last", "0", "--socket", lab.socket], stdout=subprocess.PIPE,
                         text=True)
    got: list[dict[str, Any]] = []
    first = threading.Event()

    def read() -> None:
        assert p.stdout is not None
        for line in p.stdout:
            got.append(json.loads(line))
            first.set()

    threading.Thread(target=read, daemon=True).start()
    return p, got, first


def test_flow_log_has_apps_byte_counts_drops_and_dns_and_streams(edge: Edge) -> None:
    lab = edge.lab
    p, streamed, _ = _follow(lab)
    try:
        time.sleep(0.5)  # it follows from here on
        started = len(streamed)
        # a transfer whose size is known at both ends
        sink = subprocess.Popen(["ip", "netns", "exec", lab.inet, sys.executable, "-m",
                                 "runner.lab.net", "sink", INET_IP, "5202"],
                                stdout=subprocess.PIPE, text=True)
        wait_for(lambda: bool(sh("ss", "-Hlnt", "sport = :5202",
                                 netns=lab.inet).stdout.strip()), 10, "the sink")
        sh(sys.executable, "-m", "runner.lab.net", "send", INET_IP, "5202", str(20 << 20),
           netns=edge.apps["plc"], timeout=60)
        sent = int(sink.communicate(timeout=30)[0])
        assert sent == 20 << 20
        assert edge.resolve("plc") == [INET_IP]
        sh(sys.executable, "-c", "import socket; s = socket.socket(socket.AF_INET, "
           f"socket.SOCK_DGRAM); [s.sendto(b'x' * 100, ('{INET_IP}', 9)) for _ in range(5)]",
           netns=edge.apps["plc"])
        assert edge.connect("hmi", INET_IP, 80) == f"inet sees {UPLINK}"
        rogue = edge.apps["rogue"]  # and an address not its own: the edge drops it
        sh("ip", "addr", "add", f"{HMI[2]}/32", "dev", "eth0", netns=rogue)
        sh("ping", "-c2", "-i0.2", "-W1", "-I", HMI[2], GW, netns=rogue, check=False)
        sh("ip", "addr", "del", f"{HMI[2]}/32", "dev", "eth0", netns=rogue)

        def data_flow(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [r for r in recs if r.get("app") == "plc" and r.get("dport") == 5202
                    and r.get("verdict") == "allow" and r["bytes_out"] > sent / 2]

        wait_for(lambda: data_flow(streamed) and any(
            r.get("verdict") == "drop" and r.get("dport") == 9 for r in streamed) and any(
            r.get("type") == "dns" and r.get("app") == "plc" for r in streamed) and any(
            r.get("app") == "hmi" and r.get("dport") == 80 for r in streamed) and any(
            r.get("reason") == "edge ip" and r.get("src") == HMI[2] for r in streamed), 30,
            "the transfer's, the drops', the DNS answer's and the hmi's records, streamed")
        assert p.poll() is None and len(streamed) > started  # still following
    finally:
        p.terminate()
        p.wait(10)
    flow = data_flow(edge.flows())[-1]  # and kept: the same records, read back
    print(f"flow log: {flow['bytes_out']} bytes out (IP) for {sent} bytes of TCP payload")
    assert abs(flow["bytes_out"] - sent) / sent < 0.05, (flow, sent)
    assert flow["rule"] == "plc egress 2" and flow["src"] == PLC[2] and flow["dst"] == INET_IP
    assert flow["pkts_in"] > 0 and flow["end"] >= flow["start"] > 0
    drop = edge.flows(verdict="drop", dport=9)[-1]
    assert drop["app"] == "plc" and drop["reason"] == "acl plc egress 3"
    assert not edge.flows(verdict="drop", dport=67)  # DHCP broadcasts are no app flows
    assert drop["pkts_logged"] == 5
    dns = edge.flows(type="dns", app="plc", query=WWW)[-1]
    assert dns["answers"][0]["data"] == INET_IP and dns["client"] == PLC[2]
    # the spoofed packets, attributed by MAC to the rogue (by its lease's hostname)
    spoofed = edge.flows(verdict="drop", reason="edge ip", src=HMI[2])[-1]
    assert spoofed["app"] == "rogue" and spoofed["mac"] == edge.macs["rogue"]
    assert spoofed["pkts_logged"] == 2
    only_hmi = [json.loads(x) for x in edge.lab.cli("flows", NI, "--json", "--app", "hmi")
                .stdout.splitlines()]
    assert only_hmi and {r["app"] for r in only_hmi} == {"hmi"}
    human = edge.lab.cli("flows", NI, "--app", "plc", "--last", "3").stdout.splitlines()
    assert len(human) == 3 and all("  plc  " in line for line in human), human
    print("\n".join(edge.lab.cli("flows", NI, "--last", "8").stdout.splitlines()))


# -- 6. a live ACL change --------------------------------------------------------------------

_HELD = """
import socket, sys
c = socket.create_connection((sys.argv[1], 80), timeout=2)
c.sendall(b"hi\\n"); c.recv(100); print("ready", flush=True)
sys.stdin.readline(); c.settimeout(0.2)
try:
    c.sendall(b"hi\\n"); print("ok" if c.recv(100) else "closed", flush=True)
except OSError:
    print("blocked", flush=True)
"""


def _held(edge: Edge, change: str) -> tuple[str, float]:
    """A TCP flow of the plc to www (tcp/80), then `change` applied with `nirunner apply`,
    then at once one more round trip (0.2 s at most): its outcome, and the seconds from
    the apply's return to that round trip's start."""
    p = subprocess.Popen(["ip", "netns", "exec", edge.apps["plc"], sys.executable, "-c", _HELD,
                          INET_IP], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdin is not None
        assert p.stdout.readline().strip() == "ready"
        returned = edge.apply(change)
        p.stdin.write("go\n")
        p.stdin.flush()
        sent = time.monotonic()
        return p.stdout.readline().strip(), sent - returned
    finally:
        p.kill()
        p.wait(5)


def test_acl_change_takes_effect_live_within_200ms(edge: Edge) -> None:
    assert edge.resolve("plc") == [INET_IP]
    pid, dnsmasq = edge.task_pid(), edge.dnsmasq_pid()
    # another rule that still allows it: decided again, allowed again, not disturbed
    extra = PLC_ACLS + "        - {allow: egress, remote: 203.0.113.0/24}\n"
    assert _held(edge, manifest(extra))[0] == "ok"
    # www's flows allowed no more (the host rule now only for udp): the running flow stops
    cut = PLC_ACLS.replace(f'host: {WWW}, protocol: tcp', f'host: {WWW}, protocol: udp')
    outcome, after = _held(edge, manifest(cut))
    print(f"ACL change: the running flow's round trip {after * 1000:.1f} ms after the apply "
          f"returned: {outcome}")
    assert outcome == "blocked" and after < 0.2
    assert edge.connect("plc", INET_IP, 80, timeout=1) is None
    assert edge.task_pid() == pid and edge.dnsmasq_pid() == dnsmasq  # live: same processes
    edge.apply(manifest())
    assert edge.connect("plc", INET_IP, 80) == f"inet sees {UPLINK}"
    assert edge.task_pid() == pid


def test_a_new_host_name_restarts_dnsmasq_alone(edge: Edge) -> None:
    pid, dnsmasq = edge.task_pid(), edge.dnsmasq_pid()
    edge.lab.start_dns({WWW: INET_IP, "api.example.test": INET_2}, ttl=TTL)
    added = PLC_ACLS + "        - {allow: egress, host: example.test, protocol: tcp}\n"
    applied = edge.apply(manifest(added))
    wait_for(lambda: edge.dnsmasq_pid() not in ("", dnsmasq), 5, "dnsmasq restarted")
    print(f"dnsmasq restarted {time.monotonic() - applied:.2f} s after the apply returned")
    assert edge.task_pid() == pid
    assert edge.resolve("plc", "api.example.test") == [INET_2]  # under example.test
    assert edge.connect("plc", INET_2, 80) == f"inet sees {UPLINK}"
    edge.apply(manifest())  # its set goes with the rule
    assert edge.connect("plc", INET_2, 80, timeout=1) is None
    assert edge.task_pid() == pid


# -- the reconciler's view: healing and adoption ------------------------------------------


def test_edge_tables_removed_behind_its_back_are_healed(edge: Edge) -> None:
    """table bridge edge is made anew with its ports and the leases of the moment (its
    ports are items that live in it), table inet acl with the leased addresses."""
    lab, rogue = edge.lab, edge.apps["rogue"]
    assert lab.ping(rogue, GW)
    pid = edge.task_pid()
    for family, table in (("bridge", "edge"), ("inet", "acl")):
        name = f"table {family} {table}"
        sh("nft", "delete", "table", family, table, netns=NS)
        t0 = time.monotonic()
        wait_for(lambda name=name: name in sh("nft", "list", "tables", netns=NS).stdout,  # type: ignore[misc]
                 3, f"{name} restored")
        print(f"{name}: restored in {time.monotonic() - t0:.2f} s")
        wait_for(lambda: lab.ping(rogue, GW), 3, "the leased app's traffic")
    assert edge.resolve("plc") == [INET_IP]  # the next answer refills the host set
    assert edge.connect("plc", INET_IP, 80) == f"inet sees {UPLINK}"
    assert lab.connect(lab.wan, "tcp", UPLINK, 8085) == f"plc sees {WAN_GW}"
    assert edge.task_pid() == pid
    assert "healed" in lab.cli("events").stdout


def test_a_restarted_supervisor_adopts_the_edge_as_it_is(edge: Edge) -> None:
    lab = edge.lab
    pid = edge.task_pid()
    lab.stop_supervisor()
    lab.start_supervisor()
    events = lab.cli("events").stdout
    assert "1 NIs, 1 adopted as they were" in events, events[-2000:]
    assert edge.task_pid() == pid
    assert lab.ping(edge.apps["rogue"], GW)  # its lease followed again
    scada = edge.apps["scada"]
    ip = edge.ips["scada"]
    edge.ips["scada"] = lab.dhcp(scada, "scada")  # a renewal, after the restart
    assert edge.ips["scada"] == ip and lab.ping(scada, GW)
    wait_for(lambda: bool(edge.flows(type="dns")), 5, "the flow log still there")
