"""etcd clusters for tests and demos: Debian's etcd-server, TLS for clients and peers.

    lab = EtcdLab("nrf1a2b", size=3)                  # members in lab netns
    lab.build(); lab.start()
    ns = lab.host("op", 100)      # a client netns on the lab network, 198.18.0.100
    ...
    lab.teardown()

With `loopback=True` the members listen on 127.0.0.1 (free ports) instead, so
that the test process itself can be a client without entering a namespace.

In netns mode every member has its own netns `<prefix>-e<i>` (198.18.0.1<i>),
plugged with a veth into a bridge in the switch netns `<prefix>-esw`; clients
(devices, the operator) are plugged the same way. 198.18.0.0/24 is a benchmark
range that no one routes, and it exists only inside the lab's namespaces.
Every name starts with the lab prefix; data dirs, certificates and logs live in
/run/<prefix>/etcd and are removed at teardown.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from runner.lab.pki import CertFiles, LabCA
from runner.lab.topology import LabError, sh, wait_for

NET = "198.18.0"
CLIENT_PORT, PEER_PORT = 2379, 2380


@dataclass
class Member:
    name: str
    ip: str
    client_port: int
    peer_port: int
    netns: str | None
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"https://{self.ip}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"https://{self.ip}:{self.peer_port}"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def in_netns(netns: str | None, cmd: list[str]) -> list[str]:
    """`cmd` run in the lab netns (nsenter: same mounts, so paths stay visible)."""
    return ["nsenter", f"--net=/run/netns/{netns}", *cmd] if netns else cmd


@dataclass
class EtcdLab:
    prefix: str
    size: int = 3
    loopback: bool = False
    members: list[Member] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.base = Path("/run") / self.prefix / "etcd"
        self.switch = f"{self.prefix}-esw"
        self.pki = LabCA(self.base / "pki")
        self._netns: list[str] = []  # made by us, deleted at teardown
        self._links: dict[str, str] = {}  # client netns -> its port on the switch
        for i in range(1, self.size + 1):
            name = f"m{i}"
            if self.loopback:
                ip, cport, pport, ns = "127.0.0.1", _free_port(), _free_port(), None
            else:
                ip, cport, pport, ns = f"{NET}.{10 + i}", CLIENT_PORT, PEER_PORT, \
                    f"{self.prefix}-e{i}"
            self.members.append(Member(name, ip, cport, pport, ns, self.base / name,
                                       self.base / f"{name}.log"))

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    @property
    def ca(self) -> str:
        return self.pki.ca

    def client_cert(self, cn: str) -> CertFiles:
        """A client certificate whose CN is the etcd user `cn` (issued once)."""
        name = f"client-{cn}"
        if (self.pki.dir / f"{name}.pem").exists():
            return CertFiles(str(self.pki.dir / f"{name}.pem"), str(self.pki.dir / f"{name}.key"))
        return self.pki.issue(name, cn, server=False)

    # -- network -------------------------------------------------------------------

    def _add_netns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self._netns.append(name)
        sh("ip", "link", "set", "lo", "up", netns=name)

    def build(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.pki.create(f"{self.prefix} lab CA")
        for m in self.members:
            self.pki.issue(m.name, m.name, ips=[m.ip], dns=["localhost"])
        if self.loopback:
            return
        self._add_netns(self.switch)
        sh("ip", "link", "add", "br0", "type", "bridge", netns=self.switch)
        sh("ip", "link", "set", "br0", "up", netns=self.switch)
        for i, m in enumerate(self.members, start=1):
            assert m.netns is not None
            self._add_netns(m.netns)
            self.attach(m.netns, "eth0", 10 + i)

    def attach(self, netns: str, ifname: str, host: int) -> str:
        """Plug `netns` into the lab network as 198.18.0.<host>; returns that address."""
        port = f"s{host}"
        ip = f"{NET}.{host}"
        sh("ip", "link", "add", ifname, "netns", netns, "type", "veth",
           "peer", "name", port, "netns", self.switch)
        sh("ip", "link", "set", port, "master", "br0", netns=self.switch)
        sh("ip", "link", "set", port, "up", netns=self.switch)
        sh("ip", "addr", "add", f"{ip}/24", "dev", ifname, netns=netns)
        sh("ip", "link", "set", ifname, "up", netns=netns)
        self._links[netns] = port
        return ip

    def host(self, name: str, host: int) -> str:
        """A new client netns `<prefix>-<name>` on the lab network; returns its name."""
        ns = f"{self.prefix}-{name}"
        self._add_netns(ns)
        self.attach(ns, "eth0", host)
        return ns

    def set_link(self, netns: str, up: bool) -> None:
        """Cut `netns` off the lab network (or plug it back) at the switch."""
        sh("ip", "link", "set", self._links[netns], "up" if up else "down", netns=self.switch)

    # -- members -------------------------------------------------------------------

    def _command(self, m: Member) -> list[str]:
        cert, key = self.pki.dir / f"{m.name}.pem", self.pki.dir / f"{m.name}.key"
        cluster = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        tls = ["--client-cert-auth", "--trusted-ca-file", self.ca, "--cert-file", str(cert),
               "--key-file", str(key), "--peer-client-cert-auth", "--peer-trusted-ca-file",
               self.ca, "--peer-cert-file", str(cert), "--peer-key-file", str(key)]
        return in_netns(m.netns, [
            "etcd", "--name", m.name, "--data-dir", str(m.data_dir),
            "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", cluster, "--initial-cluster-token", self.prefix,
            "--initial-cluster-state", "new", "--logger", "zap", "--log-outputs", "stderr",
            *tls])

    def start_member(self, m: Member) -> None:
        """Start (or restart: its data dir is kept) one member, without waiting."""
        if m.running():
            return
        m.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(m.log, "ab") as log:
            m.proc = subprocess.Popen(self._command(m), stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=log, start_new_session=True)

    def wait_ready(self, m: Member, timeout: float = 30, since: int = 0) -> None:
        """Until `m` logs that it serves clients (it has joined a cluster with a leader)."""
        def ready() -> bool:
            if not m.running():
                raise LabError(f"etcd {m.name} exited: {self.log_tail(m)}")
            with open(m.log, "rb") as f:
                f.seek(since)
                return b"serving client traffic securely" in f.read()
        wait_for(ready, timeout, f"etcd member {m.name}", step=0.1)

    def start(self, timeout: float = 60) -> None:
        for m in self.members:
            self.start_member(m)
        for m in self.members:
            self.wait_ready(m, timeout)

    def kill_member(self, m: Member, sig: int = signal.SIGKILL) -> None:
        if m.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(m.proc.pid, sig)
        try:
            m.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(m.proc.pid, signal.SIGKILL)
            m.proc.wait(5)
        m.proc = None

    def restart_member(self, m: Member, timeout: float = 60) -> None:
        size = m.log.stat().st_size if m.log.exists() else 0
        self.start_member(m)
        self.wait_ready(m, timeout, since=size)

    def log_tail(self, m: Member, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(m.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    # -- teardown ------------------------------------------------------------------

    def teardown(self) -> None:
        for m in self.members:
            self.kill_member(m)
        for ns in reversed(self._netns):
            sh("ip", "netns", "del", ns, check=False)
        self._netns.clear()
        shutil.rmtree(self.base, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.base.parent.rmdir()  # /run/<prefix>, when nothing else of the lab is there
