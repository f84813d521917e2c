"""The supervisor's logic: apply, delete, attach, passes, healing, task restarts, status.

Desired state (manifests, transit slots, attachments) gives a plan, the plan
gives the intended items; `current` is the record of what exists: what the last
ops produced, or what a read found. Every change is `diff(current, intended)`
run by the engine, and the op log is the only source of results and events:

- apply / delete / attach / detach: the desired state is saved first, then
  the diff of the NIs concerned runs all or nothing: on any error the ops done
  are undone and the previous desired state is restored; workloads that join
  through the API (CNI, taps) are runner.supervisor.workloads', over the same
  `change_attachments`;
- a light pass (every minute, after a task exit, when containerd is back): task
  states from one containerd list call, then the whole diff, errors per item;
- a heal (events from the kernel about our objects): the owners concerned are
  read back and their diff runs, within a fraction of a second;
- a forced pass (at start and every 10 minutes): everything is read back,
  orphans included, and the diff runs. At start this adopts running tasks.

All of it runs under one lock, so API calls are serialized.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from runner import nitask
from runner.configurators import appedge as edge_confs
from runner.configurators import configurators
from runner.configurators.files import stamp
from runner.configurators.nft import tampered
from runner.configurators.task import TaskConf
from runner.containerd import seccomp, tasks
from runner.containerd.client import Client
from runner.containerd.errors import ContainerdError
from runner.containerd.metrics import Usage
from runner.drivers import facts as live_facts
from runner.drivers import netns as ns
from runner.drivers import readcache
from runner.drivers.nlwatch import Drift, Ours, Watcher
from runner.errors import NirunnerError
from runner.model.manifest import Located, parse_many, validate_set
from runner.model.types import NetworkInstance, NIType, SupervisorConfig, TaskSeccomp
from runner.net import names
from runner.plan import site
from runner.plan.facts import Binding, Facts
from runner.plan.site import Plan
from runner.reconcile import kinds as k
from runner.reconcile.build import TaskPolicy, build
from runner.reconcile.build_edge import FollowMemo, follows
from runner.reconcile.diff import DELETE_PHASE, Diff, Op, diff
from runner.reconcile.engine import Engine, Run
from runner.reconcile.items import Action, Item
from runner.reconcile.owned import Items, external_ids
from runner.reconcile.report import DELETED, UNCHANGED, NIResult, results
from runner.reconcile.switch_kinds import ShimLink
from runner.supervisor import apps as apps_mod
from runner.supervisor import attach as attach_mod
from runner.supervisor import malloc, views
from runner.supervisor.edgewatch import EdgeWatch
from runner.supervisor.events import EventLog
from runner.supervisor.health import Health
from runner.supervisor.status import ni_status
from runner.supervisor.store import CNI, NETNS, Attachment, Desired, Store
from runner.supervisor.switches import Switches, switch_apps
from runner.supervisor.workloads import PlugMemo, Workloads, app_plugs, plan_inputs
from runner.testhooks import crash_point

log = logging.getLogger("nirunner.supervisor")
# the heap is trimmed once this many ops ran since the last trim (a trim walks the heap:
# 0.2-0.8 ms, a twentieth of an attach): after a burst, and after every few attaches
TRIM_AFTER = 10

RESYNC_EVERY = 60.0  # a light pass: task states, and the diff
FORCE_EVERY = 600.0  # a forced pass reads everything back: the safety net of healing
SETTLE = 0.1  # seconds of quiet after kernel events before healing
_CRASH_POINTS = {"netns": "netns", "veth": "links", "bridge": "links", "task": "task",
                 "rule": "rules"}


def task_policy(config: SupervisorConfig) -> TaskPolicy:
    """What every NI task gets from the config: image, seccomp mode and profile."""
    mode = config.task_seccomp
    if mode is not TaskSeccomp.OFF:
        seccomp.for_task(mode)  # SeccompError: another arch, a bad profile
    return TaskPolicy(config.image, str(mode), (
        "" if mode is TaskSeccomp.OFF else seccomp.fingerprint(mode).split(":")[-1]))


class ApplyError(NirunnerError):
    """An apply that failed while running; everything it did was undone."""


@dataclass(frozen=True)
class Document:
    source: str
    text: str


@dataclass(frozen=True)
class Report:
    """What an apply, delete, attach or detach did (or, dry run, would do)."""

    lines: tuple[str, ...]  # one per op, as a dry run shows them
    results: tuple[NIResult, ...]
    writes: int = 0  # configurator calls that changed something
    dry_run: bool = False


@dataclass
class _Drifts:
    owners: dict[str, list[str]] = field(default_factory=dict)  # owner -> what happened
    tainted: set[str] = field(default_factory=set)  # item ids known to differ
    since: float = 0.0  # the last event's time


class Supervisor:
    def __init__(self, config: SupervisorConfig, client: Client,
                 watcher: Watcher | None = None, confs: Mapping[str, Any] | None = None,
                 read_facts: Callable[[], Facts] | None = None) -> None:
        """`confs` and `read_facts` replace the configurators and the live facts in tests."""
        self.config = config
        self.client = client
        self.store = Store(config.state_dir)
        self.desired: Desired = self.store.load()  # StateCorrupt: refuse to start
        self.task_policy = task_policy(config)  # SeccompError now (another arch, a bad
        #                                         profile), not later
        self.confs = confs if confs is not None else configurators(
            client, self.store, config.secrets_dir, shim_group_size=config.shim_group_size)
        self.tasks: TaskConf = self.confs["task"]
        # leases and flow logs, followed live for the NIs whose netns exists
        self.edge: EdgeWatch | None = getattr(self.confs.get("edge"), "watch", None)
        self.read_facts_of: Callable[[SupervisorConfig], Facts] = (
            lambda c: live_facts.read(c, c.resolv_conf))  # also of a config to reload
        self._read_facts = read_facts or (lambda: self.read_facts_of(self.config))
        self.engine = Engine(self.confs, after_op=self._after_op)
        self.events = EventLog()
        self.watcher = watcher
        self.lock = threading.RLock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.health: dict[str, Health] = {}
        self.current = Items()  # what exists, as far as we know
        self.errors: dict[str, tuple[str, str]] = {}  # item id -> (owner, its last error)
        self.containerd_ok = True
        self.source: Any = None  # a FleetSource when the desired state comes from etcd
        self._facts: Facts | None = None
        self._plan_cache: tuple[tuple[int, int], Plan] | None = None
        # what each NI's plan and items were made of: a change of one NI plans one NI
        self._plan_memo: site.Memo = {}
        self._items_memo: dict[str, Any] = {}
        self._plugs_memo: PlugMemo = {}
        self._followed: Plan | None = None  # the plan the watchers were told of last
        self._follow_memo: FollowMemo = {}  # each NI's Follow, while its plan is the same
        self._version = 0  # bumped by every change of the desired state
        self._untrimmed = 0  # ops run since the heap was last trimmed
        self._uplinks_changed = threading.Event()
        self._resync = threading.Event()
        self._drifts = _Drifts()
        self._drifts_lock = threading.Lock()
        self._read_once = False  # nothing read back yet: the record is empty, not the kernel
        self._last_light = self._last_forced = time.monotonic()
        self.workloads = Workloads(self)  # CNI attachments and taps (the API's *Workload)
        self.switches = Switches(self)  # switch NIs: their apps, what they learn
        # observers (runner.metrics): a pass's kind and duration; every engine run
        self.on_pass: Callable[[str, float], None] = lambda kind, seconds: None
        self.on_run: Callable[[Run], None] = lambda run: None

    # -- inputs ----------------------------------------------------------------------------

    def config_changed(self) -> None:
        """`self.config` was replaced (a reload): facts and plan are made anew."""
        self._facts = None
        self._version += 1

    def _facts_now(self) -> Facts:
        if self._facts is None:
            self._facts = self.switches.with_learned(self._read_facts())
        return self._facts

    def facts_learned(self, learned: dict[str, tuple[Binding, ...]]) -> None:
        """Switch NIs learned other leases (runner.supervisor.switches): a fact changed."""
        if self._facts is not None:
            self._facts = replace(self._facts, learned=learned)
            self._plan_cache = None

    def facts(self) -> Facts:
        return self._facts_now()

    def _plan(self, nis: dict[str, NetworkInstance], slots: dict[str, int],
              attachments: Sequence[Attachment] | None = None) -> Plan:
        """`attachments` (default: the desired ones) add pinned leases and port maps."""
        atts = self.desired.attachments if attachments is None else attachments
        mine = [a for a in atts if a.ni in nis]
        return site.build(self.config, self._facts_now(), list(nis.values()), slots,
                          plan_inputs(mine), switch_apps(mine), self._plan_memo)

    def _plan_part(self, attachments: Sequence[Attachment]) -> list[Attachment]:
        """The attachments a plan is made of: CNI ones (pinned leases, port maps) and the
        apps of switch NIs; the plug of an app into a routed NI is an item only."""
        nis = self.desired.nis
        return [a for a in attachments if a.kind == CNI or (
            a.kind == NETNS and a.ni in nis and nis[a.ni].type is NIType.SWITCH)]

    def plan(self) -> Plan:
        """The plan of the desired state, rebuilt only when it or the uplinks changed."""
        key = self._plan_key()
        if self._plan_cache is None or self._plan_cache[0] != key:
            self._plan_cache = (key, self._plan(self.desired.nis, self.desired.slots))
        return self._plan_cache[1]

    def _plan_key(self) -> tuple[int, int]:
        """What the cached plan was made of: this desired state, these facts."""
        return self._version, id(self._facts_now())

    def _intended(self, plan: Plan, attachments: Sequence[Attachment],
                  only: Collection[str] | None = None) -> Items:
        """The items of a plan; facts: uplinks present, credential stamps, app netns.
        `only`: the NIs whose items may change (the others' are as last built)."""
        facts = self._facts_now()
        sources = [s for p in plan.nis.values() if p.vpn is not None
                   for s in ([p.vpn.psk_file] if p.vpn.psk_file else [])
                   + [c.source for c in p.vpn.copies]]
        mine = [a for a in attachments if a.ni in plan.nis or a.ni in plan.switches]
        app_netns = {a.netns: inode for a in mine if a.netns and (only is None or a.ni in only)
                     and (inode := ns.inode_of_path(a.netns)) is not None}
        return build(plan, self.store, self.task_policy,
                     {u.name: u.interface for u in self.config.uplinks},
                     [n for n, f in facts.uplinks.items() if f.exists],
                     app_plugs(mine, self._plugs_memo),
                     {s: stamp(s) for s in sources}, app_netns,
                     self.workloads.links_present(mine), self._items_memo, only)

    def intended(self) -> Items:
        return self._intended(self.plan(), self.desired.attachments)

    def _ensure_read(self) -> None:
        """Read everything back once before the first change: an empty record means
        "not read yet", not "nothing exists" (a supervisor restarted, a tool in-process)."""
        if not self._read_once:
            self._read_back(list(self.intended().values()), sweep=True)
            self._read_once = True

    def _save(self, desired: Desired) -> None:
        try:
            self.store.save(desired)
        except OSError as e:
            raise NirunnerError(f"save the desired state to {self.store.path}: "
                                f"{e.strerror or e}") from None
        self.desired = desired
        self._version += 1

    # -- running ops -----------------------------------------------------------------------

    def converge(self, scope: set[str], atomic: bool = True) -> Run:
        """Run the diff of `scope` (NI names; "" the device's items) against the intended
        state as it is now: all or nothing when `atomic`. Call it holding the lock."""
        intended = self.intended()
        return self._run(diff(self.current, intended, scope=scope), intended, atomic,
                         hold=False)

    def _run(self, d: Diff, intended: Items, atomic: bool, hold: bool = True) -> Run:
        owners = {op.item.owner for op in d.ops}
        self._release({op.item.ni for op in d.ops
                       if op.phase == DELETE_PHASE and isinstance(op.item, k.Netns)})
        if self.watcher is not None and owners:
            self.watcher.mute(owners)
        try:
            run = self.engine.run(d, self.current, atomic, self._hold if hold else None)
        finally:
            if self.watcher is not None and owners:
                self.watcher.unmute(owners)
        self.on_run(run)
        # the run's record (a copy, indexed by owner), with the externals (facts) of now
        current = run.current
        wanted = external_ids(intended)
        for i in [i for i in current.external_ids() if i not in wanted]:
            del current[i]
        for i in wanted:
            if current.get(i) is not intended[i]:
                current[i] = intended[i]
        self.current = current
        now = time.monotonic()
        for done in run.done:
            op = done.op
            if done.error and not done.inverse:
                self.errors[op.id] = (op.item.owner, done.error)
                self.events.emit("reconcile.error", op.item.owner,
                                 f"{op.line()}: {done.error}", logging.ERROR)
            elif done.ok:
                self.errors.pop(op.id, None)
            if op.item.KIND == "task" and op.phase != DELETE_PHASE and not done.skipped \
                    and not done.inverse and op.item.owner in self.desired.nis:
                h = self.health.setdefault(op.item.owner, Health())
                if done.error:
                    h.last_error = done.error
                    h.failed_start(now)
                else:
                    h.started(now)
                    h.last_error = ""
        self._follow(intended, netns_changed=any(x.op.item.KIND == "netns" for x in run.done))
        self._untrimmed += len(run.done)
        if self._untrimmed >= TRIM_AFTER:
            malloc.trim()  # what the ops' threads (libnftables) held
            self._untrimmed = 0
        return run

    def _hold(self, op: Op) -> str:
        if op.item.KIND != "task" or op.phase == DELETE_PHASE:
            return ""
        return self.held(op.item.owner)

    def held(self, name: str) -> str:
        """Why NI `name`'s task must not be started now: backoff, failed, containerd away."""
        if not self.containerd_ok:
            return "containerd unreachable"
        h = self.health.get(name)
        return h.held(time.monotonic()) if h else ""

    def _after_op(self, op: Op) -> None:
        point = _CRASH_POINTS.get(op.item.KIND)
        if point:
            crash_point(point, op.item.owner)

    def _release(self, nis: set[str]) -> None:
        """Close our sockets in netns about to be deleted: a socket keeps its netns (and
        the NI's veth in it) alive. Those re-made are watched again after the run."""
        if not nis:
            return
        if self.edge is not None:
            self.edge.release(nis)
        if self.watcher is not None:
            for ni in nis:
                self.watcher.unwatch(ni)

    def _follow(self, intended: Items, netns_changed: bool = True) -> None:
        """Tell the watchers which namespaces and objects are ours now. What they follow
        comes of the plan and the NIs' netns: with the same plan (the same object) and no
        netns made or gone, it is as told last time (an app plugged, say)."""
        plan = self.plan()
        if plan is self._followed and not netns_changed:
            return
        self._followed = plan if self.edge is not None and self.watcher is not None else None
        if self.edge is not None:
            live = {x.ni: x.inode for x in self.current.values() if isinstance(x, k.Netns)
                    and x.ni in self.desired.nis}
            self.edge.follow(follows(plan, self.store, live, self._follow_memo))
        if self.watcher is None:
            return
        shims = [x.name for x in intended.values() if isinstance(x, ShimLink)]
        self.watcher.ours = Ours(
            transit={**{x.name: x.ni for x in intended.values() if isinstance(x, k.Veth)},
                     **{name: "" for name in shims}},  # the device's links
            rules={**{x.rule.priority: x.ni for x in intended.values()
                      if isinstance(x, k.Rule)},
                   names.LOCAL_RULE_PRIORITY: ""},
            tables={names.uplink_table(i) for i in range(len(self.config.uplinks))}
            | ({names.MAIN_TABLE} if shims else set()),  # routes to switch NIs' apps
            uplinks={u.interface for u in self.config.uplinks},
        )
        self.switches.follow()
        wanted = {x.ni: x.name for x in self.current.values() if isinstance(x, k.Netns)
                  and x.ni in self.desired.nis}
        for owner in self.watcher.watched() - {"", *wanted}:
            self.watcher.unwatch(owner)
        for owner, netns in wanted.items():
            try:
                self.watcher.watch(owner, netns)
            except (OSError, NirunnerError) as e:  # its netns went meanwhile: a pass sees it
                log.debug("watch %s: %s", netns, e)

    def _emit(self, results_: Sequence[NIResult], kind: str = "") -> None:
        for r in results_:
            if r.action != UNCHANGED:
                self.events.emit(kind or f"ni.{r.action}", r.name, r.detail or r.action)

    # -- API operations --------------------------------------------------------------------------

    def apply(self, docs: Sequence[Document], dry_run: bool = False,
              verbose: bool = False) -> Report:
        located = parse_many((doc.source, doc.text) for doc in docs)  # every problem at once
        chosen = [x.ni.name for x in located]
        with self.lock:
            self._ensure_read()
            kept = [Located(ni) for n, ni in self.desired.nis.items() if n not in chosen]
            validate_set([*located, *kept], self.config)
            new_nis = {**self.desired.nis, **{x.ni.name: x.ni for x in located}}
            plan = self._plan(new_nis, self.desired.slots)  # PlanError: nothing changed
            site.refuse(plan, chosen)  # a switch NI this kernel cannot build
            intended = self._intended(plan, self.desired.attachments)
            d = diff(self.current, intended, scope={*chosen, ""})
            fresh = {n for n in chosen if n not in self.desired.nis}
            report = Report(tuple(d.lines(verbose)), tuple(results(d.ops, chosen, fresh)),
                            dry_run=dry_run)
            if dry_run:
                return report
            previous = self.desired
            self._save(Desired(new_nis, dict(plan.slots), list(previous.attachments)))
            for n in chosen:  # a new apply clears an earlier "failed"
                self.health.pop(n, None)
            run = self._run(d, intended, atomic=True, hold=False)
            if not run.ok:
                self._restore(previous)
                why = run.first_error()
                self.events.emit("apply.rolledback", "", f"apply failed, undone: {why}",
                                 logging.ERROR)
                raise ApplyError(f"apply failed and was undone, nothing changed: {why}")
            self._emit(report.results)
            return replace(report, writes=run.writes)

    def _restore(self, previous: Desired) -> None:
        try:
            self._save(previous)
        except NirunnerError as e:  # the kernel is as before; the file says otherwise
            self.desired = previous
            self._version += 1
            self.events.emit("state.error", "", f"{e}; kept in memory, saved on the next "
                                                "change", logging.ERROR)

    def delete(self, names_: Sequence[str]) -> Report:
        with self.lock:
            self._ensure_read()
            unknown = [n for n in names_ if n not in self.desired.nis]
            if unknown:
                raise NirunnerError(f"no such NI: {', '.join(unknown)}")
            gone = set(names_)
            nis = {n: ni for n, ni in self.desired.nis.items() if n not in gone}
            slots = {n: s for n, s in self.desired.slots.items() if n not in gone}
            atts = [a for a in self.desired.attachments if a.ni not in gone]
            self._save(Desired(nis, slots, atts))
            for n in gone:
                self.health.pop(n, None)
            intended = self.intended()
            d = diff(self.current, intended, scope={*gone, ""})
            self.tasks.signal_stop(op.old for op in d.ops
                                   if op.phase == DELETE_PHASE and isinstance(op.old, k.Task))
            run = self._run(d, intended, atomic=False, hold=False)
            done = results(d.ops, names_, deleted=gone)
            self._emit(done)
            if not run.ok:  # the next pass deletes what is left
                raise NirunnerError("; ".join(f"{x.op.line()}: {x.error}" for x in run.failed))
            return Report(tuple(d.lines()), tuple(done), run.writes)

    def attach(self, ni: str, netns: str, ifname: str, mac: str, hostname: str,
               app: str = "") -> Attachment:
        with self.lock:
            if ni not in self.desired.nis:
                raise NirunnerError(f"no such NI: {ni}")
            if app:  # a declared app: its MAC (its identity), its name as hostname
                mac, hostname = apps_mod.bind(self.desired.nis[ni], app, mac, hostname)
            a = attach_mod.attachment(ni, netns, ifname or "eth0", mac, hostname)
            same = [x for x in self.desired.attachments if (x.netns, x.ifname)
                    == (a.netns, a.ifname)]
            if any(x.kind != NETNS for x in same):
                raise attach_mod.AttachError(f"{a.netns} {a.ifname} was attached through CNI; "
                                             "its runtime detaches it")
            others = [x for x in self.desired.attachments if x not in same]
            # "": a switch NI's app has routes and a neighbour entry on the device
            self.change_attachments([*others, a], {ni, ""} | {x.ni for x in same})
            return a

    def detach(self, ni: str, netns: str, ifname: str) -> None:
        with self.lock:
            key = (ni, netns, ifname or "eth0")
            keep = [a for a in self.desired.attachments
                    if (a.ni, a.netns, a.ifname) != key or a.kind != NETNS]
            if len(keep) == len(self.desired.attachments):
                raise NirunnerError(f"{netns} {ifname or 'eth0'} is not attached to NI {ni}")
            self.change_attachments(keep, {ni, ""})

    def change_attachments(self, attachments: list[Attachment], scope: set[str],
                           atomic: bool = True) -> Run:
        """Save `attachments` as desired, then run the diff of `scope` (NI names, "" for
        the device): all or nothing (ApplyError; the previous desired state restored),
        or, not `atomic`, best effort (what fails is retried by the next pass)."""
        self._ensure_read()
        if self._plan_part(attachments) == self._plan_part(self.desired.attachments):
            plan = self.plan()  # an app plugged into a routed NI: the same plan
        else:
            plan = self._plan(self.desired.nis, self.desired.slots, attachments)  # PlanError
        intended = self._intended(plan, attachments, only=scope - {""})
        d = diff(self.current, intended, scope=scope)
        previous = self.desired
        self._save(Desired(previous.nis, previous.slots, attachments))
        # the plan of the state just saved: what follows the run (the watchers) reuses it
        self._plan_cache = (self._plan_key(), plan)
        run = self._run(d, intended, atomic=atomic, hold=False)
        if atomic and not run.ok:
            self._restore(previous)
            raise ApplyError(run.first_error())
        return run

    # -- passes ----------------------------------------------------------------------------

    def reconcile(self, force: bool = False) -> list[NIResult]:
        """A light pass (task states, then the diff) or a forced one (everything read back,
        orphans included). Errors are recorded per item and as events, never raised.
        The first pass of a supervisor is always forced: its record starts empty."""
        with self.lock:
            force = force or not self._read_once
            if self._uplinks_changed.is_set() or force:
                self._uplinks_changed.clear()
                self._facts = None
            plan = self.plan()
            if plan.slots != self.desired.slots:
                self._save(Desired(self.desired.nis, dict(plan.slots),
                                   self.desired.attachments))
            intended = self.intended()
            if force:
                self._read_back(list(intended.values()), sweep=True)
                self._read_once = True
            else:
                self._observe_tasks()
            run = self._run(diff(self.current, intended), intended, atomic=False)
            if force:
                self._last_forced = time.monotonic()
            self._last_light = time.monotonic()
            ran = [x.op for x in run.done if x.ok and not x.inverse]
            done = results(ran, sorted(self.desired.nis))
            self._report_pass(ran, done, "ni.healed" if force else "")
            self._kick_vpns(plan)
            return done

    def _report_pass(self, ran: Sequence[Op], done: Sequence[NIResult], kind: str) -> None:
        """Events of a pass, from the ops that ran."""
        shown = Diff(tuple(ran)).shown()
        for op in shown:
            if op.item.owner not in self.desired.nis and op.action is Action.DELETE \
                    and not op.implied:
                self.events.emit("orphan.removed", "", op.line())
        for r in done:
            ops = [op for op in shown if op.item.owner == r.name]
            starts = [op for op in ops if op.item.KIND == "task"]
            if starts and r.action != DELETED:
                h = self.health.get(r.name)
                self.events.emit("task.restarted" if h and h.restarts else "task.started",
                                 r.name, "; ".join(op.line() for op in starts),
                                 restarts=h.restarts if h else 0)
            rest = [op for op in ops if op.item.KIND != "task"]
            if rest:
                self.events.emit(kind or f"ni.{r.action}", r.name,
                                 "; ".join(op.line() for op in rest))

    def _read_back(self, items: Sequence[Item], sweep: bool = False) -> None:
        """Replace the record of `items` by what a read finds; with `sweep` the whole
        record (orphans included). What could not be read stays as it was."""
        with readcache.batch():  # one dump of the device's links and rules for all reads
            seen = self.engine.read(items, sweep=sweep)
        if "task" in seen.broken:
            self.containerd_lost(seen.broken["task"])
        else:
            self.containerd_ok = True
        read_ids = {x.id for x in items}
        base = {} if sweep else {i: x for i, x in self.current.items() if i not in read_ids}
        unknown = {i: self.current[i] for i in seen.failed if i in self.current}
        self.current = Items(base | unknown | seen.found)

    def _observe_tasks(self) -> None:
        """Task states from one list call (exits may have been missed)."""
        try:
            infos = self.tasks.observe()
        except ContainerdError as e:
            self.containerd_lost(str(e))
            return
        self.containerd_ok = True
        for i, x in list(self.current.items()):
            if isinstance(x, k.Task):
                info = infos.get(x.container_id)
                status = info.status if info else "missing"
                if (status == "running") != x.running or (info and info.pid != x.pid):
                    self.current[i] = replace(x, running=status == "running",
                                              pid=info.pid if info else 0, status=status)

    def containerd_lost(self, why: str) -> None:
        if self.containerd_ok:
            self.events.emit("containerd.lost", "", why, logging.WARNING)
        self.containerd_ok = False

    def _kick_vpns(self, plan: Plan) -> None:
        from runner.supervisor import vpn

        for name, p in plan.nis.items():
            task = self.current.get(f"task:{p.container_id}")
            if p.vpn is not None and isinstance(task, k.Task) and task.running:
                vpn.kick(name, p.vpn, self.store.state_dir(name))  # charon gave up: retry

    # -- healing ---------------------------------------------------------------------------

    def note_drift(self, drift: Drift) -> None:
        """From the watcher's thread: something of ours changed behind our back."""
        with self._drifts_lock:
            self._drifts.owners.setdefault(drift.owner, []).append(drift.what)
            if drift.item:
                self._drifts.tainted.add(drift.item)
            self._drifts.since = time.monotonic()
        self.wake.set()

    def heal(self) -> None:
        """Read back the owners that drifted and put right what differs."""
        with self._drifts_lock:
            drifts, self._drifts = self._drifts, _Drifts()
        if not drifts.owners:
            return
        with self.lock:
            owners = {o for o in drifts.owners if o == "" or o in self.desired.nis}
            intended = self.intended()
            mine = [x for x in intended.values() if x.owner in owners and not x.EXTERNAL]
            self._read_back(mine)
            for i in drifts.tainted:
                x = self.current.get(i)
                if isinstance(x, k.NftTable):
                    self.current[i] = tampered(x)
                elif isinstance(x, k.EdgeTable | k.AclTable):
                    self.current[i] = edge_confs.tampered(x)
            d = diff(self.current, intended, scope=owners)
            if not d:
                return
            run = self._run(d, intended, atomic=False)
            for owner in sorted(owners):
                ops = [op for op in d.shown() if op.item.owner == owner]
                if not ops:
                    continue
                why = "; ".join(dict.fromkeys(drifts.owners[owner]))
                fixed = [done.op.line() for done in run.done if done.ok and done.op in ops]
                self.events.emit("ni.healed" if owner else "device.healed", owner,
                                 f"{why}: restored {'; '.join(fixed) or 'nothing yet'}")

    # -- the main loop's schedule ----------------------------------------------------------

    def request_resync(self, reason: str, kind: str = "resync") -> None:
        if kind == "uplink.changed":
            self._uplinks_changed.set()
        self.events.emit(kind, "", reason)
        self._resync.set()
        self.wake.set()

    def next_wake(self) -> float:
        """Seconds until something is due."""
        now = time.monotonic()
        due = [self._last_light + RESYNC_EVERY]
        due += [h.next_try for h in self.health.values() if h.next_try > 0]
        if self._drifts.owners:
            due.append(self._drifts.since + SETTLE)
        return max(0.0, min(due) - now)

    def work(self) -> None:
        """Whatever is due: a heal, restarts, a light or a forced pass."""
        now = time.monotonic()
        self.switches.work()  # leases learned: routed at once
        if self._drifts.owners and now >= self._drifts.since + SETTLE:
            self.heal()
            self.on_pass("heal", time.monotonic() - now)
        restarts = any(0 < h.next_try <= now for h in self.health.values())
        if self._resync.is_set() or restarts or now >= self._last_light + RESYNC_EVERY:
            self._resync.clear()
            force = now >= self._last_forced + FORCE_EVERY
            t0 = time.monotonic()
            self.reconcile(force=force)
            self.on_pass("forced" if force else "light", time.monotonic() - t0)

    # -- task exits ------------------------------------------------------------------------

    def on_task_exit(self, ev: tasks.TaskExit) -> None:
        if ev.exec_id or not ev.container_id.startswith(names.CONTAINER_PREFIX):
            return
        name = ev.container_id.removeprefix(names.CONTAINER_PREFIX)
        self.tasks.groups.exited(ev.container_id)
        with self.lock:
            task = self.current.get(f"task:{ev.container_id}")
            if name not in self.desired.nis or not isinstance(task, k.Task) \
                    or task.pid != ev.pid:
                return  # not the task we know: one we stopped ourselves
            self.current[task.id] = replace(task, running=False, status="stopped")
            h = self.health.setdefault(name, Health())
            delay = h.exited(ev.exit_status, time.monotonic())
            if delay is None:
                self.events.emit("ni.failed", name, h.failed_reason, logging.ERROR)
                return
            self.events.emit("task.exited", name, f"restart {h.restarts} in {delay:.1f}s",
                             logging.WARNING, status=ev.exit_status, pid=ev.pid)
        self.wake.set()

    # -- status ----------------------------------------------------------------------------

    def status(self, names_: Sequence[str] = (), detail: bool = False) -> list[dict[str, Any]]:
        with self.lock:
            unknown = [n for n in names_ if n not in self.desired.nis]
            if unknown:
                raise NirunnerError(f"no such NI: {', '.join(unknown)}")
            usage: dict[str, Usage] = {}
            infos: dict[str, tasks.TaskInfo] | None = None
            try:
                infos = self.tasks.observe()
                self.containerd_ok = True
                usage = nitask.usage(self.client, [cid for cid, i in infos.items()
                                                   if i.status == "running"])
            except ContainerdError as e:
                self.containerd_lost(str(e))
            plan = self.plan()
            chosen = list(names_) or sorted(self.desired.nis)
            gathered = [views.gather(self, plan, n, infos, detail, usage) for n in chosen]
        return [ni_status(v, detail) for v in gathered]

    def item_states(self, name: str) -> list[dict[str, str]]:
        """Every intended item of an NI: applied, pending (why) or failed (its error)."""
        out = []
        intended = self.intended()
        d = diff(self.current, intended, scope={name})
        waiting = {x.id: why for x, why in d.pending}
        todo = {op.id: op.line() for op in d.shown()}
        for x in sorted(intended.values(), key=Item.sort_key):
            if x.owner != name or x.EXTERNAL:
                continue
            state = ("failed" if x.id in self.errors else "pending" if x.id in waiting
                     or x.id in todo else "applied")
            entry = {"id": x.id, "object": x.describe(), "state": state}
            if x.id in self.errors:
                entry["error"] = self.errors[x.id][1]
            if x.id in waiting:
                entry["waiting"] = waiting[x.id]
            out.append(entry)
        return out

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

