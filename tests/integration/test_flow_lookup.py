"""The flow log's reaps on a real kernel: a flow looked up by the tuple of its start event
is found while it lives, and once it has expired the lookup finds nothing and its end
event comes (the kernel drops an expired flow when a lookup meets it).

A throwaway netns of this run's name, with loopback flows; nothing outside it changes.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from runner.drivers import netns as ns
from runner.flowlog import netlink as nl
from runner.flowlog.collector import SYSCTLS, Listener
from runner.lab.topology import sh, wait_for
from tests.integration.conftest import RUN_ID
from tests.unit.flowlog import messages as m

pytestmark = pytest.mark.integration

NS = f"nrt{RUN_ID}ct"
# a closed TCP flow expires 1 s after its last packet
FAST_CT = {f"net/netfilter/nf_conntrack_tcp_timeout_{s}": "1"
           for s in ("time_wait", "close", "close_wait", "fin_wait", "last_ack")}
TRACKED = "table inet t {\n\tchain out {\n\t\ttype filter hook output priority 0\n" \
          "\t\tct state new counter\n\t}\n}\n"  # a ct rule: conntrack runs in the netns


@pytest.fixture
def listener() -> Iterator[Listener]:
    sh("ip", "netns", "add", NS)
    try:
        sh("ip", "link", "set", "lo", "up", netns=NS)
        ns.set_sysctls({**SYSCTLS, **FAST_CT}, NS)
        sh("nft", "-f", "-", netns=NS, input=TRACKED)
        lst = Listener(NS)
        lst.open()
        try:
            yield lst
        finally:
            lst.close()
    finally:
        sh("ip", "netns", "del", NS, check=False)


def _events(lst: Listener, want: int, end: bool, timeout: float) -> list[tuple[int, bytes]]:
    """The flows (ID, tuple) of the NEW (or, `end`, DELETE) events to port 7007."""
    kind = nl.NFNL_SUBSYS_CTNETLINK << 8 | (nl.IPCTNL_MSG_CT_DELETE if end
                                            else nl.IPCTNL_MSG_CT_NEW)
    seen: list[tuple[int, bytes]] = []

    def more() -> bool:
        for k, _f, payload in lst.read():
            ev = nl.ct_event(k, payload)
            flow = nl.ct_flow(payload)
            if k == kind and ev is not None and ev.orig.dport == 7007 and flow is not None:
                seen.append(flow)
        return len(seen) >= want

    wait_for(more, timeout, f"{want} conntrack {'end' if end else 'start'} event(s)")
    return seen


def test_a_looked_up_flow_is_found_while_it_lives_and_dropped_once_expired(
        listener: Listener) -> None:
    def connect() -> tuple[socket.socket, socket.socket, socket.socket]:
        srv = socket.create_server(("127.0.0.1", 7007))
        cli = socket.create_connection(("127.0.0.1", 7007), timeout=5)
        conn, _ = srv.accept()
        return srv, cli, conn

    srv, cli, conn = ns.run_in(NS, connect)  # sockets of the netns
    try:
        ((ident, orig),) = _events(listener, 1, end=False, timeout=5)
        cli.sendall(b"x" * 1000)
        assert conn.recv(1000)
        nosuch = m.tuple_(6, "127.0.0.1", "127.0.0.1", 40000, 7008)
        assert listener.lookup({ident: orig, 1: nosuch}) == {ident: orig}
    finally:
        for s in (cli, conn, srv):
            s.close()
    time.sleep(1.5)  # closed and expired (1 s); the GC may not have been round yet
    assert listener.lookup({ident: orig}) == {}
    ((gone, _),) = _events(listener, 1, end=True, timeout=5)
    assert gone == ident
