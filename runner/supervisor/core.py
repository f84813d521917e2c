"""The supervisor's logic: apply, delete, reconcile, status, attach; task restarts.

All changes go through one lock, so concurrent API calls are serialized and
never interleave half-way. A rejected apply (bad manifest, plan error) changes
nothing; an apply that fails while reconciling restores the previous desired
state and reconciles back to it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass, field

from runner import nitask
from runner.containerd import tasks
from runner.containerd.client import Client
from runner.containerd.errors import ContainerdError, NotFound
from runner.drivers import facts as live_facts
from runner.drivers import links
from runner.drivers import netns as ns
from runner.errors import NirunnerError
from runner.model.manifest import Located, parse_documents, validate_set
from runner.model.types import NetworkInstance, SupervisorConfig
from runner.net import names
from runner.plan import site
from runner.plan.facts import Facts
from runner.plan.site import Plan
from runner.supervisor import attach as attach_mod
from runner.supervisor import executor as executor_mod
from runner.supervisor import status as status_mod
from runner.supervisor.events import EventLog
from runner.supervisor.executor import Executor, NIResult, Prepared
from runner.supervisor.store import Attachment, Desired, Store

log = logging.getLogger("nirunner.supervisor")

BACKOFF_START = 0.5
BACKOFF_MAX = 30.0
FAILED_AFTER = 5  # exits in a row without staying up STABLE seconds
STABLE = 30.0
TASK_WORKERS = 4  # NI tasks created/started at once (2 cores; runc waits a lot)


@dataclass
class Health:
    restarts: int = 0
    last_exit: int | None = None
    failures_in_row: int = 0
    last_start: float = 0.0
    next_try: float = 0.0
    failed_reason: str = ""
    last_error: str = ""


@dataclass(frozen=True)
class Document:
    source: str
    text: str


@dataclass
class Supervisor:
    config: SupervisorConfig
    client: Client
    store: Store = field(init=False)
    desired: Desired = field(init=False)
    health: dict[str, Health] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.store = Store(self.config.state_dir)
        self.desired = self.store.load()  # StateCorrupt: refuse to start, keep the file
        self.executor = Executor(self.client, self.store, self.config.image)
        self.events = EventLog()
        self.lock = threading.RLock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.resync = threading.Event()  # a full reconcile is wanted (uplink change...)

        self._facts: Facts | None = None  # the uplinks as last read; None: read again
        self._cached: tuple[tuple[int, int], Plan] | None = None  # (versions) -> plan
        self._version = 0  # bumped by every change of the desired state
        self._uplinks_changed = threading.Event()  # set by the uplink watch thread
        self._plugged: dict[tuple[str, str], tuple[int | None, int | None, int]] = {}

    def request_resync(self, reason: str, kind: str = "resync") -> None:
        if kind == "uplink.changed":
            self._uplinks_changed.set()  # the next pass reads them again
        self.events.emit(kind, "", reason)
        self.resync.set()
        self.wake.set()

    def _save(self, desired: Desired | None = None) -> None:
        self._version += 1
        self.store.save(self.desired if desired is None else desired)

    # -- planning ---------------------------------------------------------------

    def _plan(self, nis: dict[str, NetworkInstance], slots: dict[str, int]) -> Plan:
        if self._facts is None:
            self._facts = live_facts.read(self.config, self.config.resolv_conf)
        return site.build(self.config, self._facts, list(nis.values()), slots)

    def _current_plan(self) -> Plan:
        """The plan of the desired state, rebuilt only when it or the uplinks changed."""
        key = (self._version, id(self._facts))
        if self._cached is None or self._cached[0] != key or self._facts is None:
            plan = self._plan(self.desired.nis, self.desired.slots)
            self._cached = ((self._version, id(self._facts)), plan)
        return self._cached[1]

    # -- API operations -----------------------------------------------------------

    def apply(self, docs: Sequence[Document], dry_run: bool = False) -> list[NIResult]:
        located: list[Located] = []
        for d in docs:
            located.extend(parse_documents(d.text, d.source))
        with self.lock:
            kept = [Located(ni) for n, ni in self.desired.nis.items()
                    if n not in {x.ni.name for x in located}]
            validate_set([*located, *kept], self.config)
            new_nis = {**self.desired.nis, **{x.ni.name: x.ni for x in located}}
            plan = self._plan(new_nis, self.desired.slots)  # PlanError: nothing changed
            if dry_run:
                return [self._preview(plan, x.ni.name) for x in located]
            previous = Desired(dict(self.desired.nis), dict(self.desired.slots),
                               list(self.desired.attachments))
            self.desired.nis, self.desired.slots = new_nis, plan.slots
            self._save()
            for x in located:  # a new apply clears an earlier "failed"
                self.health.pop(x.ni.name, None)
            try:
                results = self._reconcile(plan, only={x.ni.name for x in located})
            except NirunnerError as e:
                self.events.emit("apply.rolledback", "", f"apply failed, rolling back: {e}",
                                 logging.ERROR)
                self.desired = previous
                self._save(previous)
                for x in located:
                    if x.ni.name not in previous.nis:
                        self._remove(x.ni.name, plan.slots.get(x.ni.name))
                self._reconcile(self._plan(previous.nis, previous.slots))
                raise
            return [r for r in results if r.name in {x.ni.name for x in located}]

    def _preview(self, plan: Plan, name: str) -> NIResult:
        p = plan.nis[name]
        try:
            c = tasks.get_container(self.client, p.container_id)
        except NotFound:
            return NIResult(name, "create", f"netns {p.netns}, task {p.container_id}")
        if c.labels.get(nitask.LABEL_GENERATION) != p.restart_key:
            return NIResult(name, "recreate", "a change needs a new task")
        return NIResult(name, "update", "applied live, without restarting the task")

    def delete(self, names_: Sequence[str]) -> list[str]:
        with self.lock:
            unknown = [n for n in names_ if n not in self.desired.nis]
            if unknown:
                raise NirunnerError(f"no such NI: {', '.join(unknown)}")
            slots = {n: self.desired.slots.get(n) for n in names_}
            for n in names_:
                del self.desired.nis[n]
                self.desired.slots.pop(n, None)
                self.health.pop(n, None)
            self.desired.attachments = [a for a in self.desired.attachments
                                        if a.ni not in names_]
            self._save()
            errors = []
            for n in names_:
                try:
                    self._remove(n, slots[n])
                except NirunnerError as e:
                    errors.append(str(e))
            self._reconcile(self._current_plan(), only=set())
            if errors:
                raise NirunnerError("; ".join(errors))
            return list(names_)

    def _remove(self, name: str, slot: int | None, why: str = "deleted") -> None:
        self.executor.remove_ni(name, slot)
        self.events.emit("ni.removed", name, why)

    # -- reconcile ---------------------------------------------------------------

    def reconcile(self, force: bool = False) -> list[NIResult]:
        """Converge everything. A forced pass re-reads the uplinks and redoes all
        kernel work; otherwise what matches its last applied plan is skipped."""
        with self.lock:
            if self._uplinks_changed.is_set():
                self._uplinks_changed.clear()
                self._facts = None  # the plan follows the new addresses
                self.executor.forget(device_only=True)  # a downed link lost its routes
            if force:
                self._facts = None
                self._plugged.clear()
                self.executor.forget()
            plan = self._current_plan()
            if plan.slots != self.desired.slots:
                self.desired.slots = plan.slots
                self._save()
            if force:  # at start and every few minutes: a scan of containerd and links
                self._remove_orphans(plan)
            return self._reconcile(plan)

    def _reconcile(self, plan: Plan, only: set[str] | None = None) -> list[NIResult]:
        """The device first, then the NIs, then the apps' plugs.

        The device's rules and nft table name transit links that may not exist
        yet (nothing in them needs the link), and having them in place before an
        NI's task starts means its first packets (charon's IKE) are NATed already.
        """
        results: list[NIResult] = []
        errors: list[str] = []
        try:
            missing = self.executor.ensure_device(plan.device, plan.nis.keys())
            if missing:
                log.debug("sysctls not set (no such interface yet): %s", missing)
        except NirunnerError as e:
            errors.append(f"device: {e}")
            self.events.emit("reconcile.error", "", f"device: {e}", logging.ERROR)
        chosen = [n for n in plan.nis if (only is None or n in only or self._needs_work(n))
                  and not (only is None and self.health.get(n, Health()).failed_reason)]
        views = executor_mod.task_views(self.client) if chosen else {}
        prepared: dict[str, Prepared] = {}
        for name in chosen:  # networks one after another: cheap, and netlink likes it so
            try:
                prepared[name] = self.executor.prepare_ni(plan.nis[name])
            except NirunnerError as e:
                self._failed(name, e, errors)

        def finish(name: str) -> NIResult:
            p = plan.nis[name]
            return self.executor.finish_ni(p, self.desired.nis[name], prepared[name],
                                           views.get(p.container_id))

        # tasks side by side: creating and starting one is mostly waiting on runc
        with futures.ThreadPoolExecutor(max_workers=TASK_WORKERS) as pool:
            done = {name: pool.submit(finish, name) for name in prepared}
        for name, fut in done.items():
            h = self.health.setdefault(name, Health())
            try:
                r = fut.result()
            except NirunnerError as e:
                self._failed(name, e, errors)
                continue
            if r.action in ("created", "recreated", "started"):
                h.last_start = time.monotonic()
            h.last_error = ""
            results.append(r)
            if r.action != "unchanged":
                self.events.emit(f"ni.{r.action}", name, r.detail or r.action,
                                 restarts=h.restarts)
        try:
            self._replug(plan)
        except NirunnerError as e:
            errors.append(f"apps: {e}")
            self.events.emit("reconcile.error", "", f"apps: {e}", logging.ERROR)
        if errors:
            raise NirunnerError("; ".join(errors))
        return results

    def _failed(self, name: str, e: Exception, errors: list[str]) -> None:
        self.health.setdefault(name, Health()).last_error = str(e)
        errors.append(f"NI {name}: {e}")
        self.events.emit("reconcile.error", name, str(e), logging.ERROR)

    def _needs_work(self, name: str) -> bool:
        h = self.health.get(name)
        return h is not None and h.next_try > 0 and time.monotonic() >= h.next_try

    def _remove_orphans(self, plan: Plan) -> None:
        """Objects of NIs that no manifest owns anymore.

        An NI's state dir is made before anything else of it and removed last, so
        it is the record of what this supervisor made: network namespaces are
        global, and an `nr-*` netns without a state dir here may belong to
        another supervisor (a lab, a test) and is left alone.
        """
        ni_dirs = self.store.root / "ni"
        if ni_dirs.is_dir():
            for d in sorted(ni_dirs.iterdir()):
                if d.name not in plan.nis:
                    self._remove(d.name, None, "orphan removed")
        wanted_cids = {p.container_id for p in plan.nis.values()}
        for c in tasks.list_containers(self.client):
            owned = c.id.startswith(names.CONTAINER_PREFIX) or nitask.LABEL_NAME in c.labels
            if owned and c.id not in wanted_cids:
                tasks.remove_container(self.client, c.id)
                self.events.emit("orphan.removed", "", f"container {c.id}")
        wanted_ifs = {p.transit.device_if for p in plan.nis.values() if p.transit}
        for ifname in links.names():
            if names.transit_slot(ifname) is not None and ifname not in wanted_ifs:
                links.delete(ifname)
                self.events.emit("orphan.removed", "", f"link {ifname}")

    # -- task exits: restart with backoff ----------------------------------------------

    def on_task_exit(self, ev: tasks.TaskExit) -> None:
        if ev.exec_id or not ev.container_id.startswith(names.CONTAINER_PREFIX):
            return
        name = ev.container_id.removeprefix(names.CONTAINER_PREFIX)
        with self.lock:
            if name not in self.desired.nis:
                return
            h = self.health.setdefault(name, Health())
            h.last_exit = ev.exit_status
            up_for = time.monotonic() - h.last_start
            h.failures_in_row = 1 if up_for > STABLE else h.failures_in_row + 1
            if h.failures_in_row >= FAILED_AFTER:
                h.failed_reason = (f"task exited {h.failures_in_row} times in a row "
                                   f"(last status {ev.exit_status}); not restarted")
                self.events.emit("ni.failed", name, h.failed_reason, logging.ERROR)
                return
            delay = min(BACKOFF_MAX, BACKOFF_START * 2 ** (h.failures_in_row - 1))
            h.next_try = time.monotonic() + delay
            h.restarts += 1
            self.events.emit("task.exited", name, f"restart {h.restarts} in {delay:.1f}s",
                             logging.WARNING, status=ev.exit_status, pid=ev.pid)
        self.wake.set()

    def restart_due(self) -> None:
        """Restart the tasks whose backoff has passed."""
        with self.lock:
            due = [n for n in self.desired.nis if self._needs_work(n)]
            if not due:
                return
            plan = self._current_plan()
            for n in due:
                self.health[n].next_try = 0.0
            try:
                self._reconcile(plan, only=set(due))
            except NirunnerError:
                for n in due:  # try again later (the error is in the events already)
                    h = self.health[n]
                    h.next_try = time.monotonic() + min(BACKOFF_MAX, 2.0 * h.failures_in_row)

    def next_due(self) -> float | None:
        times = [h.next_try for h in self.health.values() if h.next_try > 0]
        return min(times) if times else None

    # -- attach / detach ------------------------------------------------------------

    def attach(self, ni: str, netns: str, ifname: str, mac: str, hostname: str) -> Attachment:
        with self.lock:
            if ni not in self.desired.nis:
                raise NirunnerError(f"no such NI: {ni}")
            plan = self._current_plan()
            a = attach_mod.plug(ni, netns, ifname or "eth0", mac, hostname, plan.nis[ni].mtu)
            self.desired.attachments = [
                x for x in self.desired.attachments
                if (x.netns, x.ifname) != (a.netns, a.ifname)] + [a]
            self._save()
            return a

    def detach(self, ni: str, netns: str, ifname: str) -> None:
        with self.lock:
            keep: list[Attachment] = []
            gone: list[Attachment] = []
            for a in self.desired.attachments:
                (gone if (a.ni, a.netns, a.ifname) == (ni, netns, ifname or "eth0")
                 else keep).append(a)
            if not gone:
                raise NirunnerError(f"{netns} {ifname or 'eth0'} is not attached to NI {ni}")
            for a in gone:
                attach_mod.unplug(a)
                self._plugged.pop((a.netns, a.ifname), None)
            self.desired.attachments = keep
            self._save()

    def _replug(self, plan: Plan) -> None:
        """Apps stay plugged into a rebuilt NI (their veth died with the old netns).

        A plug is looked at again only when the NI's or the app's netns is another
        one than when it was last made (or on a forced pass)."""
        for a in self.desired.attachments:
            p = plan.nis.get(a.ni)
            if p is None:
                continue
            key = (a.netns, a.ifname)
            seen = (ns.inode(p.netns), ns.inode_of_path(a.netns), p.mtu)
            if self._plugged.get(key) == seen:
                continue
            attach_mod.ensure(a, p.mtu)
            self._plugged[key] = seen

    # -- status ---------------------------------------------------------------------

    def status(self, names_: Sequence[str] = (), detail: bool = False) -> list[dict]:
        with self.lock:
            unknown = [n for n in names_ if n not in self.desired.nis]
            if unknown:
                raise NirunnerError(f"no such NI: {', '.join(unknown)}")
            plan = self._current_plan()
            chosen = names_ or sorted(self.desired.nis)
            try:
                listed = {t.container_id: t for t in tasks.list_tasks(self.client)}
            except ContainerdError:
                listed = {}  # containerd away: the NIs show their tasks as missing
            return [status_mod.ni_status(self, plan, n, detail, listed) for n in chosen]

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
