"""A hand-made NI for the app-edge tests: no supervisor, no containerd, only `ip` and `nft`.

    wan netns: w0 198.51.100.1/24 (+ .9, a second client); lo 192.0.2.20, .21 (servers), .53 (DNS)
       |
    ni netns:  uplink0 198.51.100.2/24, br0 10.1.0.1/24 (fixed MAC), table inet ni as nirunner
       |       renders it (masquerade, port map 8080 -> plc:80), then the app-edge tables
    app netns: eth0 with a fixed MAC and address, default via 10.1.0.1

Every name starts with the lab's prefix; `teardown` removes all of it by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from runner.lab.topology import sh, wait_for
from runner.model.types import Protocol
from runner.net import names
from runner.net.rules import NIPortMap, NIRules
from runner.render import nft

GATEWAY = "10.1.0.1"
BRIDGE_MAC = "02:00:00:00:00:01"
UPLINK, WAN_GW, WAN_CLIENT2 = "198.51.100.2", "198.51.100.1", "198.51.100.9"
SERVERS = ("192.0.2.20", "192.0.2.21")
UPSTREAM_DNS = "192.0.2.53"
PORT_MAP = NIPortMap("plc-web", Protocol.TCP, 8080, IPv4Address("10.1.0.10"), 80)


@dataclass
class App:
    name: str
    netns: str
    port: str  # its bridge port in the NI
    mac: str
    ip: str


@dataclass
class EdgeLab:
    prefix: str
    apps: dict[str, App] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ni, self.wan = f"{self.prefix}-ni", f"{self.prefix}-wan"

    def build(self) -> None:
        for ns in (self.ni, self.wan):
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "set", "lo", "up", netns=ns)
        sh("ip", "link", "add", "uplink0", "netns", self.ni, "type", "veth",
           "peer", "w0", "netns", self.wan)
        batch = {
            self.wan: [f"addr add {WAN_GW}/24 dev w0", f"addr add {WAN_CLIENT2}/24 dev w0",
                       "link set w0 up",
                       *(f"addr add {ip}/32 dev lo" for ip in (*SERVERS, UPSTREAM_DNS))],
            self.ni: [f"addr add {UPLINK}/24 dev uplink0", "link set uplink0 up",
                      f"link add br0 address {BRIDGE_MAC} type bridge",
                      f"addr add {GATEWAY}/24 dev br0", "link set br0 up",
                      f"route add default via {WAN_GW}"],
        }
        for ns, cmds in batch.items():
            sh("ip", "-batch", "-", netns=ns, input="\n".join(cmds) + "\n")
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1",
           netns=self.ni)
        rules = NIRules(self.ni, uplink=True, forward_out=True, port_maps=(PORT_MAP,))
        self.nft(nft.ni_ruleset(rules))

    def app(self, name: str, mac: str, ip: str) -> App:
        ns = f"{self.prefix}-{name}"
        port = names.app_if(f"{self.prefix}/{name}")
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", port, "netns", self.ni, "type", "veth", "peer", "eth0",
           "netns", ns)
        sh("ip", "-batch", "-", netns=self.ni,
           input=f"link set {port} master br0\nlink set {port} up\n")
        sh("ip", "-batch", "-", netns=ns, input=(
            f"link set eth0 address {mac}\nlink set lo up\nlink set eth0 up\n"
            f"addr add {ip}/24 dev eth0\nroute add default via {GATEWAY}\n"))
        # no RA from our own gateway would ever come: let the app's kernel take them all,
        # so a rogue one shows
        sh("sysctl", "-qw", "net.ipv6.conf.eth0.accept_ra=2", netns=ns)
        self.apps[name] = App(name, ns, port, mac, ip)
        return self.apps[name]

    # -- helpers --------------------------------------------------------------------

    def nft(self, text: str) -> None:
        sh("nft", "-f", "-", netns=self.ni, input=text)

    def nft_json(self, *what: str) -> str:
        return sh("nft", "-j", "list", *what, netns=self.ni).stdout

    def spawn(self, netns: str, *cmd: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(["ip", "netns", "exec", netns, *cmd], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def serve(self, netns: str, proto: str, port: int, name: str, host: str = "") -> None:
        """A lab server answering `<name> sees <client>`; waits until it listens."""
        self.spawn(netns, sys.executable, "-m", "runner.lab.net", "serve", proto, str(port),
                   "--name", name, "--seconds", "300")
        kind = "-t" if proto == "tcp" else "-u"

        def listening() -> bool:
            out = sh("ss", "-Hln", kind, f"sport = :{port}", netns=netns, check=False).stdout
            return bool(out.strip())

        wait_for(listening, 10, f"{proto} server on {netns}:{port}")

    def connect(self, netns: str, host: str, port: int, timeout: float = 2.0,
                proto: str = "tcp") -> str | None:
        res = sh(sys.executable, "-m", "runner.lab.net", "connect", proto, host, str(port),
                 "--timeout", str(timeout), netns=netns, check=False, timeout=timeout + 10)
        return res.stdout.strip() if res.returncode == 0 else None

    def ping(self, netns: str, host: str) -> bool:
        return sh("ping", "-c1", "-W1", host, netns=netns, check=False).returncode == 0

    def spoof(self, app: App, *args: str) -> None:
        sh(sys.executable, "-m", "runner.lab.spoof", args[0], "eth0", *args[1:],
           netns=app.netns)

    def neigh_mac(self, netns: str, ip: str) -> str | None:
        out = sh("ip", "-j", "neigh", "show", ip, netns=netns).stdout
        entries = json.loads(out or "[]")
        return entries[0].get("lladdr") if entries else None

    def teardown(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
        for ns in [*(a.netns for a in self.apps.values()), self.ni, self.wan]:
            sh("ip", "netns", "del", ns, check=False)
