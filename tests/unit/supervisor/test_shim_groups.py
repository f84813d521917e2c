"""Shim groups: filled in order; a group's first start alone, the next ones side by side."""

from __future__ import annotations

import threading
import time

import pytest

from runner.configurators.task import ShimGroups


def test_groups_fill_in_order_and_reuse_freed_places() -> None:
    g = ShimGroups(2)
    assert [g.choose(f"ni-{i}") for i in range(5)] == [
        "ni-shim-0", "ni-shim-0", "ni-shim-1", "ni-shim-1", "ni-shim-2"]
    g.forget("ni-1")
    assert g.choose("ni-9") == "ni-shim-0"
    assert ShimGroups(1).choose("ni-0") == ""  # a shim each: no group


def _start_all(g: ShimGroups, group: str, n: int, fail_first: bool = False) -> list[int]:
    """n starts of one group at once; how many ran at the same time, as each began."""
    running = 0
    seen: list[int] = []
    lock = threading.Lock()
    go = threading.Barrier(n)

    def start(i: int) -> None:
        nonlocal running
        go.wait()
        try:
            with g.starting(group):
                with lock:
                    running += 1
                    seen.append(running)
                time.sleep(0.05)
                with lock:
                    running -= 1
                if fail_first and i == 0:
                    raise OSError("create new shim socket")
        except OSError:
            pass

    threads = [threading.Thread(target=start, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return seen


def test_a_groups_first_start_is_alone_then_they_overlap() -> None:
    g = ShimGroups(10)
    assert _start_all(g, "ni-shim-0", 1) == [1]  # its shim now runs
    assert max(_start_all(g, "ni-shim-0", 4)) > 1
    fresh = _start_all(g, "ni-shim-1", 4)
    assert fresh[:2] == [1, 1]  # the second began only when the first was done
    assert "ni-shim-1" in g.up


@pytest.mark.parametrize("how", ["failed", "exited"])
def test_a_group_is_started_alone_again_after_a_failure_or_an_exit(how: str) -> None:
    g = ShimGroups(10)
    cid = g.choose("ni-a")
    _start_all(g, cid, 1)
    if how == "failed":
        _start_all(g, cid, 1, fail_first=True)
    else:
        g.exited("ni-a")  # its shim may be gone with it
    assert cid not in g.up
    assert _start_all(g, cid, 3)[:2] == [1, 1]
    assert cid in g.up


def test_a_group_whose_tasks_are_all_leaving_takes_no_new_one() -> None:
    """Its shim stops when the last of them is deleted; a task joining then could find
    it stopping."""
    g = ShimGroups(3)
    assert {g.choose("ni-a"), g.choose("ni-b")} == {"ni-shim-0"}
    with g.removing("ni-a"):
        assert g.choose("ni-c") == "ni-shim-0"  # ni-b stays: the shim does too
    with g.removing("ni-b"), g.removing("ni-c"):
        assert g.choose("ni-d") == "ni-shim-1"
    assert "ni-shim-0" not in g.members
    assert [g.choose(f"ni-{x}") for x in "efg"] == ["ni-shim-1", "ni-shim-1", "ni-shim-0"]


def test_a_failed_delete_keeps_the_task_in_its_group() -> None:
    g = ShimGroups(3)
    g.choose("ni-a")
    with pytest.raises(OSError), g.removing("ni-a"):
        raise OSError("delete task")
    assert g.members == {"ni-shim-0": {"ni-a"}} and not g.leaving
    assert g.choose("ni-b") == "ni-shim-0"


def test_an_emptied_group_is_started_alone_again() -> None:
    """Its shim stopped with its last task; a task of the same name starts a new one."""
    g = ShimGroups(10)
    group = g.choose("ni-a")
    _start_all(g, group, 1)
    assert group in g.up
    with g.removing("ni-a"):
        pass
    assert group not in g.up
    assert g.choose("ni-b") == group
    assert _start_all(g, group, 3)[:2] == [1, 1]
