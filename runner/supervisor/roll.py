"""Image rolls: NIs move to a new NI image (or seccomp mode) one at a time.

A Task item's image is a re-create field, so a new image in the task policy would
make the next diff re-create every task at once. Instead, when the policy changes
(a reload, or a start with tasks on another image), every NI is *pinned* to the
policy its task was made with (TaskPolicy.pinned), and the roll unpins one NI at a
time: the diff of that NI alone is then one re-create of its task — the netns,
links, nft tables, config files, app plugs and leases stay as they are — run all
or nothing, then the new task must answer DNS (its dnsmasq) within READY_TIMEOUT.
The downtime is measured from the moment the old task is stopped until that
answer. A new task that fails (it exits, or does not answer) is replaced by one on
the old policy again (the old image stays in containerd), the NI stays pinned to
it, and the roll stops with the reason.
"""

from __future__ import annotations

import logging
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from runner.containerd import images, tasks
from runner.containerd.errors import ContainerdError
from runner.drivers import netns as ns
from runner.errors import NirunnerError
from runner.net import names
from runner.reconcile.build import TaskPolicy

if TYPE_CHECKING:
    from runner.supervisor.core import Supervisor

log = logging.getLogger("nirunner.roll")

READY_TIMEOUT = 20.0  # seconds for a new task's dnsmasq to answer
PROBE_EVERY = 0.02
SETTLE = 0.5  # a task without a service (a switch NI's) is ready once it ran this long


class RollError(NirunnerError):
    pass


@dataclass(frozen=True)
class NIRoll:
    ni: str
    old: str  # image (and seccomp mode, when it changes)
    new: str
    result: str  # rolled | rolled back | failed
    downtime: float = 0.0  # seconds: old task stopped -> new task's dnsmasq answering
    error: str = ""

    def line(self) -> str:
        what = f"{self.ni}: {self.result} {self.old} -> {self.new}"
        if self.result == "rolled":
            return f"{what}, down {self.downtime:.2f}s"
        return f"{what}: {self.error}"


@dataclass
class RollReport:
    nis: list[NIRoll] = field(default_factory=list)
    stopped: str = ""  # why the roll stopped before the end ("" when it ran through)
    pending: list[str] = field(default_factory=list)  # NIs still on their old policy

    def lines(self) -> list[str]:
        out = [r.line() for r in self.nis]
        if self.stopped:
            out.append(f"roll stopped: {self.stopped}")
        if self.pending:
            out.append(f"still on the old image: {', '.join(self.pending)}")
        if not self.nis and not self.stopped:
            out.append("nothing to roll: every NI runs the configured image")
        return out


def _describe(p: TaskPolicy, other: TaskPolicy) -> str:
    return p.image + (f" (seccomp {p.seccomp})" if p.seccomp != other.seccomp else "")


# -- pins ------------------------------------------------------------------------------------


def pin(sup: Supervisor, new: TaskPolicy) -> TaskPolicy:
    """`new`, with every NI of the desired state pinned to the policy it runs under now."""
    pinned = {}
    for name in sup.desired.nis:
        now = sup.task_policy.of(name)
        if (now.image, now.seccomp, now.seccomp_profile) != \
                (new.image, new.seccomp, new.seccomp_profile):
            pinned[name] = replace(now, pinned=())
    return replace(new, pinned=tuple(sorted(pinned.items())))


def pin_running(sup: Supervisor) -> list[str]:
    """At start: NIs whose container was made with another image than the configured
    one are pinned to it (so the first pass adopts them), for a roll afterwards."""
    policy = sup.task_policy
    try:
        running = {c.id: c.image for c in tasks.list_containers(sup.client)}
    except ContainerdError:
        return []  # the first pass finds containerd away anyway
    pinned = dict(policy.pinned)
    for name in sup.desired.nis:
        image = running.get(names.container_id(name))
        if image and image != policy.image:
            pinned[name] = replace(policy, image=image, pinned=())
    sup.task_policy = replace(policy, pinned=tuple(sorted(pinned.items())))
    return sorted(n for n in pinned if n in sup.desired.nis)


def _unpinned(p: TaskPolicy, name: str) -> TaskPolicy:
    return replace(p, pinned=tuple((n, x) for n, x in p.pinned if n != name))


def _repinned(p: TaskPolicy, name: str, old: TaskPolicy) -> TaskPolicy:
    return replace(p, pinned=tuple(sorted({**dict(p.pinned), name: old}.items())))


# -- readiness -------------------------------------------------------------------------------


def dns_answers(netns: str, server: str, timeout: float = 0.2) -> bool:
    """Whether a DNS server answers a query from inside `netns` (any answer counts: a
    name without dots is answered locally by the NI's dnsmasq, never forwarded)."""
    qid = random.randrange(1 << 16)
    label = b"nirunner-probe"
    query = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + bytes([len(label)]) + label + \
        b"\x00" + struct.pack("!HH", 1, 1)

    def ask() -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            try:
                s.sendto(query, (server, 53))
                data, _ = s.recvfrom(512)
            except OSError:
                return False
            return len(data) >= 12 and struct.unpack("!H", data[:2])[0] == qid

    try:
        return bool(ns.run_in(netns, ask))
    except (OSError, NirunnerError):
        return False


def wait_ready(sup: Supervisor, name: str, since_exits: int, timeout: float) -> str:
    """"" once NI `name`'s task answers DNS, else why not (it exited, or timed out).
    A switch NI's task serves nothing: ready once it has run for SETTLE seconds."""
    plan = sup.plan()
    p = plan.nis.get(name)
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if p is not None and dns_answers(p.netns, str(p.bridge.address.ip)):
            return ""
        if p is None and time.monotonic() >= started + SETTLE:
            return ""
        h = sup.health.get(name)
        if h is not None and (h.restarts > since_exits or h.failed_reason):
            return f"the new task exited (status {h.last_exit})"
        time.sleep(PROBE_EVERY)
    return f"its dnsmasq did not answer within {timeout:g}s"


# -- rolling ---------------------------------------------------------------------------------


class Roller:
    """One roll at a time; `roll()` from the API, `start()` in the background."""

    def __init__(self, sup: Supervisor, ready_timeout: float = READY_TIMEOUT,
                 ready: Callable[[Supervisor, str, int, float], str] = wait_ready,
                 images_present: Callable[[], list[str]] | None = None) -> None:
        """`ready` and `images_present` replace the DNS probe and containerd in tests."""
        self.sup = sup
        self.ready_timeout = ready_timeout
        self._ready = ready
        self._images = images_present or (lambda: images.list_images(sup.client))
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.last: RollReport | None = None

    def pending(self) -> list[str]:
        p = self.sup.task_policy
        return sorted(n for n, _ in p.pinned if n in self.sup.desired.nis)

    def start(self, reason: str) -> None:
        """Roll every pinned NI in a background thread (a reload, a start)."""
        if not self.pending():
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self.sup.events.emit("roll.started", "", f"{reason}: rolling "
                                 f"{', '.join(self.pending())} one at a time")
            self._thread = threading.Thread(target=self._background, daemon=True,
                                            name="roll")
            self._thread.start()

    def _background(self) -> None:
        try:
            self.roll()
        except Exception:  # logged once; `nirunner roll` tries again
            log.exception("roll")

    def wait(self, timeout: float | None = None) -> RollReport | None:
        t = self._thread
        if t is not None:
            t.join(timeout)
        return self.last

    def roll(self, names: list[str] | None = None) -> RollReport:
        """Move the pinned NIs (or those of `names`) to the configured policy, one at a
        time; the first failure rolls that NI back and stops."""
        t = self._thread
        if t is not None and t.is_alive() and t is not threading.current_thread():
            t.join()  # a roll is under way: its report is the answer
            if names is None and self.last is not None:
                return self.last
        with self._lock:
            t0 = time.monotonic()
            report = self._roll(names)
            self.last = report
        self.sup.on_pass("roll", time.monotonic() - t0)
        return report

    def _roll(self, names: list[str] | None) -> RollReport:
        sup = self.sup
        unknown = [n for n in names or () if n not in sup.desired.nis]
        if unknown:
            raise RollError(f"no such NI: {', '.join(unknown)}")
        todo = [n for n in self.pending() if names is None or n in names]
        report = RollReport()
        if todo:
            self._check_image(sup.task_policy.image)
        for i, name in enumerate(todo):
            r = self._one(name)
            report.nis.append(r)
            if r.result != "rolled":
                report.stopped = f"{name}: {r.error}"
                report.pending = [n for n in self.pending() if names is None or n in names]
                sup.events.emit("roll.failed", name, r.line(), logging.ERROR)
                break
            sup.events.emit("ni.rolled", name, r.line(), downtime=round(r.downtime, 3),
                            image=r.new, left=len(todo) - i - 1)
        else:
            if todo:
                sup.events.emit("roll.done", "", f"{len(todo)} NIs on "
                                f"{sup.task_policy.image}")
        return report

    def _check_image(self, image: str) -> None:
        try:
            present = self._images()
        except ContainerdError as e:
            raise RollError(f"roll to {image}: {e}") from None
        if image not in present:
            raise RollError(f"roll to {image}: no such image in containerd namespace "
                            f"{self.sup.config.containerd_namespace} (nirunner image import)")

    def _one(self, name: str) -> NIRoll:
        sup = self.sup
        with sup.lock:
            policy = sup.task_policy
            old = policy.of(name)
            new = replace(policy, pinned=())
            desc_old, desc_new = _describe(old, new), _describe(new, old)
            h = sup.health.get(name)
            exits = h.restarts if h else 0
            t0 = time.monotonic()
            sup.task_policy = _unpinned(policy, name)
            error = self._recreate(name)
            if error:  # undone by the engine: the old task is back
                sup.task_policy = _repinned(sup.task_policy, name, old)
                return NIRoll(name, desc_old, desc_new, "failed", error=error)
        why = self._ready(sup, name, exits, self.ready_timeout)
        if not why:
            return NIRoll(name, desc_old, desc_new, "rolled", time.monotonic() - t0)
        with sup.lock:  # back to the old image, which stayed in containerd
            sup.task_policy = _repinned(sup.task_policy, name, old)
            sup.health.pop(name, None)  # its exits were the new image's
            back = self._recreate(name)
        if not back:
            back = self._ready(sup, name, 0, self.ready_timeout)
        result = "rolled back" if not back else "failed"
        error = why + ("" if not back else f"; and on the old image: {back}")
        return NIRoll(name, desc_old, desc_new, result, error=error)

    def _recreate(self, name: str) -> str:
        """Run NI `name`'s diff (its task re-created) all or nothing; "" or the error."""
        run = self.sup.converge({name})
        return "" if run.ok else run.first_error()

