"""Items' owners index (runner.reconcile.owned): after any sequence of changes it says
what a scan of the items says, and a scoped diff read from it equals one from a scan."""

from __future__ import annotations

import copy
import pickle
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from runner.reconcile.diff import diff
from runner.reconcile.items import Item
from runner.reconcile.owned import Items, external_ids, owned
from tests.unit.reconcile.test_reconcile import items

POOL = list(items().values())  # real items of every sample NI, the device's and facts
OWNERS = sorted({x.owner for x in POOL})


def scanned(d: dict[str, Item], scope: set[str]) -> dict[str, Item]:
    return {i: x for i, x in d.items() if x.owner in scope and not x.EXTERNAL}


def agrees(x: Items, plain: dict[str, Item]) -> None:
    assert dict(x) == plain
    for o in OWNERS:
        assert x.owned({o}) == scanned(plain, {o})
    assert x.owned(set(OWNERS)) == scanned(plain, set(OWNERS))
    assert x.external_ids() == {i for i, v in plain.items() if v.EXTERNAL}
    assert all(ids for ids in x._ids.values())  # no empty set left behind


def test_a_sample_has_several_owners_and_facts() -> None:
    assert len(OWNERS) >= 4 and "" in OWNERS
    assert any(x.EXTERNAL for x in POOL)


_pick = st.integers(0, len(POOL) - 1)
_ops = st.lists(st.one_of(
    st.tuples(st.just("set"), _pick, _pick),  # id of one item, value another: an owner moves
    st.tuples(st.just("del"), _pick),
    st.tuples(st.just("pop"), _pick),
    st.tuples(st.just("update"), st.lists(st.tuples(_pick, _pick), max_size=8)),
    st.tuples(st.just("ior"), st.lists(_pick, max_size=8)),
    st.tuples(st.just("setdefault"), _pick),
    st.tuples(st.just("popitem")),
    st.tuples(st.just("clear")),
    st.tuples(st.just("copy")),
), max_size=40)


def _apply(x: Items, plain: dict[str, Item], op: tuple[Any, ...]) -> Items:
    kind = op[0]
    if kind == "set":
        i, v = POOL[op[1]].id, POOL[op[2]]
        x[i] = v
        plain[i] = v
    elif kind in ("del", "pop"):
        i = POOL[op[1]].id
        if i in plain:
            if kind == "del":
                del x[i]
                del plain[i]
            else:
                assert x.pop(i) is plain.pop(i)
        else:
            assert x.pop(i, None) is None
    elif kind == "update":
        new = {POOL[a].id: POOL[b] for a, b in op[1]}
        x.update(new)
        plain.update(new)
    elif kind == "ior":
        new = {POOL[a].id: POOL[a] for a in op[1]}
        x |= new
        plain |= new
    elif kind == "setdefault":
        v = POOL[op[1]]
        assert x.setdefault(v.id, v) is plain.setdefault(v.id, v)
    elif kind == "popitem":
        if plain:
            i, v = x.popitem()
            assert plain.pop(i) is v
    elif kind == "clear":
        x.clear()
        plain.clear()
    elif kind == "copy":  # go on with a copy; the original must not change with it
        frozen = dict(plain)
        original = x
        x = x.copy()
        x[POOL[0].id] = POOL[-1]
        agrees(original, frozen)
        plain[POOL[0].id] = POOL[-1]
    return x


@settings(max_examples=300, deadline=None)
@given(start=st.lists(_pick, max_size=30), ops=_ops)
def test_the_index_always_says_what_a_scan_says(start: list[int], ops: list[Any]) -> None:
    plain = {POOL[a].id: POOL[a] for a in start}
    x = Items(plain)
    agrees(x, plain)
    for op in ops:
        x = _apply(x, plain, op)
        agrees(x, plain)


def test_copies_pickles_and_plain_dicts() -> None:
    x = Items({v.id: v for v in POOL})
    for y in (Items(x), copy.copy(x), copy.deepcopy(x), pickle.loads(pickle.dumps(x))):
        assert isinstance(y, Items)
        agrees(y, dict(x))
    # the helpers read a plain dict by scanning it, the same answer
    assert owned(dict(x), {"alpha", ""}) == x.owned({"alpha", ""})
    assert set(external_ids(dict(x))) == x.external_ids()


@given(st.sets(st.sampled_from(OWNERS), min_size=1), st.lists(_pick, max_size=20),
       st.lists(_pick, max_size=20))
@settings(max_examples=100, deadline=None)
def test_a_scoped_diff_from_the_index_equals_one_from_a_scan(
        scope: set[str], dropped: list[int], changed: list[int]) -> None:
    """current: the intended items, some missing, some with another NI's value (an owner
    moved, a field differs); the diff of Items and the diff of plain dicts agree."""
    intended = items()
    current = dict(intended)
    for a in dropped:
        current.pop(POOL[a].id, None)
    for a in changed:
        current[POOL[a].id] = POOL[(a + 1) % len(POOL)]
    fast = diff(Items(current), intended, scope=scope)
    slow = diff(current, dict(intended), scope=scope)
    assert fast == slow
