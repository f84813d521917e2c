"""Derive the seccomp allow-list of NI tasks: runner/containerd/seccomp_ni.json.

    sudo .venv/bin/python tools/seccomp_profile.py            # derive, write the profile
    sudo .venv/bin/python tools/seccomp_profile.py --check    # fail if anything is missing

How it is derived (root, on the architecture the profile is for; 1-2 minutes):

1. A lab (runner.lab.topology) with a VPN peer (runner.lab.vpnpeer), its own
   containerd and the supervisor, whose NI tasks run with `taskSeccomp: log`: the
   current allow-list, and anything outside it allowed but logged by the kernel.
2. `strace -f` follows that containerd and everything it starts: shims, runc,
   runc's init and the processes of the NI tasks.
3. The tasks do their real work through their real paths: a local NI and a VPN
   NI are applied; apps attached get DHCP leases (and release one); DNS over UDP
   and TCP, local names and forwarded ones; TCP through the NAT and a port map; a
   DNS change is applied (the supervisor SIGHUPs the task, dnsmasq re-reads its
   files); the tunnel comes up with the lab's peer (charon with kernel-libipsec,
   its swanctl start script), carries traffic, and a new remote subnet is loaded
   over VICI; `ip` and `nft` (list, add, delete) and `swanctl --list-sas` are run
   by exec in the tasks; dnsmasq and charon are killed (ni-init restarts them);
   both NIs are deleted (SIGTERM: ni-init stops its services and exits).
4. Every system call a thread made while the task's filter applied to it (runc's
   init from loading the filter to its exec, and everything in the task after)
   goes into the list (runner.lab.syscalls). The kernel's audit lines for the
   LOG action, read from /dev/kmsg, are cross-checked against it.

Without --check the calls seen are added to the profile (--replace: the profile
becomes exactly what this run saw). A second run uses the first one's list and
must log nothing new. --check changes nothing and exits 1 when a call outside
the checked-in profile was seen.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.containerd import seccomp, tasks  # noqa: E402
from runner.containerd.client import Client  # noqa: E402
from runner.image.build import build_image  # noqa: E402
from runner.lab import syscalls  # noqa: E402
from runner.lab.topology import INET_IP, Lab, LabError, sh, wait_for  # noqa: E402
from runner.lab.vpnpeer import PeerConn, VpnPeer  # noqa: E402
from runner.model.types import TaskSeccomp  # noqa: E402
from runner.net import names  # noqa: E402

LOCAL, VPN = "sclocal", "scvpn"
PSK = "seccomp-derivation-" + secrets.token_hex(8)


def _manifest(name: str, spec: str) -> str:
    return f"apiVersion: nirunner/v1\nkind: NetworkInstance\nmetadata: {{name: {name}}}\n" \
           f"spec:\n{spec}"


def local_ni(static: str) -> str:
    return _manifest(LOCAL, (
        "  type: local\n  uplink: eth0\n  subnet: 10.1.0.0/24\n"
        "  dhcp: {reservations: [{name: web, mac: '02:00:00:00:5c:10', ip: 10.1.0.10}]}\n"
        f"  dns: {{upstream: [{INET_IP}], domain: sc.lan, "
        f"static: [{{name: {static}, addresses: [10.1.0.20]}}]}}\n"
        "  portMaps: [{name: web, protocol: tcp, uplinkPort: 8080, target: web, "
        "targetPort: 80}]\n"))


def vpn_ni(peer: VpnPeer, psk_file: Path, remote_subnets: str) -> str:
    return _manifest(VPN, (
        f"  type: vpn\n  uplink: eth0\n  subnet: 10.50.0.0/24\n"
        f"  dns: {{upstream: [{peer.site_host()}]}}\n"
        f"  vpn:\n    remote: {peer.address}\n"
        f"    auth: {{psk: {{secretFile: {psk_file}}}}}\n"
        "    localId: edge@seccomp\n    remoteId: hq\n"
        f"    remoteSubnets: [{remote_subnets}]\n"
        "    ike: {proposals: [aes256-sha256-modp2048]}\n"
        "    esp: {proposals: [aes256gcm16]}\n    dpd: 5s\n"))


# --- the supervisor, its tasks in LOG mode -------------------------------------------------


def supervise_logging(config: str) -> int:
    """`nirunner supervise` whose NI tasks run with taskSeccomp: log.

    The config says so; until the supervisor hands `taskSeccomp` to the NITask it
    builds, the executor's builder is wrapped here to the same effect.
    """
    from runner.cli.main import main
    from runner.supervisor import executor

    build = getattr(executor.Executor, "_nitask", None)
    if build is not None:
        def logging_task(self: object, *args: object) -> object:
            return dataclasses.replace(build(self, *args), seccomp=TaskSeccomp.LOG)

        executor.Executor._nitask = logging_task  # type: ignore[method-assign,assignment]
    return main(["supervise", "--config", config])


def start_supervisor(lab: Lab, timeout: float = 60) -> None:
    log = open(lab.base / "supervisor.log", "ab")  # noqa: SIM115 - the child owns it
    lab.supervisor = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{lab.device}", sys.executable, __file__,
         "--supervise", str(lab.config_path)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    log.close()
    sup = lab.supervisor
    wait_for(lambda: os.path.exists(lab.socket) or sup.poll() is not None, timeout,
             "the supervisor's API socket")
    if sup.poll() is not None:
        raise LabError(f"supervisor exited; see {lab.base / 'supervisor.log'}")


# --- tracing ------------------------------------------------------------------------------------


@contextlib.contextmanager
def traced(pid: int, out: Path) -> Iterator[None]:
    """strace -f on `pid` and everything it starts from now on, into `out`."""
    proc = subprocess.Popen(
        ["strace", "-f", "-q", "--pidns-translation", "-s", "32", "-o", str(out),
         "-p", str(pid)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def attached() -> bool:
        if proc.poll() is not None:
            raise LabError(f"strace exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        status = Path(f"/proc/{pid}/status").read_text()
        return any(ln.split()[1] != "0" for ln in status.splitlines()
                   if ln.startswith("TracerPid:"))

    try:
        wait_for(attached, 10, "strace to attach")
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # detaches from everything it traces
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


class Kmsg:
    """The kernel log from now on (reads /dev/kmsg past its current end)."""

    def __init__(self) -> None:
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)

    def read(self) -> list[str]:
        lines = []
        while True:
            try:
                rec = os.read(self.fd, 8192)
            except BlockingIOError:
                break
            except BrokenPipeError:  # overwritten while we read: go on with the rest
                continue
            lines.append(rec.decode(errors="replace"))
        os.close(self.fd)
        return lines


def unistd_header() -> Path | None:
    for pattern in ("/usr/include/*/asm/unistd_64.h", "/usr/include/asm/unistd_64.h",
                    "/usr/include/asm-generic/unistd.h"):
        found = sorted(glob.glob(pattern))
        if found:
            return Path(found[0])
    return None


# --- the workload ------------------------------------------------------------------------------


def task_pids(ni: str, comm: str) -> list[int]:
    """Host pids of the processes named `comm` in NI `ni`'s task (by its cgroup)."""
    cid = names.container_id(ni)
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (d / "comm").read_text().strip() == comm and \
                    f"/{cid}\n" in (d / "cgroup").read_text():
                out.append(int(d.name))
    return out


def status(lab: Lab) -> dict[str, dict]:
    return {s["name"]: s for s in json.loads(lab.cli("status", "--json").stdout)}


def dns(lab: Lab, ns: str, server: str, name: str, tcp: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "runner.lab.dnsq", server, name] + (["--tcp"] if tcp else [])
    return sh(*cmd, netns=ns, check=False).stdout.split()


def expect(what: str, ok: bool) -> None:
    print(("  ok   " if ok else "  FAIL ") + what, flush=True)
    if not ok:
        raise LabError(f"the workload did not work: {what}")


def workload(lab: Lab, peer: VpnPeer) -> None:
    psk_file = lab.base / "secrets" / "vpn.psk"
    psk_file.parent.mkdir(mode=0o700)
    psk_file.write_text(PSK + "\n")
    psk_file.chmod(0o600)
    files = {"local": lab.base / "local.yaml", "vpn": lab.base / "vpn.yaml"}
    files["local"].write_text(local_ni("historian"))
    files["vpn"].write_text(vpn_ni(peer, psk_file, "10.99.1.0/24"))
    lab.cli("apply", "-f", str(files["local"]), "-f", str(files["vpn"]))

    web = lab.app("web", LOCAL, "02:00:00:00:5c:10")
    hmi = lab.app("hmi", LOCAL)
    vapp = lab.app("vapp", VPN)
    expect("DHCP lease (reserved)", lab.dhcp(web, "web") == "10.1.0.10")
    hmi_ip = lab.dhcp(hmi, "hmi")
    expect("DHCP lease (dynamic) again", lab.dhcp(hmi, "hmi") == hmi_ip)
    sh("busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-R", "-t", "5", "-T", "1",
       "-s", "/bin/true", netns=hmi, check=False, timeout=20)  # and released
    expect("DHCP lease in the VPN NI", lab.dhcp(vapp, "vapp").startswith("10.50.0."))
    expect("DNS static", dns(lab, hmi, "10.1.0.1", "historian") == ["10.1.0.20"])
    expect("DNS lease name over TCP", dns(lab, hmi, "10.1.0.1", "web", tcp=True) == ["10.1.0.10"])
    expect("DNS forwarded upstream", dns(lab, hmi, "10.1.0.1", "www.example.test") == [INET_IP])
    expect("DNS forwarded over TCP",
           dns(lab, hmi, "10.1.0.1", "www.example.test", tcp=True) == [INET_IP])
    expect("DNS unknown name", dns(lab, hmi, "10.1.0.1", "nowhere") == [])
    lab.serve(web, "tcp", 80, "web")
    expect("TCP through the NAT", lab.connect(hmi, "tcp", INET_IP, 7000) is not None)
    expect("TCP through the port map", lab.connect(lab.wan, "tcp", "198.51.100.2", 8080)
           == "web sees 198.51.100.1")

    files["local"].write_text(local_ni("archive"))  # a live change: SIGHUP, re-read
    lab.cli("apply", "-f", str(files["local"]))
    wait_for(lambda: dns(lab, hmi, "10.1.0.1", "archive") == ["10.1.0.20"], 15,
             "dnsmasq to re-read its files")
    expect("DNS after the reload", True)

    wait_for(lambda: status(lab)[VPN]["vpn"]["up"], 60, "the tunnel")
    expect("tunnel up", True)
    expect("TCP through the tunnel",
           lab.connect(vapp, "tcp", peer.site_host(), 7000) is not None)
    expect("DNS through the tunnel", dns(lab, vapp, "10.50.0.1", "intranet.hq") ==
           [peer.site_host()])
    files["vpn"].write_text(vpn_ni(peer, psk_file, "10.99.1.0/24, 10.99.2.0/24"))
    lab.cli("apply", "-f", str(files["vpn"]))  # reloaded over VICI
    wait_for(lambda: lab.connect(vapp, "tcp", peer.site_host("10.99.2.0/24"), 7000,
                                 timeout=1) is not None, 30, "the new remote subnet")
    expect("TCP to the new remote subnet", True)

    with Client(lab.containerd.address, "nirunner") as c:
        for ni, extra in ((LOCAL, []), (VPN, [["swanctl", "--list-sas", "--uri",
                                                "unix:///var/lib/nirunner/charon.vici"]])):
            for args in [["ip", "-4", "addr"], ["ip", "route"], ["ip", "-s", "link"],
                         ["nft", "list", "ruleset"], ["nft", "add", "table", "inet", "sc"],
                         ["nft", "delete", "table", "inet", "sc"], *extra]:
                res = tasks.exec_in(c, names.container_id(ni), args,
                                    str(lab.base / f"exec-{ni}.out"))
                expect(f"exec {' '.join(args)} in {ni}", res.exit_status == 0)

    for ni, comm in ((LOCAL, "dnsmasq"), (VPN, "charon-systemd")):
        old = task_pids(ni, comm)
        expect(f"{comm} of {ni} found", len(old) == 1)
        os.kill(old[0], signal.SIGKILL)
        wait_for(lambda ni=ni, comm=comm, old=old: task_pids(ni, comm) not in ([], old), 15,
                 f"ni-init to restart {comm}")
    wait_for(lambda: dns(lab, hmi, "10.1.0.1", "archive") == ["10.1.0.20"], 15,
             "the restarted dnsmasq")
    wait_for(lambda: status(lab)[VPN]["vpn"]["up"], 60, "the tunnel after charon's restart")
    expect("DNS and tunnel after the restarts",
           lab.connect(vapp, "tcp", peer.site_host(), 7000) is not None)
    lab.cli("delete", LOCAL, VPN)
    expect("tasks stopped", not task_pids(LOCAL, "ni-init") and not task_pids(VPN, "ni-init"))


def derive(work: Path) -> tuple[set[str], set[str]]:
    """Run the workload; returns (calls strace saw under the filter, calls the kernel logged)."""
    lab = Lab(f"nrsc{secrets.token_hex(2)}", image_archive=str(build_image().archive))
    trace = work / "strace.log"
    kmsg = Kmsg()
    try:
        lab.build()
        lab.start_dns({"www.example.test": INET_IP})
        lab.serve(lab.inet, "both", 7000, "inet")
        peer = VpnPeer(lab, 1, site_subnets=("10.99.1.0/24", "10.99.2.0/24"))
        peer.build()
        peer.add(PeerConn("edge", "hq", "edge@seccomp", "10.50.0.0/24", psk=PSK.encode()))
        peer.start()
        peer.serve(7000, "site")
        peer.start_dns({"intranet.hq": peer.site_host()})
        lab.start_containerd()
        pid = lab.containerd.pid()
        if pid is None:
            raise LabError("the lab's containerd is not running")
        lab.write_config(lab.image)
        with lab.config_path.open("a") as f:
            f.write("taskSeccomp: log\n")
        with traced(pid, trace):
            start_supervisor(lab)
            workload(lab, peer)
            lab.stop_supervisor()
    finally:
        lab.teardown()
        logged_lines = kmsg.read()
    with trace.open(errors="replace") as f:
        seen = set(syscalls.filtered_calls(syscalls.read_trace(f)))
    header = unistd_header()
    logged = syscalls.logged_calls(logged_lines, syscalls.syscall_numbers(header)) \
        if header else set()
    return seen, logged


def write_profile(path: Path, calls: set[str]) -> None:
    image = build_image()
    data = {
        "comment": "Allow-list of the NI tasks' seccomp filter; written by "
                   "tools/seccomp_profile.py (see there and README, Seccomp): do not edit.",
        "machine": platform.machine(),
        "derivedWith": {
            "kernel": platform.release(),
            "image": image.manifest_digest,
            "runc": sh("runc", "--version").stdout.splitlines()[0],
        },
        "syscalls": sorted(calls),
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="change nothing; exit 1 if a call outside the profile was seen")
    ap.add_argument("--replace", action="store_true",
                    help="write only what this run saw (default: add it to the profile)")
    ap.add_argument("--out", type=Path, default=seccomp.PROFILE_PATH)
    ap.add_argument("--work", type=Path, default=Path("/tmp/nirunner-seccomp"),
                    help="where the strace log is kept")
    ap.add_argument("--supervise", metavar="CONFIG", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.supervise:
        return supervise_logging(args.supervise)
    if os.geteuid() != 0:
        print("seccomp_profile: needs root (a lab of namespaces, containerd, strace)")
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    current = set(seccomp.load(args.out).syscalls) if args.out.exists() else set()
    seen, logged = derive(args.work)
    print(f"seen under the filter (strace): {len(seen)} syscalls")
    print(f"logged by the kernel outside the profile: {sorted(logged) or 'none'}")
    if logged - seen:
        print(f"logged but not in the strace log: {sorted(logged - seen)}")
    missing = (seen | logged) - current
    print(f"not in {args.out}: {sorted(missing) or 'none'}")
    if args.check:
        return 1 if missing else 0
    calls = seen | logged if args.replace else current | seen | logged
    write_profile(args.out, calls)
    print(f"wrote {args.out}: {len(calls)} syscalls ({len(missing)} new; "
          f"{len(current - seen - logged)} not seen this time"
          f"{', dropped' if args.replace else ', kept'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
