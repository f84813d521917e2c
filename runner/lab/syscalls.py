"""Which system calls processes made under a seccomp filter: from `strace -f` output
and from the kernel's audit lines of SCMP_ACT_LOG. Pure parsing, used by
tools/seccomp_profile.py to derive the NI tasks' allow-list.

A thread counts from the moment the filter applies to it: after its own successful
`seccomp(SECCOMP_SET_MODE_FILTER, ...)` (or `prctl(PR_SET_SECCOMP, ...)`), after
such a call with SECCOMP_FILTER_FLAG_TSYNC by another thread of its process, or
from its birth when the thread or process that cloned it counted already (filters
are inherited). So of runc's init, only what it does after loading the filter
counts (the last steps before it execs the task's process), and of the task
everything.

strace lines look like `PID name(args) = ret`, or are split into
`PID name(args <unfinished ...>` and `PID <... name resumed>) = ret`; signals
(`--- SIG... ---`) and exits (`+++ ... +++`) carry no call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

_LINE = re.compile(r"^(\d+)\s+(?:[\d:.]+\s+)?(.*)$")
_CALL = re.compile(r"^([a-z_][a-z0-9_]*)\(")
_RESUMED = re.compile(r"^<\.\.\. ([a-z_][a-z0-9_]*) resumed>")
# with --pidns-translation a pid from another pid namespace reads `= 3 /* 15204 in
# strace's PID NS */`: the second number is the one strace prefixes lines with
_RETURN = re.compile(r"\)\s+=\s+(-?\d+|\?)(?: /\* (\d+) in strace's PID NS \*/)?")
_SUPERSEDED = re.compile(r"^\+\+\+ superseded by execve in pid (\d+) \+\+\+")
_CLONES = ("clone", "clone3", "fork", "vfork")
# audit records of seccomp (type 1326) whose action was SECCOMP_RET_LOG
_AUDIT = re.compile(r"type=1326 .*?\bsyscall=(\d+)\b.*\bcode=0x7ffc0000\b")


@dataclass(frozen=True)
class _Call:
    tid: int
    name: str
    index: int  # line of its entry
    text: str  # the entry's text (flags live there)


@dataclass
class Trace:
    """What one strace -f log holds."""

    calls: list[tuple[int, int, str]] = field(default_factory=list)  # (index, tid, name)
    # clone entry index -> (parent tid, child tid, a thread of the same process?)
    clones: dict[int, tuple[int, int, bool]] = field(default_factory=dict)
    # completion index -> (tid, TSYNC?) of successful filter loads
    loads: dict[int, tuple[int, bool]] = field(default_factory=dict)
    # index -> (leader tid, thread tid): a non-leader thread exec'd and took the leader's tid
    superseded: dict[int, tuple[int, int]] = field(default_factory=dict)


def _succeeded(rest: str) -> int | None:
    m = _RETURN.search(rest)
    if m is None or m.group(1) == "?":
        return None
    return int(m.group(2) or m.group(1))


def _is_load(name: str, text: str) -> bool:
    if name == "seccomp":
        return "SECCOMP_SET_MODE_FILTER" in text
    return name == "prctl" and "PR_SET_SECCOMP" in text and "SECCOMP_MODE_FILTER" in text


def read_trace(lines: Iterable[str]) -> Trace:
    """Parse `strace -f` output (with `PID` prefixes) into calls, clones and filter loads."""
    t = Trace()
    pending: dict[int, _Call] = {}
    for index, raw in enumerate(lines):
        m = _LINE.match(raw.rstrip("\n"))
        if m is None:
            continue
        tid, rest = int(m.group(1)), m.group(2)
        if (s := _SUPERSEDED.match(rest)) is not None:
            t.superseded[index] = (tid, int(s.group(1)))
            continue
        if (r := _RESUMED.match(rest)) is not None:
            call = pending.pop(tid, None)
            if call is None or call.name != r.group(1):
                continue  # attached in the middle of it, or a log we cannot follow
            _finish(t, call, call.text + rest, index)
            continue
        c = _CALL.match(rest)
        if c is None:
            continue
        call = _Call(tid, c.group(1), index, rest)
        t.calls.append((index, tid, call.name))
        if rest.endswith("<unfinished ...>"):
            pending[tid] = call
        else:
            _finish(t, call, rest, index)
    return t


def _finish(t: Trace, call: _Call, text: str, index: int) -> None:
    ret = _succeeded(text)
    if call.name in _CLONES and ret is not None and ret > 0:
        t.clones[call.index] = (call.tid, ret, "CLONE_THREAD" in text)
    elif _is_load(call.name, text) and ret == 0:
        t.loads[index] = (call.tid, "SECCOMP_FILTER_FLAG_TSYNC" in text)


def filtered_calls(t: Trace) -> dict[str, set[int]]:
    """Syscall name -> tids that made it while a seccomp filter applied to them."""
    # calls sort before the events of their own line: a filter load does not
    # filter itself, and a clone's entry is the parent's call
    steps: list[tuple[int, int, str, tuple]] = [(i, 0, name, (tid,)) for i, tid, name in t.calls]
    steps += [(i, 1, "clone", c) for i, c in t.clones.items()]
    steps += [(i, 1, "load", x) for i, x in t.loads.items()]
    steps += [(i, 1, "superseded", x) for i, x in t.superseded.items()]
    tgid: dict[int, int] = {}
    filtered: set[int] = set()
    out: dict[str, set[int]] = {}
    for _, kind, what, args in sorted(steps, key=lambda s: (s[0], s[1])):
        if kind == 0:
            (tid,) = args
            tgid.setdefault(tid, tid)  # a thread we never saw cloned: its own process
            if tid in filtered:
                out.setdefault(what, set()).add(tid)
        elif what == "clone":
            parent, child, thread = args
            tgid[child] = tgid.setdefault(parent, parent) if thread else child
            filtered.discard(child)  # a reused tid starts afresh
            if parent in filtered:
                filtered.add(child)
        elif what == "load":
            tid, tsync = args
            group = tgid.setdefault(tid, tid)
            filtered.add(tid)
            if tsync:
                filtered.update(x for x, g in tgid.items() if g == group)
        else:  # superseded: the exec'ing thread `old` now carries the leader's tid
            new, old = args
            if old in filtered:
                filtered.add(new)
            else:
                filtered.discard(new)
            tgid[new] = new
    return out


def syscall_numbers(header: Path) -> dict[int, str]:
    """Syscall numbers -> names from the kernel's unistd header (`#define __NR_x n`)."""
    table: dict[int, str] = {}
    for line in header.read_text().splitlines():
        m = re.match(r"#define __NR_([a-z0-9_]+)\s+(\d+)\s*$", line)
        if m:
            table[int(m.group(2))] = m.group(1)
    return table


def logged_calls(kmsg: Iterable[str], numbers: dict[int, str]) -> set[str]:
    """Syscalls the kernel logged for SCMP_ACT_LOG filters (audit type 1326 lines)."""
    out = set()
    for line in kmsg:
        m = _AUDIT.search(line)
        if m:
            nr = int(m.group(1))
            out.add(numbers.get(nr, f"syscall_{nr}"))
    return out
