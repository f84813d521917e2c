"""Per-NI results from ops (pure): the one vocabulary of results, events and reports.

Items are created, modified, deleted or re-created; an NI is then

    created    it did not exist before
    recreated  its netns or its task was made anew (detail: why)
    updated    anything else of it changed (detail: the topics, e.g. "port maps")
    unchanged  nothing of it changed
    deleted    it is gone
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from runner.reconcile.diff import DELETE_PHASE, Op
from runner.reconcile.items import Action

CREATED, UPDATED, RECREATED, UNCHANGED, DELETED = (
    "created", "updated", "recreated", "unchanged", "deleted")

_REBUILT_BY = ("netns", "task")  # a re-create of these is a re-created NI


@dataclass(frozen=True)
class NIResult:
    name: str
    action: str  # created | updated | recreated | unchanged | deleted
    detail: str = ""

    def line(self) -> str:
        return f"{self.name}: {self.action}" + (f" ({self.detail})" if self.detail else "")


def topics(ops: Iterable[Op], ni: str) -> list[str]:
    """What changed for NI `ni`, in words: the topics of its ops' changes, in order."""
    out: dict[str, None] = {}
    for op in ops:
        if op.phase == DELETE_PHASE and op.action is Action.RECREATE:
            continue
        if op.item.owner == ni:
            changes = op.changes()
            if changes:
                out.update((c.topic, None) for c in changes if c.ni in ("", ni))
            elif op.action is not Action.RECREATE:
                out[_noun(op)] = None
        else:  # the device's items say which NI a change concerns
            out.update((c.topic, None) for c in op.changes() if c.ni == ni)
    return list(out)


def _noun(op: Op) -> str:
    """A topic for an op without field changes: "+ plug ..." -> "apps"."""
    kind = op.item.KIND
    return {"plug": "apps", "tap": "apps", "appaddr": "apps", "edgeport": "apps",
            "task": "task", "routes": "routes", "rule": "routes", "nft": "firewall",
            "edge": "firewall", "acl": "ACLs", "files": "config files"}.get(kind, kind)


def result(ops: Sequence[Op], ni: str, new: bool = False, deleted: bool = False) -> NIResult:
    return _result(_concerning(ops).get(ni, []), ni, new, deleted)


def _concerning(ops: Iterable[Op]) -> dict[str, list[Op]]:
    """The ops that concern each NI, in order: its own and the device's that name it.
    One pass, so a report on many NIs stays linear in the ops."""
    out: dict[str, list[Op]] = {}
    for op in ops:
        nis = {op.item.owner} | {c.ni for c in op.changes() if c.ni}
        for ni in nis:
            out.setdefault(ni, []).append(op)
    return out


def _result(mine: Sequence[Op], ni: str, new: bool, deleted: bool) -> NIResult:
    if deleted:
        return NIResult(ni, DELETED)
    if new:
        return NIResult(ni, CREATED)
    rebuilt = [op for op in mine if op.action is Action.RECREATE and op.phase != DELETE_PHASE
               and op.item.KIND in _REBUILT_BY and op.item.owner == ni]
    if rebuilt:
        why = rebuilt[0].reason or "; ".join(c.text for c in rebuilt[0].changes())
        return NIResult(ni, RECREATED, why)
    if mine:
        return NIResult(ni, UPDATED, ", ".join(topics(mine, ni)))
    return NIResult(ni, UNCHANGED)


def results(ops: Sequence[Op], names: Iterable[str], new: Collection[str] = (),
            deleted: Collection[str] = ()) -> list[NIResult]:
    by_ni = _concerning(ops)
    return [_result(by_ni.get(n, []), n, n in new, n in deleted) for n in names]
