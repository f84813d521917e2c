"""The engine: runs a diff's ops through per-kind configurators and keeps the op log.

A configurator does the effects of one item kind:

    create(item) -> item        make it; return it as it now is (observed fields filled)
    modify(old, new) -> item    change it in place
    delete(item)                remove it (a missing object is not an error)
    read(item) -> item | None   the object `item` names as it is now, or None

An op starts as soon as the ops before it in the diff that it is ordered against
(its items' dependencies, both halves of a re-create) are done, so one NI's task
starts while the next NIs' links are still being made, and one NI's netns goes
while other tasks still stop. Ops of a configurator marked `parallel` (tasks,
namespaces: mostly waiting) run on a pool (a configurator's `starts` bounds its
creates at once); the others one at a time. Among ready ops, those an op just done
released go first (an NI begun is finished first; the device's own items before
all), then the diff's order.
Any exception of a configurator stops its item:

- atomic (an apply): nothing more starts, running ops finish, and the inverse
  of every op that was done runs in reverse order (create <-> delete,
  modify(old, new) <-> modify(new, old)), so the objects are as before;
- otherwise (a pass): the ops of items ordered after the failed one are
  skipped, the others run; the next pass tries again.

The log records each op with its outcome and time; results, events and the
API's report are made from it alone.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, Protocol

from runner.reconcile.diff import DELETE_PHASE, Diff, Op
from runner.reconcile.items import Action, Item
from runner.reconcile.owned import Items

log = logging.getLogger("nirunner.engine")

WORKERS = 16  # parallel ops at once: mostly waiting (a task's stop, runc); a configurator
#               that costs CPU bounds itself (TaskConf starts 4 tasks at a time)


class Configurator(Protocol):
    parallel: bool

    def create(self, item: Any) -> Any: ...

    def modify(self, old: Any, new: Any) -> Any: ...

    def delete(self, item: Any) -> None: ...

    def read(self, item: Any) -> Any: ...


class ReadError(Exception):
    pass


@dataclass
class Done:
    """One op as it ran: `error` is empty when it worked; `skipped` when it did not run."""

    op: Op
    error: str = ""
    skipped: str = ""  # why it did not run (a failed dependency, held back, ...)
    seconds: float = 0.0
    result: Item | None = None  # the item as it now is (creates and modifies)
    inverse: bool = False  # an op of a rollback

    @property
    def ok(self) -> bool:
        return not self.error and not self.skipped


@dataclass
class Observed:
    """What a read found: the objects that exist, and the ids it could not read."""

    found: dict[str, Item] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # id -> why (unknown, not absent)
    broken: dict[str, str] = field(default_factory=dict)  # kind -> why none could be read


@dataclass
class Run:
    """The op log of one engine run, and the record of what now exists."""

    done: list[Done] = field(default_factory=list)
    current: Items = field(default_factory=Items)
    rolled_back: bool = False
    writes: int = 0  # configurator create/modify/delete calls, rollback included

    @property
    def failed(self) -> list[Done]:
        return [d for d in self.done if d.error and not d.inverse]

    @property
    def ok(self) -> bool:
        return not self.failed

    def first_error(self) -> str:
        d = next(iter(self.failed), None)
        return "" if d is None else f"{d.op.line()}: {d.error}"


Hold = Callable[[Op], str]  # "" to run the op, else why it is held back


def describe_error(e: BaseException) -> str:
    return str(e) or type(e).__name__


class Engine:
    def __init__(self, configurators: Mapping[str, Configurator], workers: int = WORKERS,
                 after_op: Callable[[Op], None] | None = None) -> None:
        self.configurators = configurators
        self.workers = workers
        self.after_op = after_op  # a test hook (crash points)

    def conf(self, item: Item) -> Configurator:
        try:
            return self.configurators[item.KIND]
        except KeyError:
            raise ReadError(f"no configurator for {item.KIND} items") from None

    # -- reading -----------------------------------------------------------------------

    def read(self, items: Iterable[Item], sweep: bool = False) -> Observed:
        """The live value of each item; with `sweep`, also the objects of ours that the
        configurators find and that are not among `items` (orphans, strays)."""
        items = list(items)
        confs = {x.KIND: self.configurators.get(x.KIND) for x in items if not x.EXTERNAL}
        if sweep:
            confs.update(self.configurators)
        seen = Observed()
        for kind, conf in confs.items():
            prepare = getattr(conf, "prepare", None)
            if prepare is not None:
                try:
                    prepare()
                except Exception as e:  # e.g. containerd away: its items are unknown
                    seen.broken[kind] = describe_error(e)
        try:
            for x in items:
                if x.EXTERNAL:
                    seen.found[x.id] = x
                elif x.KIND in seen.broken:
                    seen.failed[x.id] = seen.broken[x.KIND]
                else:
                    try:
                        live = self.conf(x).read(x)
                    except Exception as e:  # unknown, not absent: keep what we knew
                        seen.failed[x.id] = describe_error(e)
                        log.warning("read %s: %s", x.describe(), seen.failed[x.id])
                        continue
                    if live is not None:
                        seen.found[x.id] = live
            if sweep:
                for kind, conf in self.configurators.items():
                    finder = getattr(conf, "sweep", None)
                    if finder is None or kind in seen.broken:
                        continue
                    try:
                        for x in finder():
                            if x.id not in seen.found and x.id not in seen.failed:
                                seen.found[x.id] = x
                    except Exception as e:
                        seen.broken[kind] = describe_error(e)
                        log.warning("look for %s objects: %s", kind, seen.broken[kind])
        finally:
            for conf in confs.values():
                done = getattr(conf, "done_reading", None)
                if done is not None:
                    done()
        return seen

    # -- running ---------------------------------------------------------------------------

    def run(self, d: Diff, current: Mapping[str, Item], atomic: bool,
            hold: Hold | None = None) -> Run:
        run = Run(current=Items(current))  # a copy, with its owners' index
        related = _relations(d)
        ops = d.ops
        after = _successors(ops, related)
        waiting_on = [0] * len(ops)
        for succ in after:
            for j in succ:
                waiting_on[j] += 1
        # ready ops, one heap for those run here and one per kind for the pool's: the
        # device's own first (a table every NI's task is ordered after), then an op
        # released by one that finished (an NI begun is finished first: its task
        # starts, its netns goes, while other NIs wait), then the diff's order
        serial: list[tuple[int, int]] = []
        pooled: dict[str, list[tuple[int, int]]] = {}
        busy: dict[str, int] = {}
        inflight: dict[futures.Future[Done], int] = {}
        failed: set[str] = set()
        stop = False

        def make_ready(i: int, released: bool) -> None:
            op = ops[i]
            rank = (0 if not op.item.owner or _unblocks_kernel(op) else 1 if released
                    else 2)
            if self.conf(op.item).parallel and not op.implied:
                heapq.heappush(pooled.setdefault(op.item.KIND, []), (rank, i))
            else:
                heapq.heappush(serial, (rank, i))

        def finished(i: int, done: Done) -> None:
            nonlocal stop
            self._settle(done, run, failed)
            stop = stop or bool(done.error and atomic)
            for j in after[i]:
                waiting_on[j] -= 1
                if waiting_on[j] == 0:
                    make_ready(j, True)

        def held(i: int) -> bool:
            op = ops[i]
            why = self._blocked(op, related, failed) or (hold(op) if hold else "")
            if why:
                failed.add(op.id)
                finished(i, Done(op, skipped=why))
            return bool(why)

        def harvest(block: bool) -> None:
            settled = [f for f in inflight if f.done()]
            if not settled and block:
                settled = list(futures.wait(inflight, return_when=futures.FIRST_COMPLETED)[0])
            for fut in sorted(settled, key=inflight.__getitem__):
                i = inflight.pop(fut)
                busy[ops[i].item.KIND] -= 1
                finished(i, fut.result())

        for i, n in enumerate(waiting_on):
            if n == 0:
                make_ready(i, False)
        with futures.ThreadPoolExecutor(max_workers=self.workers) as pool:
            while True:
                while not stop and len(inflight) < self.workers:
                    kinds = [k for k, h in pooled.items()
                             if h and busy.get(k, 0) < self._width(k, ops[h[0][1]])]
                    if not kinds:
                        break
                    _, i = heapq.heappop(pooled[min(kinds, key=lambda k: pooled[k][0])])
                    if not held(i):
                        inflight[pool.submit(self._do, ops[i])] = i
                        busy[ops[i].item.KIND] = busy.get(ops[i].item.KIND, 0) + 1
                if serial and not stop:
                    _, i = heapq.heappop(serial)
                    if not held(i):
                        finished(i, self._do(ops[i]))
                    harvest(block=False)
                elif inflight:
                    harvest(block=True)
                else:
                    break
        self._await_implied(run)
        run.writes += sum(1 for x in run.done if not x.skipped and not x.op.implied)
        if atomic and failed and any(x.error for x in run.done):
            self._rollback(run)
        return run

    def _width(self, kind: str, op: Op) -> int:
        """How many ops of a kind run at once: a configurator's `starts` bounds its creates
        and modifies (runc create costs CPU), else the pool's width."""
        if op.phase == DELETE_PHASE:
            return self.workers
        return int(getattr(self.configurators[kind], "starts", self.workers))

    def _await_implied(self, run: Run) -> None:
        """An implied delete happens when the kernel frees the netns, a moment after: a
        configurator that can tell (`await_gone(items)`, which removes what is left when
        the wait ends) makes the run end only when those objects are gone."""
        by_kind: dict[str, list[Done]] = {}
        for d in run.done:
            if d.op.implied and d.op.action is Action.DELETE and d.ok:
                by_kind.setdefault(d.op.item.KIND, []).append(d)
        for kind, dones in by_kind.items():
            wait = getattr(self.configurators[kind], "await_gone", None)
            if wait is None:
                continue
            try:
                wait([d.op.old for d in dones])
            except Exception as e:
                for d in dones:
                    d.error = describe_error(e)
                log.warning("%s objects that went with their netns: %s", kind, dones[0].error)

    def _blocked(self, op: Op, related: Mapping[str, set[str]], failed: set[str]) -> str:
        if op.id in failed:  # the delete half of its re-create failed
            return "its delete failed"
        bad = related.get(op.id, set()) & failed
        return f"{sorted(bad)[0]} failed" if bad else ""

    def _settle(self, done: Done, run: Run, failed: set[str]) -> None:
        run.done.append(done)
        op = done.op
        if done.error:
            failed.add(op.id)
            return
        if op.phase == DELETE_PHASE:
            run.current.pop(op.id, None)
        elif done.result is not None:
            run.current[op.id] = done.result
        if self.after_op is not None:
            self.after_op(op)

    def _do(self, op: Op) -> Done:
        t = time.monotonic()
        done = Done(op)
        try:
            if op.implied:
                pass
            elif op.phase == DELETE_PHASE:
                assert op.old is not None
                self.conf(op.old).delete(op.old)
            elif op.action is Action.MODIFY:
                done.result = self.conf(op.item).modify(op.old, op.new) or op.new
            else:
                done.result = self.conf(op.item).create(op.new) or op.new
        except Exception as e:  # any error: recorded on the item, never raised further
            done.error = describe_error(e)
            log.debug("%s failed", op.line(), exc_info=True)
        done.seconds = time.monotonic() - t
        return done

    # -- rollback --------------------------------------------------------------------------

    def _rollback(self, run: Run) -> None:
        """Undo every op that was done, newest first (best effort, each error logged)."""
        for d in reversed([x for x in run.done if x.ok]):
            op = d.op
            t = time.monotonic()
            back = Done(op, inverse=True)
            try:
                if op.phase == DELETE_PHASE:
                    assert op.old is not None
                    run.current[op.id] = self.conf(op.old).create(op.old) or op.old
                elif op.action is Action.MODIFY:
                    assert op.old is not None
                    run.current[op.id] = self.conf(op.item).modify(op.new, op.old) or op.old
                else:
                    assert op.new is not None
                    self.conf(op.new).delete(op.new)
                    run.current.pop(op.id, None)
            except Exception as e:
                back.error = describe_error(e)
                log.error("rollback of %s: %s", op.line(), back.error)
            back.seconds = time.monotonic() - t
            run.done.append(back)
            run.writes += 1
        run.rolled_back = True


def _successors(ops: Sequence[Op], related: Mapping[str, set[str]]) -> list[list[int]]:
    """For each op (by index), the later ops that must wait for it: those of the items
    it is ordered against, and the other half of its own re-create."""
    at: dict[str, list[int]] = {}
    for i, op in enumerate(ops):
        at.setdefault(op.id, []).append(i)
    out: list[list[int]] = [[] for _ in ops]
    for i, op in enumerate(ops):
        later = {j for other in (op.id, *related.get(op.id, ())) for j in at.get(other, ())
                 if j > i and not _unordered(op, ops[j])}
        out[i] = sorted(later)
    return out


def _unblocks_kernel(op: Op) -> bool:
    """A netns's delete (its name unmounted) goes first: cheap, and the sooner the
    kernel may free the netns, the sooner its teardown is done (see `_unordered`)."""
    return op.phase == DELETE_PHASE and op.item.KIND == "netns"


def _unordered(first: Op, then: Op) -> bool:
    """A task's delete need not come before its netns's, nor before what goes with the
    netns (implied, not run). The netns's name can go first: the kernel frees the netns
    when the task's last process exits, and starts its teardown then (~17 ms each with
    a bridge, mostly slept, one netns after another), while containerd still deletes
    the task, its container and snapshot (most of the ~250 ms a task's delete takes
    when many go at once)."""
    return (first.phase == DELETE_PHASE and then.phase == DELETE_PHASE
            and first.item.KIND == "task" and (then.implied or then.item.KIND == "netns"))


def _relations(d: Diff) -> dict[str, set[str]]:
    """For each op's item, the items of other ops it is ordered against (both ways)."""
    ids = {op.id for op in d.ops}
    out: dict[str, set[str]] = {i: set() for i in ids}
    for op in d.ops:
        for x in (op.old, op.new):
            if x is None:
                continue
            for dep in (*x.deps(), *x.after()):
                if dep in ids and dep != op.id:
                    out[op.id].add(dep)
                    out[dep].add(op.id)
    return out
