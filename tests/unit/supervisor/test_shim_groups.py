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
