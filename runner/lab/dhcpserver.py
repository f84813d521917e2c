"""An NI's LAN in miniature, for driver tests: a lab netns with a bridge and dnsmasq.

The bridge has a fixed MAC and the gateway address; dnsmasq serves DHCP and DNS
on it with the same settings that matter in a real NI (no-ping,
dhcp-authoritative, a dhcp-hostsfile re-read on SIGHUP, its own lease file).
Every name carries the caller's prefix; `stop` removes all of it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from runner.lab.topology import sh, wait_for

BRIDGE = "br0"
BRIDGE_MAC = "02:00:00:aa:00:01"


@dataclass
class MiniNI:
    prefix: str  # unique per test run: every netns and file starts with it
    subnet: str = "10.9.0"  # a /24: .1 is the gateway, .100-.199 the pool
    domain: str = "lab.test"
    made: list[str] = field(default_factory=list)  # netns, for removal
    proc: subprocess.Popen[bytes] | None = None
    plugs: int = 0

    def __post_init__(self) -> None:
        self.netns = f"{self.prefix}-ni"
        self.base = Path("/run") / self.prefix
        self.gateway = f"{self.subnet}.1"
        self.leases = self.base / "dnsmasq.leases"
        self.hosts = self.base / "dhcp-hosts"

    def add_netns(self, name: str) -> str:
        sh("ip", "netns", "add", name)
        self.made.append(name)
        sh("ip", "link", "set", "lo", "up", netns=name)
        return name

    def start(self, dhcp: bool = True) -> MiniNI:
        self.base.mkdir(parents=True, exist_ok=True)
        self.hosts.write_text("")
        self.add_netns(self.netns)
        sh("ip", "link", "add", BRIDGE, "address", BRIDGE_MAC, "type", "bridge",
           netns=self.netns)
        sh("ip", "addr", "add", f"{self.gateway}/24", "dev", BRIDGE, netns=self.netns)
        sh("ip", "link", "set", BRIDGE, "up", netns=self.netns)
        if dhcp:
            self._dnsmasq()
        return self

    def _dnsmasq(self) -> None:
        args = ["dnsmasq", "--conf-file=/dev/null", "--keep-in-foreground", "--no-resolv",
                "--no-hosts", f"--interface={BRIDGE}", "--bind-interfaces", "--no-ping",
                "--dhcp-authoritative", "--user=root", "--group=",
                f"--dhcp-range={self.subnet}.100,{self.subnet}.199,255.255.255.0,3600s",
                f"--dhcp-leasefile={self.leases}", f"--dhcp-hostsfile={self.hosts}",
                f"--pid-file={self.base / 'dnsmasq.pid'}",
                f"--log-facility={self.base / 'dnsmasq.log'}", "--log-dhcp",
                f"--domain={self.domain}", f"--local=/{self.domain}/"]
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.netns, *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)

        def listening() -> bool:
            out = sh("ss", "-Hlnu", "sport = :67", netns=self.netns, check=False).stdout
            return bool(out.strip())

        wait_for(listening, 10, f"dnsmasq in {self.netns}")

    def plug(self, app_netns: str, mac: str, ifname: str = "eth0") -> str:
        """A veth from the bridge into `app_netns` (its end: `ifname`, `mac`, up)."""
        self.plugs += 1
        host_if = f"vp{self.plugs}"
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ifname,
           "netns", app_netns, "address", mac, netns=self.netns)
        sh("ip", "link", "set", host_if, "master", BRIDGE, "up", netns=self.netns)
        sh("ip", "link", "set", ifname, "up", netns=app_netns)
        return host_if

    def set_hosts(self, lines: list[str]) -> None:
        """The dhcp-hostsfile, then a SIGHUP so dnsmasq reads it again."""
        log = self.base / "dnsmasq.log"
        seen = log.read_text().count(f"read {self.hosts}")  # count before: it may be quick
        self.hosts.write_text("".join(f"{line}\n" for line in lines))
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGHUP)  # `ip netns exec` execs dnsmasq: same pid
        wait_for(lambda: log.read_text().count(f"read {self.hosts}") > seen, 5,
                 "dnsmasq to re-read its hosts file")

    def lease_lines(self) -> list[list[str]]:
        """dnsmasq's lease file: [expiry, mac, ip, hostname, client-id] per lease."""
        try:
            return [line.split() for line in self.leases.read_text().splitlines() if line]
        except FileNotFoundError:
            return []

    def wait_leases(self, pred: object, what: str, timeout: float = 5) -> list[list[str]]:
        wait_for(lambda: pred(self.lease_lines()), timeout, what)  # type: ignore[operator]
        return self.lease_lines()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for name in reversed(self.made):
            sh("ip", "netns", "del", name, check=False)
        self.made.clear()
        with contextlib.suppress(FileNotFoundError):
            for f in self.base.iterdir():
                f.unlink()
            self.base.rmdir()
