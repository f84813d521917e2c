"""diff(current, intended) -> ops: the one place that decides what to do (pure).

The same function serves apply, dry run, the periodic pass and healing:

- an intended item that is not current is created; one that differs is modified
  in place, or re-created when a field in its RECREATE_ON differs;
- a current item that is not intended is deleted;
- an item that lives in something created or re-created now (a bridge in a new
  netns) is re-created with it, because it went with the old one;
- an intended item that depends on something absent (an uplink interface that
  is not there) waits: it is `pending`, and current items that lived on that
  absent external item (and are still intended) are taken as gone with it;
- deletes run first, in reverse dependency order, then creates and modifies in
  dependency order. A re-create is a delete in the first phase and a create in
  the second. A delete whose netns goes in the same diff is `implied`: it
  happens by itself, and is listed but not run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from runner.reconcile.items import SIGN, UNCHANGED_SIGN, Action, Change, Item, needs_recreate
from runner.reconcile.owned import external_ids, owned

DELETE_PHASE = "delete"
APPLY_PHASE = "apply"


class DiffError(Exception):
    """The items themselves are inconsistent (a bug, not bad input)."""


@dataclass(frozen=True)
class Op:
    action: Action
    old: Item | None
    new: Item | None
    phase: str = APPLY_PHASE
    implied: bool = False  # a delete that happens with its netns
    reason: str = ""  # why a re-create that the item's own fields do not explain

    @property
    def item(self) -> Item:
        item = self.new if self.new is not None else self.old
        assert item is not None
        return item

    @property
    def id(self) -> str:
        return self.item.id

    def changes(self) -> list[Change]:
        if self.old is None or self.new is None or type(self.old) is not type(self.new):
            return []
        return self.new.changes(self.old)

    def line(self) -> str:
        """The op as a dry run shows it."""
        sign = SIGN[self.action]
        what = self.item.describe()
        if self.action is Action.MODIFY:
            details = "; ".join(c.text for c in self.changes())
            return f"{sign} {what}" + (f": {details}" if details else "")
        if self.action is Action.RECREATE:
            why = self.reason or "; ".join(c.text for c in self.changes()) or "changed"
            return f"{sign} {what} (recreate: {why})"
        if self.action is Action.DELETE and self.implied:
            return f"{sign} {what} (with its netns)"
        return f"{sign} {what}"


@dataclass(frozen=True)
class Diff:
    ops: tuple[Op, ...]  # in the order to run them
    unchanged: tuple[Item, ...] = ()
    pending: tuple[tuple[Item, str], ...] = ()  # intended, waiting for: reason

    def __bool__(self) -> bool:
        return bool(self.ops)

    def shown(self) -> list[Op]:
        """The ops a person reads: a re-create once (its create), not its delete half."""
        return [op for op in self.ops
                if not (op.action is Action.RECREATE and op.phase == DELETE_PHASE)]

    def lines(self, verbose: bool = False) -> list[str]:
        out = [op.line() for op in self.shown()]
        out += [f"  {item.describe()}: waiting for {why}" for item, why in self.pending]
        if verbose:
            out += [f"{UNCHANGED_SIGN} {x.describe()}" for x in self.unchanged]
        return out


def check_ranks(items: Mapping[str, Item]) -> None:
    """Every dependency points at a lower rank, so rank order is dependency order."""
    for x in items.values():
        for d in (*x.deps(), *x.after()):
            dep = items.get(d)
            if dep is not None and dep.RANK >= x.RANK:
                raise DiffError(f"{x.id} depends on {d} of the same or a higher rank")


def diff(current: Mapping[str, Item], intended: Mapping[str, Item],
         scope: Collection[str] | None = None) -> Diff:
    """The ops that turn `current` into `intended`.

    `scope`: only items owned by these (NI names; "" is the device's items).
    External items are taken from `intended` (they are facts) and never changed.
    """
    if scope is None:
        want = {i: x for i, x in intended.items() if not x.EXTERNAL}
        have = {i: x for i, x in current.items() if not x.EXTERNAL}
    else:  # an attach's scope read from the owners' index (runner.reconcile.owned)
        want = owned(intended, scope)
        have = owned(current, scope)
    gone_externals = {i for i in external_ids(current) if i not in intended}
    for i, x in list(have.items()):  # still wanted, but they went with what they lived on
        if i in want and any(d in gone_externals for d in x.deps()):
            del have[i]

    ordered = sorted(want.values(), key=Item.sort_key)
    blocked: dict[str, str] = {}
    for x in ordered:
        for d in x.deps():
            if d in blocked:
                blocked[x.id] = blocked[d]
            elif d not in intended:
                blocked[x.id] = d.replace(":", " ", 1)

    actions: dict[str, tuple[Action, str]] = {}
    for x in ordered:
        if x.id in blocked:
            continue
        old = have.get(x.id)
        if old is None:
            actions[x.id] = (Action.CREATE, "")
        elif old != x:
            actions[x.id] = ((Action.RECREATE if needs_recreate(old, x) else Action.MODIFY), "")
        for d in x.deps():  # deps come first in rank order: their action is final
            dep = actions.get(d)
            if (dep and dep[0] in (Action.CREATE, Action.RECREATE) and old is not None
                    and actions.get(x.id, (None,))[0] is not Action.RECREATE):
                actions[x.id] = (Action.RECREATE, f"{want[d].describe()} is new")
    for i in have:
        if i not in want and i not in blocked:
            actions[i] = (Action.DELETE, "")

    gone_with = {i for i, (a, _) in actions.items() if a is not Action.MODIFY}
    deletes: list[Op] = []
    applies: list[Op] = []
    for i, (action, reason) in actions.items():
        if action in (Action.DELETE, Action.RECREATE):
            old = have[i]
            implied = old.inside is not None and old.inside in gone_with
            deletes.append(Op(action, old, want.get(i), DELETE_PHASE, implied, reason))
        if action is not Action.DELETE:
            applies.append(Op(action, have.get(i), want[i], APPLY_PHASE, False, reason))
    deletes.sort(key=lambda op: op.item.sort_key(), reverse=True)
    applies.sort(key=lambda op: op.item.sort_key())
    unchanged = tuple(x for x in ordered if x.id not in actions and x.id not in blocked)
    pending = tuple((want[i], why) for i, why in blocked.items() if i not in have)
    return Diff((*deletes, *applies), unchanged, pending)


def dependents(items: Mapping[str, Item]) -> dict[str, set[str]]:
    """id -> the ids that depend on it (hard or ordering), for waiting and skipping."""
    out: dict[str, set[str]] = defaultdict(set)
    for x in items.values():
        for d in (*x.deps(), *x.after()):
            out[d].add(x.id)
    return out
