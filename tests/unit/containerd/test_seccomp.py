"""The NI tasks' seccomp filter: the checked-in allow-list and the spec's linux.seccomp."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.containerd import seccomp
from runner.containerd import spec as oci
from runner.model.types import TaskSeccomp
from runner.nitask import NITask

PROFILE = seccomp.Profile("x86_64", ("close", "execve", "read"))

# Calls an NI task never needs: escape hatches, kernel state, other processes,
# and calls that would succeed without the filter (unprivileged user namespaces,
# ptrace of children, personality, io_uring, keyrings). A derivation that picks
# one of these up saw something the NI's daemons should not do: look before
# widening the profile.
NEVER = (
    "ptrace", "process_vm_readv", "process_vm_writev", "unshare", "setns", "mount",
    "umount2", "pivot_root", "chroot", "bpf", "perf_event_open", "kexec_load",
    "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "swapon", "swapoff", "acct", "personality", "io_uring_setup", "io_uring_enter",
    "keyctl", "add_key", "request_key", "userfaultfd", "open_by_handle_at", "name_to_handle_at",
    "syslog", "settimeofday", "clock_settime", "adjtimex", "sethostname", "setdomainname",
    "fsopen", "fsmount", "move_mount", "open_tree", "mount_setattr", "lookup_dcookie",
    "quotactl", "iopl", "ioperm", "vhangup", "uselib",
)


def test_checked_in_profile_is_sane() -> None:
    p = seccomp.load()
    assert p.machine in seccomp.ARCHITECTURES
    assert p.syscalls == tuple(sorted(set(p.syscalls)))
    # what any process of the task needs: without these nothing would start at all
    for call in ("execve", "exit_group", "mmap", "openat", "read", "write", "rt_sigreturn",
                 "clone", "wait4", "socket", "sendmsg", "recvmsg"):
        assert call in p.syscalls, call
    assert not set(NEVER) & set(p.syscalls), sorted(set(NEVER) & set(p.syscalls))
    data = json.loads(seccomp.PROFILE_PATH.read_text())
    assert "tools/seccomp_profile.py" in data["comment"]


def test_enforce_denies_everything_else_with_eperm() -> None:
    s = seccomp.linux_seccomp(TaskSeccomp.ENFORCE, PROFILE, "x86_64")
    assert s == {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["close", "execve", "read"], "action": "SCMP_ACT_ALLOW"}],
    }


def test_log_allows_and_logs_everything_else() -> None:
    s = seccomp.linux_seccomp(TaskSeccomp.LOG, PROFILE, "x86_64")
    assert s is not None and s["defaultAction"] == "SCMP_ACT_LOG"
    assert "defaultErrnoRet" not in s
    assert s["syscalls"] == [{"names": ["close", "execve", "read"], "action": "SCMP_ACT_ALLOW"}]


def test_off_is_no_filter() -> None:
    assert seccomp.linux_seccomp(TaskSeccomp.OFF, PROFILE, "riscv64") is None
    assert seccomp.for_task(TaskSeccomp.OFF) is None


def test_an_empty_profile_has_no_allow_rule() -> None:
    s = seccomp.linux_seccomp(TaskSeccomp.LOG, seccomp.Profile("aarch64", ()), "aarch64")
    assert s is not None
    assert s["syscalls"] == [] and s["architectures"] == ["SCMP_ARCH_AARCH64"]


def test_a_profile_of_another_machine_is_refused() -> None:
    with pytest.raises(seccomp.SeccompError, match=r"derived on x86_64, this machine is "
                                                   r"aarch64: derive one here"):
        seccomp.linux_seccomp(TaskSeccomp.ENFORCE, PROFILE, "aarch64")


@pytest.mark.parametrize(("data", "message"), [
    ({"syscalls": []}, "missing 'machine'"),
    ([], "not a seccomp profile"),
    ({"machine": "vax", "syscalls": []}, "unknown machine 'vax'"),
    ({"machine": "x86_64", "syscalls": "read"}, "must be a list of syscall names"),
    ({"machine": "x86_64", "syscalls": ["read", "x; y"]}, "must be a list of syscall names"),
])
def test_bad_profiles(data: object, message: str) -> None:
    with pytest.raises(seccomp.SeccompError, match=message):
        seccomp.parse(data, "p.json")  # type: ignore[arg-type]


def test_unreadable_profile(tmp_path: Path) -> None:
    bad = tmp_path / "p.json"
    bad.write_text("{")
    with pytest.raises(seccomp.SeccompError, match="cannot read the seccomp profile"):
        seccomp.load(bad)


def _task(mode: TaskSeccomp) -> NITask:
    return NITask(name="factory", ni_type="local", uplink="eth0", generation="3",
                  netns_path="/run/netns/nr-factory", config_dir="/c", state_dir="/s",
                  log_path="/l", limits=oci.Limits.from_cpus(64 << 20, 0.25, 128), seccomp=mode)


def test_task_spec_carries_the_filter_and_no_new_privileges() -> None:
    spec = oci.build(_task(TaskSeccomp.ENFORCE).spec("nirunner"))
    assert spec["linux"]["seccomp"] == seccomp.for_task(TaskSeccomp.ENFORCE)
    assert spec["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert spec["process"]["noNewPrivileges"] is True
    # an NITask built without saying (as the supervisor does now) has the filter on
    assert NITask.__dataclass_fields__["seccomp"].default is TaskSeccomp.ENFORCE


def test_the_filter_is_the_only_difference_in_the_spec() -> None:
    on = oci.build(_task(TaskSeccomp.ENFORCE).spec("nirunner"))
    off = oci.build(_task(TaskSeccomp.OFF).spec("nirunner"))
    assert "seccomp" not in off["linux"]
    del on["linux"]["seccomp"]
    assert on == off


def test_fingerprint_names_mode_and_list() -> None:
    assert seccomp.fingerprint(TaskSeccomp.OFF) == "off"
    enforce, log = seccomp.fingerprint(TaskSeccomp.ENFORCE), seccomp.fingerprint(TaskSeccomp.LOG)
    assert enforce.startswith("enforce:") and log.startswith("log:")
    assert enforce.split(":")[1] == log.split(":")[1] != ""
