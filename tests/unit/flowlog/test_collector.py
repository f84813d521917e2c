"""The collector's loop with a fake listener (the netlink socket is the integration tests')."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from runner.errors import NirunnerError
from runner.flowlog import netlink as nl
from runner.flowlog.collector import Collector
from runner.flowlog.records import AppIndex, Recorder
from runner.flowlog.writer import RotatingJsonl, read
from tests.unit.flowlog import messages as m


class FakeListener:
    conntrack = True

    def __init__(self, datagrams: list[bytes]) -> None:
        self.a, self.b = socket.socketpair()
        self.datagrams = datagrams
        self.reaped = 0
        if datagrams:
            self.b.send(b"x")  # readable

    def fileno(self) -> int:
        return self.a.fileno()

    def read(self) -> list[tuple[int, int, bytes]]:
        self.a.recv(16)
        out = [msg for d in self.datagrams for msg in nl.messages(d)]
        self.datagrams = []
        return out

    def reap(self) -> None:
        self.reaped += 1
        raise OSError("netns gone")

    def lookup(self, flows: dict[int, bytes]) -> dict[int, bytes]:
        self.reaped += 1
        raise OSError("netns gone")


def test_poll_records_refreshes_and_survives_failing_refresh_and_reap(tmp_path: Path) -> None:
    index = AppIndex({"10.1.0.10": "plc"})
    flow = m.ct_event(m.tuple_(6, "10.1.0.10", "192.0.2.20", 1, 80),
                      m.tuple_(6, "192.0.2.20", "198.51.100.2", 80, 1))
    reply = m.dns_reply("www.example.test", ["192.0.2.20"], 30)
    dns = m.log_packet("dns ", m.ipv4_udp("10.1.0.1", "10.1.0.10", 53, 5353, reply))
    start = m.ct_event(m.tuple_(6, "10.1.0.10", "192.0.2.21", 2, 80),
                       m.tuple_(6, "192.0.2.21", "198.51.100.2", 80, 2), end=False)
    listener = FakeListener([flow + dns + start])
    applied: list[str] = []

    def apply(text: str) -> None:
        applied.append(text)
        raise NirunnerError("no such set")

    c = Collector(listener, Recorder("n", lambda: index, ["www.example.test"]),  # type: ignore[arg-type]
                  RotatingJsonl(tmp_path / "f.jsonl"), apply, reap_every=1.0)
    assert c.poll(1.0) == 2
    assert [r["type"] for r in read(tmp_path / "f.jsonl")] == ["flow", "dns"]
    assert len(applied) == 1 and c.refresh_errors == 1
    assert listener.reaped == 0 and c.due() <= time.time() + 1.0  # a flow started: a reap
    time.sleep(1.0)
    assert c.poll(0.01) == 0
    assert listener.reaped == 1 and c.reap_errors == 1


class KernelListener(FakeListener):
    """A conntrack table of `kernel` flows; NEW and DELETE events come as told."""

    def __init__(self) -> None:
        super().__init__([])
        self.kernel: dict[int, bytes] = {}
        self.looked = 0
        self.asked: list[set[int]] = []

    def reap(self) -> dict[int, bytes]:  # type: ignore[override]
        self.reaped += 1
        return dict(self.kernel)

    def lookup(self, flows: dict[int, bytes]) -> dict[int, bytes]:
        self.looked += 1
        self.asked.append(set(flows))
        return {i: t for i, t in flows.items() if i in self.kernel}

    def event(self, ident: int, end: bool = False) -> None:
        orig = m.tuple_(17, "10.1.0.10", "192.0.2.20", 1000 + ident, 53)
        self.datagrams.append(m.ct_event(orig, m.tuple_(17, "192.0.2.20", "198.51.100.2",
                                                        53, 1000 + ident), end=end,
                                         ident=ident))
        if end:
            self.kernel.pop(ident, None)
        else:
            self.kernel[ident] = orig
        self.b.send(b"x")


def test_reaps_look_up_the_open_flows_and_back_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The open flows are looked up one by one (a dump walks the kernel's whole conntrack
    hash): every reap_every seconds while flows start, twice as long each time while none
    starts (up to REAP_MAX), none when none is open."""
    from runner.flowlog import collector as col

    clock = [1000.0]
    monkeypatch.setattr(col.time, "time", lambda: clock[0])
    listener = KernelListener()
    c = Collector(listener, Recorder("n", AppIndex), RotatingJsonl(tmp_path / "f.jsonl"),  # type: ignore[arg-type]
                  lambda text: None, reap_every=5.0)

    def at(t: float, ready: bool = False) -> tuple[int, int]:
        clock[0] = 1000.0 + t
        c.handle(ready)
        return listener.reaped, listener.looked

    assert at(0) == (0, 0)  # nothing open: no reap
    assert at(30) == at(600) == (0, 0)
    listener.event(1)
    assert at(601, ready=True) == (0, 0)
    assert at(605) == (0, 0) and at(606) == (0, 1)  # 5 s after the flow started
    listener.event(2)
    assert at(607, ready=True) == (0, 1) and c.open.keys() == {1, 2}
    assert at(611) == (0, 2) and listener.asked[-1] == {1, 2}  # one started: 5 s again
    assert at(616) == (0, 3)  # none started since: 10 s to the next, then 20, 40, 60
    assert at(625) == (0, 3) and at(626) == (0, 4)
    assert at(645) == (0, 4) and at(646) == (0, 5)
    assert at(685) == (0, 5) and at(686) == (0, 6)
    assert at(745) == (0, 6) and at(746) == (0, 7)
    listener.event(1, end=True)  # an end: no longer looked up
    assert at(747, ready=True) == (0, 7) and c.open.keys() == {2}
    del listener.kernel[2]  # expired: the lookup drops it (its end event would follow)
    assert at(806) == (0, 8) and listener.asked[-1] == {2} and c.open == {}
    assert at(9000) == (0, 8)  # nothing open: no more reaps


def test_too_many_open_flows_are_dumped_instead(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.flowlog import collector as col

    clock = [1000.0]
    monkeypatch.setattr(col.time, "time", lambda: clock[0])
    monkeypatch.setattr(col, "TRACKED_MAX", 2)
    listener = KernelListener()
    c = Collector(listener, Recorder("n", AppIndex), RotatingJsonl(tmp_path / "f.jsonl"),  # type: ignore[arg-type]
                  lambda text: None, reap_every=5.0)
    clock[0] = 1000.0
    for i in (1, 2, 3):
        listener.event(i)
    c.handle(True)
    clock[0] = 1005.0
    c.handle(False)
    assert (listener.reaped, listener.looked) == (1, 0)  # three open: a dump
    listener.event(3, end=True)
    c.handle(True)
    clock[0] = 1015.0
    c.handle(False)  # the dump finds two: it knows them all again
    assert (listener.reaped, listener.looked) == (2, 0) and c.open.keys() == {1, 2}
    clock[0] = 1035.0
    c.handle(False)
    assert (listener.reaped, listener.looked) == (2, 1)


def test_a_flow_lookup_is_the_events_own_tuple() -> None:
    orig = m.tuple_(6, "10.1.0.10", "192.0.2.20", 40000, 80)
    event = m.ct_event(orig, m.tuple_(6, "192.0.2.20", "198.51.100.2", 80, 40000),
                       end=False, ident=7)
    ((kind, _flags, payload),) = list(nl.messages(event))
    assert nl.ct_flow(payload) == (7, orig)
    assert nl.ct_flow(bytes([socket.AF_INET6]) + payload[1:]) is None  # IPv4 flows only
    ((kind, seq, body),) = list(nl.answers(nl.ct_get_request(orig, 99)))
    assert kind == nl.NFNL_SUBSYS_CTNETLINK << 8 | nl.IPCTNL_MSG_CT_GET and seq == 99
    assert nl.attrs(body, 4) == {nl.CTA_TUPLE_ORIG: orig}
