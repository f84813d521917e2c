"""VPN peers for the lab: a remote site behind the wan router, running the host's charon.

    device eth0/eth1 ... wan router ---- 198.18.<i>.0/24 ---- peer<i> (198.18.<i>.2)
                                                                |  10.99.1.0/24 (and more)
                                                              site<i> host (10.99.1.10, ...)

Each peer is a netns `<lab prefix>-peer<i>` with its own charon (charon-systemd
from the host, its own strongswan.conf, swanctl dir, VICI socket and log under
`<lab base>/peer<i>/`), answering IKE from VPN NIs (as responder). Behind it a
site host `<lab prefix>-site<i>` holds an address in each site subnet, so an app
in a VPN NI can talk to a real host through the tunnel. The host has no kernel
ESP here, so peers use kernel-libipsec as well (it always UDP-encapsulates, which
is what VPN NIs behind the device's NAT need anyway).

Everything carries the lab's prefix and is removed by the lab's teardown
(namespaces by name, processes by their group); `stop` ends only this peer's charon.

Certificates for tests: `make_ca` and `issue` use strongSwan's `pki`.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from runner.drivers import xfrm
from runner.lab.topology import LabError, sh, wait_for

if TYPE_CHECKING:
    from runner.lab.topology import Lab

WAN_NS_PREFIX = "198.18"  # peer i: 198.18.<i>.0/24 between the wan router and the peer


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path


@dataclass(frozen=True)
class CA:
    cert: Path
    key: Path


def pki(*args: str, out: Path | None = None) -> bytes:
    res = subprocess.run(["pki", *args], capture_output=True, timeout=30, check=False)
    if res.returncode != 0:
        raise LabError(f"pki {' '.join(args)}: {res.stderr.decode(errors='replace').strip()}")
    if out is not None:
        out.write_bytes(res.stdout)
    return res.stdout


def make_ca(folder: Path, name: str = "nirunner lab CA") -> CA:
    folder.mkdir(parents=True, exist_ok=True)
    ca = CA(folder / "ca.pem", folder / "ca.key")
    pki("--gen", "--type", "ecdsa", "--size", "256", "--outform", "pem", out=ca.key)
    ca.key.chmod(0o600)
    pki("--self", "--ca", "--lifetime", "30", "--in", str(ca.key), "--dn", f"CN={name}",
        "--outform", "pem", out=ca.cert)
    return ca


def issue(ca: CA, folder: Path, name: str) -> Cert:
    """A key and a certificate for `name` (its CN and a DNS subjectAltName)."""
    folder.mkdir(parents=True, exist_ok=True)
    c = Cert(folder / f"{name}.pem", folder / f"{name}.key")
    pki("--gen", "--type", "ecdsa", "--size", "256", "--outform", "pem", out=c.key)
    c.key.chmod(0o600)
    pub = pki("--pub", "--in", str(c.key))
    pub_file = folder / f"{name}.pub"
    pub_file.write_bytes(pub)
    pki("--issue", "--cacert", str(ca.cert), "--cakey", str(ca.key), "--in", str(pub_file),
        "--dn", f"CN={name}", "--san", name, "--lifetime", "30", "--outform", "pem", out=c.cert)
    return c


@dataclass(frozen=True)
class PeerConn:
    """One connection the peer answers: an edge's identity, its subnet, its credentials."""

    name: str
    local_id: str  # the peer's id (the NI's remoteId)
    remote_id: str  # the NI's localId
    remote_ts: str  # the NI's subnet
    psk: bytes | None = None
    cert: Cert | None = None  # the peer's own certificate (with ca)
    ca: CA | None = None  # the CA of the edge's certificate


@dataclass
class VpnPeer:
    lab: Lab
    index: int  # 1..250: names and addresses
    site_subnets: tuple[str, ...] = ("10.99.1.0/24",)
    conns: list[PeerConn] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        i = self.index
        self.ns = f"{self.lab.prefix}-peer{i}"
        self.site_ns = f"{self.lab.prefix}-site{i}"
        self.dir = self.lab.base / f"peer{i}"
        self.address = f"{WAN_NS_PREFIX}.{i}.2"
        self.wan_address = f"{WAN_NS_PREFIX}.{i}.1"

    # -- addresses -----------------------------------------------------------------------

    def site_host(self, subnet: str | None = None) -> str:
        """The site host's address in `subnet` (default: the first site subnet): .10."""
        net = ipaddress.IPv4Network(subnet or self.site_subnets[0])
        return str(net.network_address + 10)

    @property
    def vici(self) -> Path:
        return self.dir / "charon.vici"

    @property
    def log(self) -> Path:
        return self.dir / "charon.log"

    # -- building ---------------------------------------------------------------------------

    def build(self) -> None:
        """The peer and site namespaces, wired to the lab's wan router."""
        lab, i = self.lab, self.index
        for n in (self.ns, self.site_ns):
            sh("ip", "netns", "add", n)
            sh("ip", "link", "set", "lo", "up", netns=n)
        wan_if = f"pr{i}"
        sh("ip", "link", "add", wan_if, "netns", lab.wan, "type", "veth",
           "peer", "name", "eth0", "netns", self.ns)
        sh("ip", "addr", "add", f"{self.wan_address}/24", "dev", wan_if, netns=lab.wan)
        sh("ip", "link", "set", wan_if, "up", netns=lab.wan)
        sh("ip", "addr", "add", f"{self.address}/24", "dev", "eth0", netns=self.ns)
        sh("ip", "link", "set", "eth0", "up", netns=self.ns)
        sh("ip", "route", "add", "default", "via", self.wan_address, netns=self.ns)
        sh("ip", "link", "add", "site0", "netns", self.ns, "type", "veth",
           "peer", "name", "eth0", "netns", self.site_ns)
        for subnet in self.site_subnets:
            net = ipaddress.IPv4Network(subnet)
            sh("ip", "addr", "add", f"{net.network_address + 1}/{net.prefixlen}", "dev",
               "site0", netns=self.ns)
            sh("ip", "addr", "add", f"{self.site_host(subnet)}/{net.prefixlen}", "dev", "eth0",
               netns=self.site_ns)
        sh("ip", "link", "set", "site0", "up", netns=self.ns)
        sh("ip", "link", "set", "eth0", "up", netns=self.site_ns)
        first = ipaddress.IPv4Network(self.site_subnets[0])
        sh("ip", "route", "add", "default", "via", str(first.network_address + 1),
           netns=self.site_ns)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", netns=self.ns)
        self.dir.mkdir(parents=True, exist_ok=True)

    def add(self, conn: PeerConn) -> None:
        self.conns = [c for c in self.conns if c.name != conn.name] + [conn]

    # -- config --------------------------------------------------------------------------------

    def strongswan_conf(self) -> str:
        vici = f"unix://{self.vici}"
        kernel = "" if xfrm.kernel_esp() else " kernel-libipsec"
        return (
            "charon {\n"
            f"\tload = random nonce openssl pem pkcs1 pkcs8 x509 pubkey constraints kdf gcm "
            f"aes sha1 sha2 hmac gmp{kernel} kernel-netlink socket-default vici\n"
            f"\tplugins {{\n\t\tvici {{\n\t\t\tsocket = {vici}\n\t\t}}\n\t}}\n"
            f"\tstart-scripts {{\n\t\tswanctl = /usr/sbin/swanctl --load-all --noprompt "
            f"--file {self.dir}/swanctl/swanctl.conf --uri {vici}\n\t}}\n"
            "\tfilelog {\n"
            f"\t\tpeer {{\n\t\t\tpath = {self.log}\n\t\t\tdefault = 1\n"
            "\t\t\tike_name = yes\n\t\t\tflush_line = yes\n\t\t\tappend = no\n\t\t}\n"
            "\t}\n"
            "}\n"
            "charon-systemd {\n\tjournal {\n\t\tdefault = -1\n\t}\n}\n"
            "swanctl {\n\tload = pem pkcs1 pkcs8 x509 openssl\n}\n"
        )

    def swanctl_conf(self) -> str:
        lines = ["connections {"]
        secrets = ["secrets {"]
        for c in self.conns:
            auth = "pubkey" if c.cert else "psk"
            lines += [
                f"\t{c.name} {{",
                "\t\tversion = 2",
                "\t\tproposals = aes256-sha256-modp2048, default",
                "\t\tdpd_delay = 10s",
                f"\t\tlocal {{\n\t\t\tauth = {auth}\n\t\t\tid = \"{c.local_id}\"",
            ]
            if c.cert:
                lines.append(f"\t\t\tcerts = {c.cert.cert}")
            lines += ["\t\t}", f"\t\tremote {{\n\t\t\tauth = {auth}\n\t\t\tid = \"{c.remote_id}\""]
            if c.ca:
                lines.append(f"\t\t\tcacerts = {c.ca.cert}")
            lines += [
                "\t\t}",
                f"\t\tchildren {{\n\t\t\t{c.name} {{",
                f"\t\t\t\tlocal_ts = {', '.join(self.site_subnets)}",
                f"\t\t\t\tremote_ts = {c.remote_ts}",
                "\t\t\t\tesp_proposals = aes256gcm16, default",
                "\t\t\t\tdpd_action = clear",
                "\t\t\t}\n\t\t}",
                "\t}",
            ]
            if c.psk is not None:
                secret = base64.b64encode(c.psk).decode()
                secrets += [f"\tike-{c.name} {{", f"\t\tid-1 = \"{c.local_id}\"",
                            f"\t\tid-2 = \"{c.remote_id}\"", f"\t\tsecret = 0s{secret}", "\t}"]
        lines.append("}")
        secrets.append("}")
        return "\n".join(lines + secrets) + "\n"

    def write_config(self) -> None:
        swan = self.dir / "swanctl"
        for sub in ("x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey",
                    "private", "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12"):
            (swan / sub).mkdir(parents=True, exist_ok=True)
        for c in self.conns:
            if c.cert:  # the private key must be in the swanctl dir to be loaded
                (swan / "private" / f"{c.name}.pem").write_bytes(c.cert.key.read_bytes())
        (self.dir / "strongswan.conf").write_text(self.strongswan_conf())
        conf = swan / "swanctl.conf"
        conf.write_text(self.swanctl_conf())
        conf.chmod(0o600)

    # -- charon -----------------------------------------------------------------------------------

    def start(self, timeout: float = 15) -> None:
        """Start the peer's charon; returns when it has loaded its connections."""
        if self.proc is not None and self.proc.poll() is None:
            raise LabError(f"peer {self.index} is running already")
        self.write_config()
        with contextlib.suppress(FileNotFoundError):
            self.vici.unlink()
        out = open(self.dir / "charon.out", "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "charon-systemd"],
            env={**os.environ, "STRONGSWAN_CONF": str(self.dir / "strongswan.conf")},
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
        out.close()
        self.lab.track(self.proc, f"peer{self.index}-charon")

        def loaded() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise LabError(f"peer {self.index}'s charon exited; see {self.dir}")
            try:
                return "successfully loaded" in self.log.read_text()
            except OSError:
                return False

        wait_for(loaded, timeout, f"peer {self.index}'s charon to load its config")

    def stop(self, timeout: float = 10) -> None:
        """Stop the peer's charon (SIGTERM: it deletes its SAs, as a peer going down does)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.lab.untrack(self.proc)
        self.proc = None

    def reload(self) -> None:
        """Load a changed config into the running charon."""
        self.write_config()
        sh("swanctl", "--load-all", "--noprompt", "--file", str(self.dir / "swanctl" /
           "swanctl.conf"), "--uri", f"unix://{self.vici}", netns=self.ns)

    def serve(self, port: int, name: str) -> None:
        """A TCP/UDP server on the site host (`<name> sees <client>` to every client)."""
        self.lab.serve(self.site_ns, "both", port, name)

    def start_dns(self, records: dict[str, str]) -> None:
        """A DNS server on the site host (at its first address)."""
        args = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                "--bind-interfaces", f"--listen-address={self.site_host()}", "--pid-file=",
                "--user=root", "--conf-file=/dev/null"]
        args += [f"--host-record={name},{ip}" for name, ip in records.items()]
        self.lab.spawn(self.site_ns, *args)
