"""The seccomp filter of NI tasks: the OCI spec's `linux.seccomp` from an allow-list.

The allow-list, `seccomp_ni.json` next to this module, holds every system call
that ni-init, dnsmasq, charon (with kernel-libipsec and its swanctl start
script), and `ip`/`nft` run by exec in the task were seen to make, plus what
runc's init does between loading the filter and exec'ing the task's process.
It is derived, not written by hand: `tools/seccomp_profile.py` runs those
workloads through their real paths under strace and writes it (see the README,
"Seccomp"). Anything outside it fails with EPERM.

A profile is derived on one architecture: syscall names differ between them
(aarch64 has no open(2), only openat(2)), so a task on another architecture is
refused with the reason rather than run under a filter nobody checked there.
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import NirunnerError
from runner.model.types import TaskSeccomp

PROFILE_PATH = Path(__file__).with_name("seccomp_ni.json")
EPERM = 1
# uname -m -> libseccomp's name of that native architecture
ARCHITECTURES = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}


class SeccompError(NirunnerError):
    pass


@dataclass(frozen=True)
class Profile:
    machine: str  # `uname -m` of the machine it was derived on
    syscalls: tuple[str, ...]  # sorted, unique


def parse(data: dict[str, Any], source: str = "profile") -> Profile:
    try:
        machine, syscalls = data["machine"], data["syscalls"]
    except (KeyError, TypeError) as e:
        raise SeccompError(f"{source}: not a seccomp profile (missing {e})") from None
    if machine not in ARCHITECTURES:
        raise SeccompError(f"{source}: unknown machine {machine!r}")
    if not isinstance(syscalls, list) or not all(
            isinstance(s, str) and s.isidentifier() for s in syscalls):
        raise SeccompError(f"{source}: syscalls must be a list of syscall names")
    return Profile(machine, tuple(sorted(set(syscalls))))


@functools.cache
def load(path: Path = PROFILE_PATH) -> Profile:
    """The checked-in profile (read once)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SeccompError(f"cannot read the seccomp profile {path}: {e}") from e
    return parse(data, str(path))


def linux_seccomp(mode: TaskSeccomp, profile: Profile, machine: str) -> dict[str, Any] | None:
    """The `linux.seccomp` object for `mode` on `machine` (`uname -m`); None when off."""
    if mode is TaskSeccomp.OFF:
        return None
    if machine != profile.machine:
        raise SeccompError(
            f"the NI seccomp profile was derived on {profile.machine}, this machine is "
            f"{machine}: derive one here with tools/seccomp_profile.py, or set "
            f"taskSeccomp: false in the supervisor config")
    default: dict[str, Any] = (
        {"defaultAction": "SCMP_ACT_LOG"} if mode is TaskSeccomp.LOG
        else {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": EPERM})
    allow = [{"names": list(profile.syscalls), "action": "SCMP_ACT_ALLOW"}]
    return {
        **default,
        "architectures": [ARCHITECTURES[machine]],
        "syscalls": allow if profile.syscalls else [],
    }


def for_task(mode: TaskSeccomp) -> dict[str, Any] | None:
    """`linux_seccomp` with the checked-in profile on this machine."""
    if mode is TaskSeccomp.OFF:
        return None
    return linux_seccomp(mode, load(), platform.machine())


def fingerprint(mode: TaskSeccomp) -> str:
    """Names the filter a task gets: a task whose fingerprint differs from the one it
    was created with runs under another filter (or none) and must be recreated."""
    if mode is TaskSeccomp.OFF:
        return str(mode)
    digest = hashlib.sha256("\n".join(load().syscalls).encode()).hexdigest()[:12]
    return f"{mode}:{digest}"
