"""netns.run_in on a real kernel: the kept threads enter the netns asked for, come back to
the process's own netns after each call, and leave nothing of theirs behind.

Also links.present, the per-name lookup the reconciler's wait for vanished veths uses,
in the same two netns. Two throwaway netns of this run's name; the test process's own
netns is only read.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

from runner.drivers import netns as ns
from runner.lab.topology import sh
from tests.integration.conftest import RUN_ID

pytestmark = pytest.mark.integration

NAMES = (f"nrt{RUN_ID}hop1", f"nrt{RUN_ID}hop2")


@pytest.fixture
def two() -> Iterator[tuple[str, str]]:
    for n in NAMES:
        sh("ip", "netns", "add", n)
    try:
        yield NAMES
    finally:
        for n in NAMES:
            sh("ip", "netns", "del", n, check=False)


def _here() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def _threads_in(inode: int) -> list[str]:
    out = []
    for t in os.listdir("/proc/self/task"):
        try:
            if os.stat(f"/proc/self/task/{t}/ns/net").st_ino == inode:
                out.append(t)
        except FileNotFoundError:  # a thread that ended meanwhile
            pass
    return out


def test_a_call_runs_in_the_netns_and_its_thread_comes_back(two: tuple[str, str]) -> None:
    a, b = two
    home = os.stat("/proc/self/ns/net").st_ino
    assert ns.run_in(a, _here) == ns.inode(a)
    assert ns.run_in(f"/run/netns/{b}", _here) == ns.inode(b)
    assert ns.run_in(a, lambda: ns.where()) == f" in {a}"
    assert ns.where() == ""
    assert _threads_in(ns.inode(a) or 0) == [] and _threads_in(ns.inode(b) or 0) == []
    assert _here() == home
    with pytest.raises(ZeroDivisionError):
        ns.run_in(a, lambda: 1 // 0)
    with pytest.raises(ns.NoSuchNetns, match="does not exist"):
        ns.run_in(f"nrt{RUN_ID}nosuch", _here)
    assert ns.run_in(b, _here) == ns.inode(b)  # the threads still serve after errors
    assert _threads_in(ns.inode(a) or 0) == []


def test_parallel_calls_each_get_their_netns(two: tuple[str, str]) -> None:
    a, b = two
    want = {a: ns.inode(a), b: ns.inode(b)}
    got: list[tuple[str, int]] = []
    lock = threading.Lock()

    def call(name: str) -> None:
        for _ in range(20):
            inode = ns.run_in(name, _here)
            with lock:
                got.append((name, inode))

    threads = [threading.Thread(target=call, args=(NAMES[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(got) == 160 and all(want[name] == inode for name, inode in got)
    assert _threads_in(want[a] or 0) == [] and _threads_in(want[b] or 0) == []


def test_a_deleted_netns_is_not_kept_by_the_threads(two: tuple[str, str]) -> None:
    a, _ = two
    ns.run_in(a, _here)
    sh("ip", "link", "add", "hopv0", "type", "veth", "peer", "name", "hopv1", netns=a)
    inode = ns.inode(a)
    sh("ip", "netns", "del", a)
    # nothing of ours holds it (no thread in it, no fd of it): the kernel frees it
    assert inode is not None and _threads_in(inode) == []
    assert f"net:[{inode}]" not in _fd_targets()


def _fd_targets() -> set[str]:
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.add(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:  # the listing's own fd, closed by now
            pass
    return out


def test_links_present_by_name_and_gone_with_their_netns(two: tuple[str, str]) -> None:
    """links.present looks up each name (no dump); a veth whose peer's netns is deleted
    goes by itself a moment later, which VethConf.await_gone waits for this way."""
    from runner.configurators.links import GONE_WAIT
    from runner.drivers import links

    a, b = two
    sh("ip", "link", "add", "hopv1", "netns", a, "type", "veth", "peer", "name", "p",
       "netns", b)
    assert links.present(["hopv1", "hopv2", "lo"], a) == {"hopv1", "lo"}
    sh("ip", "netns", "del", b)
    left = {"hopv1"}
    for _ in range(int(GONE_WAIT / 0.01)):  # bounded
        left = links.present(sorted(left), a)
        if not left:
            break
        time.sleep(0.01)
    assert left == set()
