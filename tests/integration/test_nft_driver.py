"""The nft driver on a real kernel: libnftables in-process, in the netns asked for.

A throwaway netns of this run's name; nothing in the test process's own netns is
changed (it is only read, to see that nothing arrived there).
"""

from __future__ import annotations

import json
import select
import threading
from collections.abc import Callable, Iterator

import pytest

from runner.drivers import libnft, nfnl, nft
from runner.drivers import netns as ns
from runner.lab.topology import sh
from tests.integration.conftest import RUN_ID

pytestmark = pytest.mark.integration

NS = f"nrt{RUN_ID}nft"
TABLE = "table inet t {\n\tset s {\n\t\ttype ipv4_addr\n\t}\n}\n"


@pytest.fixture
def netns() -> Iterator[str]:
    sh("ip", "netns", "add", NS)
    try:
        yield NS
    finally:
        sh("ip", "netns", "del", NS, check=False)


def test_libnftables_is_used_and_works_in_the_netns_asked_for(netns: str) -> None:
    assert libnft.available()  # the machine has it: the driver must not fall back here
    mine = nft.tables()
    nft.apply_table(TABLE, "inet", "t", netns)
    nft.apply("add element inet t s { 10.1.0.7 }\n", netns)
    listed = json.loads(nft.list_json("inet", "t", netns))
    elements = [x["set"].get("elem") for x in listed["nftables"] if "set" in x]
    assert elements == [["10.1.0.7"]]
    assert nft.read_tag("inet", "t", netns) == nft.tag(TABLE)  # the comment we applied
    assert "table inet t" in sh("nft", "list", "tables", netns=netns).stdout
    assert ("inet", "t") in nft.tables(netns) and nft.tables() == mine  # nothing here


def test_errors_read_as_nfts_own_and_change_nothing(netns: str) -> None:
    nft.apply_table(TABLE, "inet", "t", netns)
    with pytest.raises(nft.NftError) as e:
        nft.apply("add element inet t s { 10.1.0.8 }\nadd element inet t nosuch { 1.2.3.4 }\n",
                  netns, "add elements")
    assert f"add elements in {netns}: Error: No such file or directory" in str(e.value)
    assert "10.1.0.8" not in sh("nft", "list", "set", "inet", "t", "s", netns=netns).stdout


def _gen_pid(netns: str, change: Callable[[], object]) -> int:
    """The task the kernel names for `change`'s batch (NFT_MSG_NEWGEN)."""
    ready = threading.Event()

    def watch() -> list[nfnl.NftEvent]:
        s = nfnl.event_socket()
        try:
            ready.set()
            events: list[nfnl.NftEvent] = []
            while not any(e.msg == nfnl.NFT_MSG_NEWGEN for e in events):
                if not select.select([s], [], [], 5)[0]:
                    break
                events += nfnl.parse(s.recv(65536))
            return events
        finally:
            s.close()

    box: dict[str, list[nfnl.NftEvent]] = {}
    watcher = threading.Thread(target=lambda: box.update(ev=ns.run_in(netns, watch)))
    watcher.start()
    assert ready.wait(5)
    change()
    watcher.join(10)
    gens = [e for e in box.get("ev", []) if e.msg == nfnl.NFT_MSG_NEWGEN]
    assert gens, "no NEWGEN event"
    return gens[0].pid


def test_our_changes_are_told_apart_in_nftables_events(netns: str) -> None:
    """The kernel names the task behind a change: ours is our calling thread, remembered;
    someone else's nft is not ours."""
    assert nft.own_pid(_gen_pid(netns, lambda: nft.apply_table(TABLE, "inet", "t", netns)))
    theirs = _gen_pid(netns, lambda: sh("nft", "add", "element", "inet", "t", "s",
                                        "{ 10.1.0.9 }", netns=netns))
    assert theirs and not nft.own_pid(theirs)
