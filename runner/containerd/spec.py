"""The OCI runtime spec of an NI task, built as plain data (pure, no I/O).

An NI task is not privileged: it runs as root with only the capabilities that
dnsmasq, nft and charon need, no new privileges, under a seccomp allow-list
(`runner.containerd.seccomp`), on a read-only rootfs, inside the NI's network
namespace (created beforehand by the supervisor so it outlives the task), with
its own tmpfs /run and bind mounts of the NI's config (read-only) and state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# containerd's runc v2 shim serves every task whose spec carries the same value here
SHIM_GROUP = "io.containerd.runc.v2.group"
SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
RESOURCES_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"

CAPABILITIES = ("CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW")
CONFIG_MOUNT = "/etc/nirunner"
STATE_MOUNT = "/var/lib/nirunner"
ENTRYPOINT = ("/sbin/ni-init",)
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Character devices every container gets (major, minor, path), plus the TUN
# device that strongSwan's kernel-libipsec needs.
_DEFAULT_DEVICES = ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2), (136, -1))
TUN = (10, 200, "/dev/net/tun")

_MASKED = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)
_READONLY = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)


@dataclass(frozen=True)
class Limits:
    """Cgroup limits of a task; None leaves a resource unlimited."""

    memory_bytes: int | None = None
    cpu_quota_us: int | None = None
    cpu_period_us: int = 100_000
    pids: int | None = None

    @classmethod
    def from_cpus(cls, memory_bytes: int | None, cpus: float | None, pids: int | None) -> Limits:
        quota = None if cpus is None else max(1000, round(cpus * 100_000))
        return cls(memory_bytes=memory_bytes, cpu_quota_us=quota, pids=pids)

    def to_oci(self) -> dict[str, Any]:
        """The `linux.resources` part that can also be sent as a live update."""
        res: dict[str, Any] = {}
        if self.memory_bytes is not None:
            res["memory"] = {"limit": self.memory_bytes}
        if self.cpu_quota_us is not None:
            res["cpu"] = {"quota": self.cpu_quota_us, "period": self.cpu_period_us}
        if self.pids is not None:
            res["pids"] = {"limit": self.pids}
        return res


@dataclass(frozen=True)
class TaskSpec:
    """What differs between NI tasks; everything else is fixed policy."""

    container_id: str
    netns_path: str
    config_dir: str
    state_dir: str
    cgroups_path: str
    limits: Limits = field(default_factory=Limits)
    args: tuple[str, ...] = ENTRYPOINT
    env: tuple[str, ...] = ()
    hostname: str = ""
    seccomp: dict[str, Any] | None = None  # linux.seccomp; None: no filter
    shim_group: str = ""  # tasks of one group share one runc shim process ("": its own)


def _device_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    for major, minor in _DEFAULT_DEVICES:
        rule: dict[str, Any] = {"allow": True, "type": "c", "major": major, "access": "rwm"}
        if minor >= 0:
            rule["minor"] = minor
        rules.append(rule)
    rules.append({"allow": True, "type": "c", "major": TUN[0], "minor": TUN[1], "access": "rwm"})
    return rules


def _mounts(spec: TaskSpec) -> list[dict[str, Any]]:
    def tmpfs(dest: str, *opts: str) -> dict[str, Any]:
        return {"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": list(opts)}

    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        tmpfs("/dev", "nosuid", "strictatime", "mode=755", "size=65536k"),
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        tmpfs("/dev/shm", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        tmpfs("/run", "nosuid", "nodev", "mode=755", "size=16m"),
        tmpfs("/tmp", "nosuid", "nodev", "mode=1777", "size=16m"),
        {"destination": CONFIG_MOUNT, "type": "bind", "source": spec.config_dir,
         "options": ["rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"]},
        {"destination": STATE_MOUNT, "type": "bind", "source": spec.state_dir,
         "options": ["rbind", "rprivate", "rw", "nosuid", "nodev", "noexec"]},
    ]


def process(args: tuple[str, ...] | list[str], env: tuple[str, ...] = (), cwd: str = "/") -> dict:
    """An OCI process: root, only the NI capabilities, no new privileges."""
    caps = list(CAPABILITIES)
    return {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": list(args),
        "env": [PATH_ENV, *env],
        "cwd": cwd,
        "capabilities": {
            "bounding": caps, "effective": caps, "permitted": caps, "inheritable": [],
            "ambient": [],
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 4096}],
        "noNewPrivileges": True,
    }


def build(spec: TaskSpec) -> dict[str, Any]:
    """The full OCI runtime spec of an NI task."""
    resources = spec.limits.to_oci()
    resources["devices"] = _device_rules()
    linux: dict[str, Any] = {
        "namespaces": [
            {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
            {"type": "network", "path": spec.netns_path},
        ],
        "devices": [{
            "path": TUN[2], "type": "c", "major": TUN[0], "minor": TUN[1],
            "fileMode": 0o666, "uid": 0, "gid": 0,
        }],
        "resources": resources,
        "cgroupsPath": spec.cgroups_path,
        "maskedPaths": list(_MASKED),
        "readonlyPaths": list(_READONLY),
    }
    if spec.seccomp is not None:
        linux["seccomp"] = spec.seccomp
    out: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": process(spec.args, spec.env),
        "root": {"path": "rootfs", "readonly": True},
        "hostname": spec.hostname or spec.container_id,
        "mounts": _mounts(spec),
        "linux": linux,
    }
    if spec.shim_group:
        out["annotations"] = {SHIM_GROUP: spec.shim_group}
    return out


def shim_group_of(spec: dict[str, Any]) -> str:
    """The shim group a container's spec puts its task in ("" for none)."""
    return str(spec.get("annotations", {}).get(SHIM_GROUP, ""))


def to_json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
