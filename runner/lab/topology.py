"""A lab of network namespaces around a device, for tests, the demo and benchmarks.

    inet (192.0.2.10: TCP/UDP servers, DNS)
      |  192.0.2.0/24
    wan router ---- 198.51.100.0/24 ---- device eth0 (198.51.100.2)
               \\--- 203.0.113.0/24 ---- device eth1 (203.0.113.2)
    device: the supervisor runs here; NI netns nr-<ni> hang off it; apps plug into NIs

    add_segment(): eth1's segment becomes a LAN: on the wan router w1 joins a bridge
    s1 (which takes the gateway 203.0.113.1), a DHCP server serves 203.0.113.100-149
    there, and a segment host (netns <prefix>-seg, 203.0.113.20) sits on it.

Every namespace, process and file the lab makes carries its prefix and is
removed by name at teardown. The machine's own netns is never changed. The
processes it starts are recorded under /run/<prefix>/pids, so that a new Lab
object of the same prefix (`demo --clean` after `--keep`) stops them too. Its NI
tasks live in the containerd namespace <prefix>: runc keeps task state
machine-wide per namespace, so two labs must never share one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from runner.lab import pidfiles
from runner.lab.containerd import PrivateContainerd

UDHCPC_SCRIPT = str(Path(__file__).with_name("udhcpc.sh"))
INET_IP = "192.0.2.10"
UPLINKS = {  # device interface -> (device address, gateway on the wan router)
    "eth0": ("198.51.100.2/24", "198.51.100.1/24"),
    "eth1": ("203.0.113.2/24", "203.0.113.1/24"),
}
SEGMENT_HOST_IP = "203.0.113.20"  # the segment host on eth1's LAN (add_segment)
SEGMENT_DHCP_RANGE = ("203.0.113.100", "203.0.113.149")


class LabError(RuntimeError):
    pass


def sh(*cmd: str, netns: str | None = None, check: bool = True, timeout: float = 30,
       input: str | None = None) -> subprocess.CompletedProcess[str]:
    full = ["ip", "netns", "exec", netns, *cmd] if netns else list(cmd)
    res = subprocess.run(full, capture_output=True, text=True, timeout=timeout, input=input)
    if check and res.returncode != 0:
        raise LabError(f"{' '.join(full)}: {res.stderr.strip() or res.stdout.strip()}")
    return res


def wait_for(cond: object, timeout: float, what: str, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(step)


@dataclass
class HeldFlow:
    """A TCP flow held with a round trip every 10 ms (`python -m runner.lab.net watch`):
    `result()` stops it and says whether it survived and its longest gap."""

    name: str
    proc: subprocess.Popen[str]

    @classmethod
    def start(cls, name: str, netns: str, host: str, port: int) -> HeldFlow:
        p = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-m",
                              "runner.lab.net", "watch", host, str(port), "--interval", "0.01"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
        return cls(name, p)

    def result(self) -> dict[str, object]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=70)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=5)
        try:
            return dict(json.loads(out.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            return {"round_trips": 0, "max_gap_ms": 0, "error": (err or out).strip()[-300:]}


@dataclass
class Lab:
    prefix: str  # short and unique: every lab name starts with it
    image_archive: str = ""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    supervisor: subprocess.Popen[bytes] | None = None
    dns: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.base = Path("/run") / self.prefix
        self.pids = self.base / "pids"
        self.device, self.wan, self.inet = (f"{self.prefix}-{n}" for n in ("dev", "wan", "inet"))
        self.namespace = self.prefix  # containerd namespace of the lab's NI tasks
        self.containerd = PrivateContainerd(self.base / "containerd", (self.namespace,))
        self.config_path = self.base / "supervisor.yaml"
        self.socket = str(self.base / "api.sock")
        self.state_dir = self.base / "state"
        self.secrets_dir = self.base / "secrets"  # the config's secretsDir

    # -- building -------------------------------------------------------------------

    def build(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        for n in (self.device, self.wan, self.inet):
            sh("ip", "netns", "add", n)
            sh("ip", "link", "set", "lo", "up", netns=n)
        for i, (ifname, (dev_addr, gw_addr)) in enumerate(UPLINKS.items()):
            wan_if = f"w{i}"
            sh("ip", "link", "add", ifname, "netns", self.device, "type", "veth",
               "peer", "name", wan_if, "netns", self.wan)
            sh("ip", "addr", "add", dev_addr, "dev", ifname, netns=self.device)
            sh("ip", "link", "set", ifname, "up", netns=self.device)
            sh("ip", "addr", "add", gw_addr, "dev", wan_if, netns=self.wan)
            sh("ip", "link", "set", wan_if, "up", netns=self.wan)
            gw = gw_addr.split("/")[0]
            sh("ip", "route", "add", "default", "via", gw, "dev", ifname,
               "metric", str(100 * (i + 1)), netns=self.device)
        sh("ip", "link", "add", "w9", "netns", self.wan, "type", "veth",
           "peer", "name", "eth0", "netns", self.inet)
        sh("ip", "addr", "add", "192.0.2.1/24", "dev", "w9", netns=self.wan)
        sh("ip", "link", "set", "w9", "up", netns=self.wan)
        sh("ip", "addr", "add", f"{INET_IP}/24", "dev", "eth0", netns=self.inet)
        sh("ip", "link", "set", "eth0", "up", netns=self.inet)
        sh("ip", "route", "add", "default", "via", "192.0.2.1", netns=self.inet)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", netns=self.wan)

    def segment_host(self, uplink: str, name: str, address: str) -> str:
        """A host netns `<prefix>-<name>` on an uplink's segment (e.g. eth1's 203.0.113.0/24)
        with `address` (CIDR) and the wan router as its gateway; returns the netns.

        The wan router's end of that segment becomes a bridge (its port's MAC kept, so
        the device's ARP entry for the gateway stays right) the hosts plug into.
        """
        i = list(UPLINKS).index(uplink)
        gw = UPLINKS[uplink][1]
        port, bridge = f"w{i}", f"s{i}"
        if sh("ip", "link", "show", bridge, netns=self.wan, check=False).returncode != 0:
            mac = sh("cat", f"/sys/class/net/{port}/address", netns=self.wan).stdout.strip()
            sh("ip", "link", "add", bridge, "address", mac, "type", "bridge", netns=self.wan)
            sh("ip", "addr", "del", gw, "dev", port, netns=self.wan)
            sh("ip", "link", "set", port, "master", bridge, netns=self.wan)
            sh("ip", "addr", "add", gw, "dev", bridge, netns=self.wan)
            sh("ip", "link", "set", bridge, "up", netns=self.wan)
        ns = self._host_on(bridge, name, address)
        sh("ip", "route", "add", "default", "via", gw.split("/")[0], netns=ns)
        return ns

    def _host_on(self, bridge: str, name: str, address: str) -> str:
        """A host netns `<prefix>-<name>` plugged into `bridge` of the wan router."""
        ns = f"{self.prefix}-{name}"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "set", "lo", "up", netns=ns)
        wan_if = f"{bridge}{name}"[:15]
        sh("ip", "link", "add", wan_if, "netns", self.wan, "type", "veth", "peer", "name",
           "eth0", "netns", ns)
        sh("ip", "link", "set", wan_if, "master", bridge, "up", netns=self.wan)
        sh("ip", "addr", "add", address, "dev", "eth0", netns=ns)
        sh("ip", "link", "set", "eth0", "up", netns=ns)
        return ns

    def vlan_host(self, uplink: str, vlan: int, name: str, address: str) -> str:
        """A host netns `<prefix>-<name>` with `address` (CIDR) on VLAN `vlan` of an
        uplink's segment: on the wan router, an 802.1Q link of its end of that segment
        (tagged frames are taken off before a bridge sees them) in a bridge of its own
        with the host. Needs a kernel with VLAN devices; returns the netns."""
        i = list(UPLINKS).index(uplink)
        port, bridge = f"w{i}", f"v{i}x{vlan}"
        sub = f"{port}.{vlan}"
        sh("ip", "link", "add", "link", port, "name", sub, "type", "vlan", "id", str(vlan),
           netns=self.wan)
        sh("ip", "link", "add", bridge, "type", "bridge", netns=self.wan)
        sh("ip", "link", "set", sub, "master", bridge, "up", netns=self.wan)
        sh("ip", "link", "set", bridge, "up", netns=self.wan)
        return self._host_on(bridge, name, address)

    def add_segment(self) -> str:
        """Make eth1's link a LAN with a DHCP server and a host; returns the host's netns."""
        seg = self.segment_host("eth1", "seg", f"{SEGMENT_HOST_IP}/24")
        gw = UPLINKS["eth1"][1]
        start, end = SEGMENT_DHCP_RANGE
        self.spawn(self.wan, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
                   "--no-resolv", "--no-hosts", "--port=0", "--interface=s1",
                   "--bind-interfaces", "--pid-file=", "--user=root", "--no-ping",
                   "--dhcp-authoritative", f"--dhcp-range={start},{end},255.255.255.0,1h",
                   f"--dhcp-option=option:router,{gw.split('/')[0]}",
                   f"--dhcp-leasefile={self.base / 'segment.leases'}")
        return seg

    def start_dns(self, records: dict[str, str], ttl: int | None = None) -> None:
        """An upstream DNS server on the inet host; called again, it answers the new
        `records` from then on (`ttl`: of its answers; dnsmasq's default is 0)."""
        if self.dns is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.dns.pid, signal.SIGKILL)
            self.dns.wait(5)
            self.untrack(self.dns)
        args = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                "--bind-interfaces", f"--listen-address={INET_IP}", "--pid-file=",
                "--user=root", "--conf-file=/dev/null"]
        args += [f"--local-ttl={ttl}"] if ttl is not None else []
        args += [f"--host-record={name},{ip}" for name, ip in records.items()]
        self.dns = self.spawn(self.inet, *args)

        def answering() -> bool:
            out = sh("ss", "-Hlnu", "sport = :53", netns=self.inet, check=False).stdout
            return bool(out.strip())

        wait_for(answering, 10, "the inet host's DNS server")

    def spawn(self, netns: str, *cmd: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(["ip", "netns", "exec", netns, *cmd], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
        return self.track(p, f"{netns}-{p.pid}")

    def track(self, p: subprocess.Popen[bytes], name: str) -> subprocess.Popen[bytes]:
        """Stop `p` at teardown, also from another Lab object (a record under pids/)."""
        self.procs.append(p)
        with contextlib.suppress(ProcessLookupError):  # gone already: nothing to stop
            pidfiles.record(self.pids, name, p.pid)
        return p

    def untrack(self, p: subprocess.Popen[bytes]) -> None:
        """`p` was stopped by its owner."""
        self.procs.remove(p)
        for rec in pidfiles.records(self.pids):
            if rec.pid == p.pid:
                pidfiles.forget(self.pids, rec.name)

    def serve(self, netns: str, proto: str, port: int, name: str) -> None:
        self.spawn(netns, sys.executable, "-m", "runner.lab.net", "serve", proto, str(port),
                   "--name", name)
        kind = "-t" if proto == "tcp" else "-u"

        def listening() -> bool:
            out = sh("ss", "-Hln", kind, f"sport = :{port}", netns=netns, check=False).stdout
            return bool(out.strip())

        wait_for(listening, 10, f"{proto} server on {netns}:{port}")

    def connect(self, netns: str, proto: str, host: str, port: int,
                timeout: float = 3.0) -> str | None:
        """The server's reply, or None if the connection failed."""
        res = sh(sys.executable, "-m", "runner.lab.net", "connect", proto, host, str(port),
                 "--timeout", str(timeout), netns=netns, check=False, timeout=timeout + 10)
        return res.stdout.strip() if res.returncode == 0 else None

    def ping(self, netns: str, host: str) -> bool:
        return sh("ping", "-c1", "-W1", host, netns=netns, check=False).returncode == 0

    # -- containerd and the supervisor -------------------------------------------------

    def start_containerd(self) -> None:
        self.containerd.start()
        if self.image_archive:
            from runner.containerd.client import Client
            from runner.containerd.images import import_archive

            with Client(self.containerd.address, self.namespace) as c:
                self.image = import_archive(c, self.image_archive).name

    def write_config(self, image: str) -> None:
        # the lab's "device resolvers": the DNS server on the inet host, never the
        # machine's own (traffic stays inside the lab)
        (self.base / "resolv.conf").write_text(f"nameserver {INET_IP}\n")
        self.config_path.write_text(
            "containerd:\n"
            f"  address: {self.containerd.address}\n"
            f"  namespace: {self.namespace}\n"
            f"stateDir: {self.state_dir}\n"
            f"apiSocket: {self.socket}\n"
            f"image: {image}\n"
            f"resolvConf: {self.base / 'resolv.conf'}\n"
            f"secretsDir: {self.secrets_dir}\n"
            "uplinks:\n"
            "  - {name: eth0, interface: eth0}\n"
            "  - {name: eth1, interface: eth1}\n"
        )

    def start_supervisor(self, timeout: float = 30, env: dict[str, str] | None = None,
                         wait: bool = True, wrap: tuple[str, ...] = ()) -> None:
        """Start it in the device netns; `wrap`: a command that runs it (e.g. setpriv
        with fewer capabilities), entered after the netns."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)  # a stale one would look like a ready supervisor
        log = open(self.base / "supervisor.log", "ab")  # noqa: SIM115 - child owns it
        # nsenter, not `ip netns exec`: that would also give the supervisor a mount
        # namespace of its own, and the NI netns it creates would not be visible
        # (as bind mounts under /run/netns) to containerd and runc
        self.supervisor = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.device}", *wrap, sys.executable, "-m",
             "runner.cli.main", "supervise", "--config", str(self.config_path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            env={**os.environ, **(env or {})})
        log.close()
        pidfiles.record(self.pids, "supervisor", self.supervisor.pid)
        if not wait:
            return
        wait_for(lambda: os.path.exists(self.socket) or self.supervisor.poll() is not None,
                 timeout, "the supervisor's API socket")
        if self.supervisor.poll() is not None:
            raise LabError(f"supervisor exited; see {self.base / 'supervisor.log'}")

    def stop_supervisor(self, sig: int = signal.SIGTERM) -> None:
        if self.supervisor and self.supervisor.poll() is None:
            os.killpg(self.supervisor.pid, sig)
            try:
                self.supervisor.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.supervisor.pid, signal.SIGKILL)
                self.supervisor.wait(5)
        elif self.supervisor is None:  # started by another Lab object (demo --keep)
            rec = pidfiles.read(self.pids, "supervisor")
            if rec is not None:
                pidfiles.stop(rec, sig, timeout=15)
        self.supervisor = None
        pidfiles.forget(self.pids, "supervisor")
        with contextlib.suppress(FileNotFoundError):
            if sig == signal.SIGKILL:
                os.unlink(self.socket)

    def cli(self, *args: str, check: bool = True, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "runner.cli.main", *args]
        if args and args[0] in ("apply", "delete", "status", "inspect", "attach", "detach",
                                "events", "flows"):
            cmd += ["--socket", self.socket]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
        if check and res.returncode != 0:
            raise LabError(f"nirunner {' '.join(args)}: {res.stderr.strip()}")
        return res

    # -- apps ----------------------------------------------------------------------------

    def app(self, name: str, ni: str, mac: str = "", app: str = "") -> str:
        """A new app netns plugged into NI `ni` (as declared app `app`, if given); returns
        the netns name."""
        ns = f"{self.prefix}-{name}"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "set", "lo", "up", netns=ns)
        args = ["attach", ni, "--netns", f"/run/netns/{ns}", "--ifname", "eth0"]
        if mac:
            args += ["--mac", mac]
        if app:
            args += ["--app", app]
        self.cli(*args)
        return ns

    def dhcp(self, app_ns: str, hostname: str, timeout: float = 15) -> str:
        """Run a real DHCP client (busybox udhcpc) in the app; returns the leased IP."""
        return self.dhcp_lease(app_ns, hostname, timeout)["ip"]

    def dhcp_lease(self, app_ns: str, hostname: str, timeout: float = 15) -> dict[str, str]:
        """The lease as the client saw it: ip, mask, router, dns, mtu, ntp, domain."""
        res = sh("busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "10", "-T", "1",
                 "-O", "mtu", "-O", "ntpsrv", "-s", UDHCPC_SCRIPT,
                 "-x", f"hostname:{hostname}", netns=app_ns, timeout=timeout, check=False)
        for line in res.stdout.splitlines():
            if line.startswith("lease "):
                words = line.split()
                ip, _, mask = words[1].partition("/")
                lease = {"ip": ip, "mask": mask}
                for w in words[2:]:
                    key, _, value = w.partition("=")
                    lease[key] = value
                return lease
        raise LabError(f"no DHCP lease for {app_ns}: {res.stdout} {res.stderr}")

    def applied_nis(self) -> list[str]:
        """NI names in the supervisor's desired state (what it may have created)."""
        import json

        try:
            return list(json.loads((self.state_dir / "desired.json").read_text())["body"]["nis"])
        except (OSError, ValueError, KeyError):
            return []

    # -- teardown --------------------------------------------------------------------------

    def teardown(self) -> None:
        self.stop_supervisor()
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
        for rec in pidfiles.records(self.pids):  # what another Lab object started
            pidfiles.stop(rec, signal.SIGKILL)
        self.containerd.stop()
        ours = {f"nr-{ni}" for ni in self.applied_nis()}
        for name in sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []:
            if name.startswith(self.prefix) or name in ours:
                sh("ip", "netns", "del", name, check=False)
        shutil.rmtree(self.base, ignore_errors=True)
