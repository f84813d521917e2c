"""NI tasks: the containerd container (spec, labels, rootfs snapshot) and its task."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from runner import nitask
from runner.containerd import tasks
from runner.containerd.client import Client
from runner.containerd.errors import AlreadyExists, NotFound
from runner.containerd.spec import shim_group_of
from runner.model.types import TaskSeccomp
from runner.net import names
from runner.reconcile.kinds import Task
from runner.render import swanctl
from runner.supervisor import vpn

if TYPE_CHECKING:
    from runner.pb.containerd.services.containers.v1 import containers_pb2
    from runner.reconcile.kinds import ConfigFiles

log = logging.getLogger("nirunner.task")

STARTS = 4  # tasks created or started at once


def _nitask(item: Task) -> nitask.NITask:
    return nitask.NITask(
        name=item.ni, ni_type=item.ni_type, uplink=item.uplink, generation=item.generation,
        netns_path=item.netns_path, config_dir=item.config_dir, state_dir=item.state_dir,
        log_path=item.log_path, limits=item.limits, seccomp=TaskSeccomp(item.seccomp))


class ShimGroups:
    """Which NI tasks share a runc shim: groups of at most `size` tasks (1: a shim each).

    A shim serves every task whose spec names the same group, so N tasks cost one
    shim process instead of N (~13 MiB RSS each). A new task joins the first group
    with room; a task keeps its group for its container's life. A group whose tasks are
    all being deleted takes no new one: its shim stops when the last delete is done.
    """

    PREFIX = "ni-shim-"

    def __init__(self, size: int) -> None:
        self.size = size
        self.members: dict[str, set[str]] = {}  # group -> container ids
        self.lock = threading.Lock()
        self.up: set[str] = set()  # groups whose shim a task of ours started and that runs
        self.leaving: set[str] = set()  # container ids whose task is being deleted
        self._gates: dict[str, threading.Lock] = {}

    @contextlib.contextmanager
    def starting(self, group: str) -> Iterator[None]:
        """Held while a task of `group` starts. Until the group's shim runs, its tasks
        start one at a time: containerd 1.6 starting one group's shim for two tasks at
        once can remove the socket the other just made ("create new shim socket: chmod
        ...: no such file or directory"). Once it runs, they start side by side."""
        gate: threading.Lock | None = None
        if group:
            with self.lock:
                if group not in self.up:
                    gate = self._gates.setdefault(group, threading.Lock())
            if gate is not None:
                gate.acquire()
                if group in self.up:  # started while we waited
                    gate.release()
                    gate = None
        try:
            yield
            if group:
                with self.lock:
                    self.up.add(group)
        except BaseException:
            with self.lock:
                self.up.discard(group)
            raise
        finally:
            if gate is not None:
                gate.release()

    def exited(self, cid: str) -> None:
        """A task exited: its group's shim may have gone with it (killed, all its tasks
        with it), so the group's next start is a first one again."""
        with self.lock:
            self.up -= {g for g, cids in self.members.items() if cid in cids}

    def choose(self, cid: str) -> str:
        if self.size <= 1:
            return ""
        with self.lock:
            for group, cids in sorted(self.members.items(), key=lambda g: _index(g[0])):
                if cid in cids or (len(cids) < self.size and not cids <= self.leaving):
                    cids.add(cid)
                    return group
            k = next(i for i in range(len(self.members) + 1)
                     if f"{self.PREFIX}{i}" not in self.members)
            group = f"{self.PREFIX}{k}"
            self.members[group] = {cid}
            return group

    def learn(self, cid: str, group: str) -> None:
        with self.lock:
            for cids in self.members.values():
                cids.discard(cid)
            if group:
                self.members.setdefault(group, set()).add(cid)

    @contextlib.contextmanager
    def removing(self, cid: str) -> Iterator[None]:
        """Held while the task is deleted; once it is, the group forgets it."""
        with self.lock:
            self.leaving.add(cid)
        try:
            yield
        except BaseException:
            with self.lock:
                self.leaving.discard(cid)
            raise
        self.forget(cid)

    def forget(self, cid: str) -> None:
        """The task is deleted (or its create undone). A group left with no task has no
        shim any more: its next start is a first one again."""
        self.learn(cid, "")
        with self.lock:
            self.leaving.discard(cid)
            self.members = {g: c for g, c in self.members.items() if c}
            self.up &= self.members.keys()


def _index(group: str) -> int:
    tail = group.removeprefix(ShimGroups.PREFIX)
    return int(tail) if tail.isdigit() else 1 << 30


class TaskConf:
    parallel = True  # creating and starting a task is mostly waiting on runc
    starts = STARTS  # the engine's bound on creates at once (its pool stays free for others)

    def __init__(self, client: Client, secrets_dir: str | None = None,
                 shim_group_size: int = 1) -> None:
        self.client = client
        self.secrets_dir = secrets_dir
        self.groups = ShimGroups(shim_group_size)
        # runc create + shim start cost CPU: 4 at a time is fastest on 2 cores (measured),
        # while stops, mostly waiting for the task to exit, run as wide as the engine allows
        self._starts = threading.BoundedSemaphore(STARTS)
        self._containers: dict[str, containers_pb2.Container] | None = None
        self._tasks: dict[str, tasks.TaskInfo] = {}

    # -- effects -------------------------------------------------------------------------

    def create(self, item: Task) -> Task:
        group = self.groups.choose(item.container_id)
        t = replace(_nitask(item), shim_group=group)
        try:
            try:
                with self._starts, self.groups.starting(group):
                    pid = nitask.run(self.client, item.image, t)
            except AlreadyExists:  # made before it was recorded (a crash, say): adopt or redo
                self.prepare()
                live = self.read(item)
                self.done_reading()
                if live is not None and replace(live, running=True) == item:
                    return live if live.running else self.modify(live, item)
                nitask.remove(self.client, item.ni)
                with self._starts, self.groups.starting(group):
                    pid = nitask.run(self.client, item.image, t)
        except BaseException:
            self.groups.forget(item.container_id)
            raise
        return replace(item, pid=pid, status="running", shim_group=group)

    def modify(self, old: Task, new: Task) -> Task:
        c = self.client
        if old.limits != new.limits:
            tasks.update_limits(c, new.container_id, new.limits)
        if new.running and not old.running:
            if old.status not in ("", "missing"):
                with contextlib.suppress(NotFound):
                    tasks.delete_task(c, new.container_id)
            with self._starts, self.groups.starting(old.shim_group or new.shim_group):
                pid = nitask.start(c, _nitask(new))
            return replace(new, pid=pid, status="running")
        return replace(new, pid=old.pid, status=old.status)

    def delete(self, item: Task) -> None:
        with self.groups.removing(item.container_id):
            tasks.remove_container(self.client, item.container_id, *self._signal_target(item))

    def signal_stop(self, items: Iterable[Task]) -> None:
        """SIGTERM to the init of each of these running tasks at once, without containerd:
        their processes exit while the deletes that follow still wait for a worker, and
        the kernel frees each NI's netns (a bridge's teardown, ~17 ms slept, one netns
        after another) sooner. A task not signalled here is by its delete."""
        for item in items:
            tasks.signal_init(*self._signal_target(item), tasks.SIGTERM)

    def _signal_target(self, item: Task) -> tuple[int, str]:
        """The task's init as last seen (0: not running) and its cgroup, to signal it."""
        return (item.pid if item.running else 0,
                nitask.cgroups_path(self.client.namespace, item.container_id))

    def reload(self, files: ConfigFiles, changed: list[str]) -> None:
        """The running task takes changed config files: SIGHUP (dnsmasq), VICI (charon)."""
        cid = names.container_id(files.ni)
        with contextlib.suppress(NotFound):
            tasks.kill_task(self.client, cid, tasks.SIGHUP, all_processes=False)
        if files.vpn is not None and any(n.startswith(f"{swanctl.SWANCTL_DIR}/")
                                         for n in changed):
            state = Path(files.dir).parent / "state"
            done = vpn.reload(files.ni, files.vpn, Path(files.dir), state, changed,
                              self.secrets_dir)
            log.info("NI %s: VPN reloaded: %s", files.ni, done)

    # -- reading ---------------------------------------------------------------------------

    def prepare(self) -> None:
        """One list of containers and one of tasks for a batch of reads."""
        self._containers = {x.id: x for x in tasks.list_containers(self.client)}
        self._tasks = {t.container_id: t for t in tasks.list_tasks(self.client)}

    def observe(self) -> dict[str, tasks.TaskInfo]:
        """The namespace's tasks by container id (one call)."""
        self._tasks = {t.container_id: t for t in tasks.list_tasks(self.client)}
        return self._tasks

    def read(self, item: Task) -> Task | None:
        if self._containers is None:
            self.prepare()
        assert self._containers is not None
        c = self._containers.get(item.container_id)
        if c is None:
            return None
        labels = c.labels
        info = self._tasks.get(item.container_id)
        status = info.status if info else "missing"
        group = shim_group_of(tasks.container_spec(c))
        self.groups.learn(item.container_id, group)
        return replace(
            item, image=c.image, generation=labels.get(nitask.LABEL_GENERATION, ""),
            ni_type=labels.get(nitask.LABEL_TYPE, ""),
            uplink=labels.get(nitask.LABEL_UPLINK, ""), limits=tasks.limits_of(c),
            running=status == "running", pid=info.pid if info else 0, status=status,
            shim_group=group)

    def sweep(self) -> list[Task]:
        """Containers that are ours by name or label (an NI's, whichever)."""
        if self._containers is None:
            self.prepare()
        assert self._containers is not None
        out = []
        for c in self._containers.values():
            ni = c.labels.get(nitask.LABEL_NAME) or (
                c.id.removeprefix(names.CONTAINER_PREFIX)
                if c.id.startswith(names.CONTAINER_PREFIX) else "")
            if ni:
                out.append(Task(ni="", container_id=c.id, image=c.image, generation="",
                                ni_type="", uplink="", netns="", netns_path="", config_dir="",
                                state_dir="", log_path="", limits=tasks.limits_of(c)))
        return out

    def done_reading(self) -> None:
        self._containers = None
