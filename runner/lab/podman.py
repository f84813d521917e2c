"""podman (Debian 12's 4.3, CNI backend) confined to a lab: its state, storage, locks,
CNI configs and IPAM data under the lab's base dir, run inside a lab netns.

    pm = LabPodman(Path("/run/<prefix>/podman"), netns="<prefix>-pod")
    pm.setup(); pm.import_busybox(); pm.add_network(conflist)
    pm.run("run", "-d", "--network", "net1", pm.image, "busybox", "httpd", ...)
    pm.teardown()

What podman needed on this machine (measured while writing this):
- `default_ulimits = []`: its default nofile limit (1048576) is above this
  machine's hard limit (20000); without it every start fails with "runc create
  failed: ... error setting rlimit type 7: operation not permitted".
- `network_backend = "cni"` with its own `network_config_dir` and
  `cni_plugin_dirs`, so it reads no network from /etc/cni/net.d (Debian's
  package ships 87-podman-bridge.conflist there) and writes none there.
- host-local keeps its allocations in /var/lib/cni/networks unless the
  conflist sets `dataDir`: `add_network` points it into the lab.
- machine-wide files it still writes, with no knob in 4.3: libcni's result
  cache /var/lib/cni/results/<network>-<container>-<ifname> (removed again by
  `podman rm`) and containers/image's /var/lib/containers/cache/
  blob-info-cache-v1.boltdb (made by `podman import`; a cache, left alone).
- a container's netns is `/run/netns/netns-<uuid>`, named by podman, not under
  the lab prefix: teardown removes the ones its containers had if podman did not.
- conmon daemonizes to PID 1, and this machine's PID 1 (not an init) does not
  reap it: every container leaves a defunct `conmon` behind (harmless).
- `lock_type = "file"` keeps its locks under tmp_dir (the default shm lock
  segment /dev/shm/libpod_lock is one for the whole machine);
  `cgroup_manager = "cgroupfs"`, `events_logger = "file"`, `log_driver =
  "k8s-file"` (no systemd or journald here); `runtime = "runc"` (no crun).
- storage driver `vfs`: nothing is mounted under the lab dir that a killed
  test could leave behind; the image is a few MB.
- run under `nsenter --net=` (not `ip netns exec`, whose private mount
  namespace would hide the netns podman bind-mounts under /run/netns); the
  bridge and veths the CNI plugins make are then in the lab netns.
- no registry is reachable: the image is the host's busybox and the libraries
  it links, packed with Python's tarfile and loaded with `podman import`.

The netavark backend (`backend="netavark"`, Debian 12's netavark 1.4 and
aardvark-dns 1.4) keeps its networks as podman's JSON files in `net.d`, but
podman 4.3 hard-codes netavark's run dir for root: /run/containers/networks
(its IPAM database, aardvark-dns's config, pid file and lock). So every podman
command runs in a mount namespace of its own (`unshare --mount --propagation
unchanged`) where the lab's `netavark-run` dir is bind-mounted there: the mount
does not propagate (the root mount is private here) while /run/netns, a shared
mount, still does, so the container netns podman makes are visible to the next
command. aardvark-dns and conmon stay in the namespace of the command that
started them and see the same lab dir. The empty mount point
/run/containers/networks is created on the machine when missing and left there
(removing it could detach a mount another lab is using). netavark 1.4 programs
iptables (iptables-nft here) in the lab netns, and sets ip_forward there.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.lab.topology import LabError

IMAGE = "localhost/nrlab-busybox:latest"
DEFAULT_CNI_BIN = ("/usr/lib/cni",)
BACKENDS = ("cni", "netavark")
NETAVARK_RUN = Path("/run/containers/networks")  # podman 4.3's, for root: not configurable


@dataclass
class LabPodman:
    base: Path
    netns: str  # the lab netns podman (and the CNI plugins it runs) lives in
    cni_bin_dirs: tuple[str, ...] = DEFAULT_CNI_BIN
    image: str = IMAGE
    backend: str = "cni"  # or "netavark" (networks as podman's JSON under net_dir)

    @property
    def net_dir(self) -> Path:
        return self.base / "net.d"

    @property
    def netavark_run(self) -> Path:
        """What netavark sees as /run/containers/networks (see the module's doc)."""
        return self.base / "netavark-run"

    def setup(self) -> LabPodman:
        if self.backend not in BACKENDS:
            raise LabError(f"podman backend {self.backend!r}: one of {', '.join(BACKENDS)}")
        for d in ("root", "runroot", "tmp", "net.d", "ipam", "cni-cache"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        if self.backend == "netavark":
            self.netavark_run.mkdir(parents=True, exist_ok=True)
            NETAVARK_RUN.mkdir(parents=True, exist_ok=True)  # the mount point
        (self.base / "containers.conf").write_text(self.containers_conf())
        (self.base / "storage.conf").write_text(
            "[storage]\n"
            'driver = "vfs"\n'
            f'graphroot = "{self.base / "root"}"\n'
            f'runroot = "{self.base / "runroot"}"\n')
        return self

    def containers_conf(self) -> str:
        """podman's containers.conf for the lab (see the module's doc for each line)."""
        plugin_dirs = ", ".join(json.dumps(d) for d in self.cni_bin_dirs)
        return (
            "[containers]\n"
            "default_ulimits = []\n"
            'log_driver = "k8s-file"\n'
            "[network]\n"
            f'network_backend = "{self.backend}"\n'
            f'network_config_dir = "{self.net_dir}"\n'
            f"cni_plugin_dirs = [{plugin_dirs}]\n"
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{self.base / "events.log"}"\n'
            'runtime = "runc"\n'
            'lock_type = "file"\n'
            f'tmp_dir = "{self.base / "tmp"}"\n'
            f'static_dir = "{self.base / "root" / "libpod"}"\n'
            f'volume_path = "{self.base / "root" / "volumes"}"\n'
            f'image_copy_tmp_dir = "{self.base / "tmp"}"\n')

    def env(self) -> dict[str, str]:
        return {**os.environ,
                "CONTAINERS_CONF": str(self.base / "containers.conf"),
                "CONTAINERS_STORAGE_CONF": str(self.base / "storage.conf"),
                "TMPDIR": str(self.base / "tmp")}

    def command(self, *args: str) -> list[str]:
        """The command line of `podman ARGS` in the lab (netns; netavark: mount ns)."""
        cmd = ["nsenter", f"--net=/run/netns/{self.netns}", "podman", *args]
        if self.backend != "netavark":
            return cmd
        # sh's $0 is the lab dir, "$@" the podman command
        return ["unshare", "--mount", "--propagation", "unchanged", "--", "sh", "-c",
                f'mount --bind "$0" {NETAVARK_RUN} && exec "$@"', str(self.netavark_run),
                *cmd]

    def run(self, *args: str, check: bool = True, timeout: float = 60,
            input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        cmd = self.command(*args)
        res = subprocess.run(cmd, capture_output=True, timeout=timeout, env=self.env(),
                             input=input)
        out = subprocess.CompletedProcess(cmd, res.returncode, res.stdout.decode(errors="replace"),
                                          res.stderr.decode(errors="replace"))
        if check and out.returncode != 0:
            raise LabError(f"podman {' '.join(args)}: {out.stderr.strip() or out.stdout.strip()}")
        return out

    # -- image and networks --------------------------------------------------------------

    def import_busybox(self, index_html: str = "hello from podman\n") -> str:
        tar = self.base / "tmp" / "busybox-rootfs.tar"
        tar.write_bytes(busybox_rootfs(index_html))
        self.run("import", str(tar), self.image)
        tar.unlink()
        return self.image

    def create_network(self, name: str, subnet: str) -> None:
        """A bridge network through podman itself (the netavark backend's way)."""
        self.run("network", "create", "--subnet", subnet, name)

    def add_network(self, conflist: dict[str, Any]) -> Path:
        """Write a conflist into podman's CNI config dir; host-local's data stays in the lab."""
        doc = json.loads(json.dumps(conflist))
        for plugin in doc.get("plugins", []):
            ipam = plugin.get("ipam")
            if isinstance(ipam, dict) and ipam.get("type") == "host-local":
                ipam.setdefault("dataDir", str(self.base / "ipam"))
        path = self.net_dir / f"{doc['name']}.conflist"
        path.write_text(json.dumps(doc, indent=1))
        return path

    def sandbox(self, container: str) -> str:
        """The path of a running container's netns (podman's own name)."""
        return self.run("inspect", "--format", "{{.NetworkSettings.SandboxKey}}",
                        container).stdout.strip()

    # -- teardown ------------------------------------------------------------------------

    def teardown(self) -> None:
        """Containers, their netns, any mount left under the lab dir, then the dir."""
        sandboxes: list[str] = []
        if (self.base / "containers.conf").exists() and os.path.exists(
                f"/run/netns/{self.netns}"):
            ids = self.run("ps", "-aq", check=False).stdout.split()
            for cid in ids:
                key = self.run("inspect", "--format", "{{.NetworkSettings.SandboxKey}}", cid,
                               check=False).stdout.strip()
                if key:
                    sandboxes.append(key)
            if ids:
                self.run("rm", "-f", "-t", "0", *ids, check=False, timeout=120)
        for key in sandboxes:  # podman removes them on rm; a crash may not have
            if re.fullmatch(r"/run/netns/[A-Za-z0-9_.-]+", key) and os.path.exists(key):
                subprocess.run(["ip", "netns", "del", os.path.basename(key)], check=False)
        self._stop_aardvark()
        for mnt in reversed(_mounts_under(self.base)):
            subprocess.run(["umount", "-l", mnt], check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    def _stop_aardvark(self) -> None:
        """netavark stops aardvark-dns with the last container of a DNS-enabled network;
        after a crash, the one our lab dir's pid file names (if it is aardvark-dns)."""
        pidfile = self.netavark_run / "aardvark-dns" / "aardvark.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text().split()[0])
            if b"aardvark-dns" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)


def _mounts_under(base: Path) -> list[str]:
    prefix = str(base).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return sorted(p for p in points if p.startswith(prefix))


def busybox_rootfs(index_html: str) -> bytes:
    """A root filesystem tar: the host's busybox, the libraries it links, /www/index.html."""
    busybox = shutil.which("busybox")
    if busybox is None:
        raise LabError("busybox is not installed (apt package busybox)")
    real = os.path.realpath(busybox)
    out = subprocess.run(["ldd", real], capture_output=True, text=True, check=True).stdout
    libs = [p for p in re.findall(r"(/\S+)", out) if os.path.exists(p)]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        def add_dir(path: str) -> None:
            info = tarfile.TarInfo(path)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            t.addfile(info)

        def add_file(path: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), mode
            t.addfile(info, io.BytesIO(data))

        dirs = {"bin", "etc", "www", "tmp", "proc", "sys", "dev", "run"}
        dirs |= {os.path.dirname(p).lstrip("/") for p in libs}
        for d in sorted(dirs):
            parts = d.split("/")
            for i in range(1, len(parts) + 1):
                sub = "/".join(parts[:i])
                if sub not in {m.name for m in t.getmembers()}:
                    add_dir(sub)
        add_file("bin/busybox", Path(real).read_bytes(), 0o755)
        for lib in libs:
            add_file(lib.lstrip("/"), Path(os.path.realpath(lib)).read_bytes(), 0o755)
        for applet in ("sh", "httpd", "ip", "wget", "nslookup", "cat", "sleep", "hostname"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            t.addfile(link)
        add_file("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n")
        add_file("etc/group", b"root:x:0:\n")
        add_file("www/index.html", index_html.encode())
    return buf.getvalue()


@contextlib.contextmanager
def lab_podman(base: Path, netns: str, cni_bin_dirs: tuple[str, ...] = DEFAULT_CNI_BIN,
               backend: str = "cni") -> Iterator[LabPodman]:
    pm = LabPodman(base, netns, cni_bin_dirs, backend=backend)
    try:
        yield pm.setup()
    finally:
        pm.teardown()
