"""Parsing strace -f logs and audit lines into the syscalls made under a seccomp filter."""

from __future__ import annotations

from pathlib import Path

from runner.lab import syscalls

# containerd (100) starts runc init (200, with a Go thread 201 made before the
# filter). 200 loads the filter without TSYNC, so 201 stays unfiltered; it execs
# ni-init, which forks dnsmasq: pid 7 inside the task's pid namespace, 300 here;
# the child's first line comes before its parent's clone returns.
TRACE = """\
100 epoll_pwait(4, [], 128, 0, NULL, 0) = 0
100 clone(child_stack=NULL, flags=CLONE_VM|CLONE_VFORK|SIGCHLD <unfinished ...>
200 execve("/usr/bin/runc", ["runc", "init"], 0xc0 /* 5 vars */) = 0
100 <... clone resumed>) = 200
200 clone(child_stack=0xc0, flags=CLONE_VM|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD) = 201
201 futex(0xc0, FUTEX_WAIT_PRIVATE, 0, NULL <unfinished ...>
200 prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, {len=7, filter=0xc0} <unfinished ...>
200 <... prctl resumed>) = 0
201 <... futex resumed>) = 0
201 nanosleep({tv_sec=0, tv_nsec=20000}, NULL) = 0
200 openat(AT_FDCWD, "/proc/self/fd", O_RDONLY|O_CLOEXEC) = 4
200 execve("/sbin/ni-init", ["/sbin/ni-init"], 0xc0 /* 2 vars */) = 0
200 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD <unfinished ...>
300 set_robust_list(0x7f, 24) = 0
200 <... clone resumed>, child_tidptr=0x7f) = 7 /* 300 in strace's PID NS */
300 execve("/usr/sbin/dnsmasq", ["/usr/sbin/dnsmasq"], 0x55 /* 2 vars */) = 0
300 socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE) = 3
300 --- SIGHUP {si_signo=SIGHUP, si_code=SI_USER, si_pid=1, si_uid=0} ---
300 rt_sigreturn({mask=[]}) = 0
300 +++ killed by SIGKILL +++
100 wait4(-1, [{WIFSIGNALED(s) && WTERMSIG(s) == SIGKILL}], WNOHANG, NULL) = 300
"""

# 400 tries to load a filter and fails, then loads one with TSYNC: its thread 401
# (made before) is filtered too. Then 402, a thread made after, execs: strace
# reports the leader's tid as superseded and goes on under 400.
TSYNC = """\
400 clone3({flags=CLONE_VM|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD, exit_signal=0}, 88) = 401
400 seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, NULL) = -1 EFAULT (Bad address)
401 getpid() = 400
400 seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, {len=9, filter=0x55}) = 0
401 gettid() = 401
400 clone3({flags=CLONE_VM|CLONE_THREAD, exit_signal=0, stack=0x7f}, 88) = 402
402 execve("/bin/ip", ["ip"], 0x7f /* 1 var */ <unfinished ...>
400 +++ superseded by execve in pid 402 +++
400 <... execve resumed>) = 0
400 brk(NULL) = 0x55
"""


def calls(text: str) -> dict[str, set[int]]:
    return syscalls.filtered_calls(syscalls.read_trace(text.splitlines()))


def test_only_calls_made_under_the_filter_count() -> None:
    assert calls(TRACE) == {
        "openat": {200}, "execve": {200, 300}, "clone": {200}, "set_robust_list": {300},
        "socket": {300}, "rt_sigreturn": {300},
    }


def test_tsync_filters_every_thread_and_exec_keeps_it() -> None:
    assert calls(TSYNC) == {"gettid": {401}, "clone3": {400}, "execve": {402}, "brk": {400}}


def test_what_a_trace_holds() -> None:
    t = syscalls.read_trace(TRACE.splitlines())
    assert sorted(t.clones.values()) == [(100, 200, False), (200, 201, True), (200, 300, False)]
    assert list(t.loads.values()) == [(200, False)]
    assert syscalls.read_trace(TSYNC.splitlines()).superseded == {7: (400, 402)}


def test_a_trace_without_a_filter_gives_nothing() -> None:
    assert calls("1 read(0, \"\", 1) = 0\n1 clone(flags=SIGCHLD) = 2\n2 write(1, \"\", 0) = 0\n") \
        == {}


def test_audit_lines_of_the_log_action(tmp_path: Path) -> None:
    header = tmp_path / "unistd_64.h"
    header.write_text("#define __NR_read 0\n#define __NR_getppid 110\n#define __NR_x32 (1)\n")
    numbers = syscalls.syscall_numbers(header)
    assert numbers == {0: "read", 110: "getppid"}
    kmsg = [
        "5,1,2,-;audit: type=1326 audit(1.2:2): auid=4294967295 uid=0 gid=0 ses=4294967295 "
        "pid=3848 comm=\"dnsmasq\" exe=\"/usr/sbin/dnsmasq\" sig=0 arch=c000003e syscall=110 "
        "compat=0 ip=0x7f code=0x7ffc0000",
        # the ERRNO action (0x50001: EPERM) and other records are not what LOG allowed
        "5,2,3,-;audit: type=1326 audit(1.3:3): pid=1 comm=\"x\" sig=0 arch=c000003e "
        "syscall=0 compat=0 ip=0x7f code=0x50001",
        "6,3,4,-;br0: port 1(a0) entered forwarding state",
        "5,4,5,-;audit: type=1326 audit(1.4:4): pid=2 sig=0 arch=c000003e syscall=999 "
        "compat=0 ip=0x7f code=0x7ffc0000",
    ]
    assert syscalls.logged_calls(kmsg, numbers) == {"getppid", "syscall_999"}
