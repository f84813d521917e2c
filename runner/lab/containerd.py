"""A private containerd (own root, state and socket), started and fully cleaned up.

Usable from pytest fixtures and from the command line:
    python -m runner.lab.containerd start DIR   # prints the socket path
    python -m runner.lab.containerd stop DIR
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from runner.lab import pidfiles

RUNC_ROOT = Path("/run/containerd/runc")
# CRI and the snapshotters we do not use only slow the start-up down.
_DISABLED = [
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
]


@dataclass(frozen=True)
class PrivateContainerd:
    base: Path

    @property
    def address(self) -> str:
        return str(self.base / "containerd.sock")

    @property
    def log(self) -> Path:
        return self.base / "containerd.log"

    def config(self) -> str:
        disabled = ", ".join(f'"{p}"' for p in _DISABLED)
        return (
            "version = 2\n"
            f'root = "{self.base / "root"}"\n'
            f'state = "{self.base / "state"}"\n'
            f"disabled_plugins = [{disabled}]\n"
            "[grpc]\n"
            f'  address = "{self.address}"\n'
            "[ttrpc]\n"
            f'  address = "{self.address}.ttrpc"\n'
        )

    def pid(self) -> int | None:
        """containerd's PID while the one we started runs (a reused PID is not it)."""
        rec = pidfiles.read(self.base, "containerd")
        return rec.pid if rec else None

    def start(self, timeout: float = 30.0) -> None:
        if self.pid():
            return
        self.base.mkdir(parents=True, exist_ok=True)
        cfg = self.base / "config.toml"
        cfg.write_text(self.config())
        with open(self.log, "ab") as log:
            proc = subprocess.Popen(
                ["containerd", "--config", str(cfg)],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        pidfiles.record(self.base, "containerd", proc.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"containerd exited at start-up; see {self.log}")
            if os.path.exists(self.address):
                # the socket exists before the services are registered; let gRPC tell
                if _answers(self.address):
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"containerd did not come up in {timeout:g}s; see {self.log}")

    def stop_daemon_only(self) -> None:
        """Stop containerd itself; its shims, and so the tasks, keep running."""
        pid = self.pid()
        if pid:
            os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, 10.0):
                os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, 5.0)

    def stop(self, remove: bool = True) -> None:
        """Stop every task it runs, then containerd and its shims; remove its dirs."""
        if self.pid():
            with contextlib.suppress(Exception):
                _stop_all_tasks(self.address)
            pid = self.pid()
            if pid:
                os.kill(pid, signal.SIGTERM)
                if not _wait_gone(pid, 10.0):
                    os.kill(pid, signal.SIGKILL)
        for pid in _shims_of(self.address):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if remove:
            _unmount_under(self.base)
            shutil.rmtree(self.base, ignore_errors=True)
        _remove_empty_cgroups(self.namespaces)
        _remove_empty_runc_state(self.namespaces)

    namespaces: tuple[str, ...] = ("nirunner",)  # the containerd namespaces its tasks use


def _answers(address: str) -> bool:
    from runner.containerd.client import Client
    from runner.containerd.errors import ContainerdError

    try:
        with Client(address, connect_timeout=1.0, timeout=2.0) as c:
            c.version()
        return True
    except ContainerdError:
        return False


def _stop_all_tasks(address: str) -> None:
    from runner.containerd import tasks
    from runner.containerd.client import Client

    with Client(address, connect_timeout=2.0, timeout=15.0) as c:
        namespaces = c.namespaces()
    for ns in namespaces:
        with Client(address, ns, connect_timeout=2.0, timeout=15.0) as c:
            for t in tasks.list_tasks(c):
                with contextlib.suppress(Exception):
                    tasks.remove_container(c, t.container_id)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pidfiles.running(pid):  # a zombie child of ours counts as gone
            return True
        time.sleep(0.05)
    return False


def _shims_of(address: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and address.encode() in argv:
            pids.append(int(d.name))
    return pids


def _remove_empty_cgroups(namespaces: tuple[str, ...]) -> None:
    """Tasks' cgroups are /<namespace>/<id>; runc removes <id>, the parent stays."""
    root = Path("/sys/fs/cgroup")
    for ns in namespaces:
        for d in [root / ns, *(c / ns for c in root.iterdir() if c.is_dir())]:
            with contextlib.suppress(OSError):
                d.rmdir()  # only succeeds when empty: another daemon's tasks stay


def _remove_empty_runc_state(namespaces: tuple[str, ...]) -> None:
    """runc keeps task state machine-wide in /run/containerd/runc/<namespace>, also for a
    private containerd; the namespace's dir stays behind empty."""
    for ns in namespaces:
        with contextlib.suppress(OSError):
            (RUNC_ROOT / ns).rmdir()  # only when empty: a live task's state stays


def _unmount_under(base: Path) -> None:
    prefix = str(base.resolve()) + "/"
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runner.lab.containerd")
    ap.add_argument("action", choices=["start", "stop"])
    ap.add_argument("dir")
    args = ap.parse_args(argv)
    daemon = PrivateContainerd(Path(args.dir).resolve())
    if args.action == "start":
        daemon.start()
        print(daemon.address)
    else:
        daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
