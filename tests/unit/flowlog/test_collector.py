"""The collector's loop with a fake listener (the netlink socket is the integration tests')."""

from __future__ import annotations

import socket
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


def test_poll_records_refreshes_and_survives_failing_refresh_and_reap(tmp_path: Path) -> None:
    index = AppIndex({"10.1.0.10": "plc"})
    flow = m.ct_event(m.tuple_(6, "10.1.0.10", "192.0.2.20", 1, 80),
                      m.tuple_(6, "192.0.2.20", "198.51.100.2", 80, 1))
    reply = m.dns_reply("www.example.test", ["192.0.2.20"], 30)
    dns = m.log_packet("dns ", m.ipv4_udp("10.1.0.1", "10.1.0.10", 53, 5353, reply))
    listener = FakeListener([flow + dns])
    applied: list[str] = []

    def apply(text: str) -> None:
        applied.append(text)
        raise NirunnerError("no such set")

    c = Collector(listener, Recorder("n", lambda: index, ["www.example.test"]),  # type: ignore[arg-type]
                  RotatingJsonl(tmp_path / "f.jsonl"), apply, reap_every=1.0)
    assert c.poll(1.0) == 2
    assert [r["type"] for r in read(tmp_path / "f.jsonl")] == ["flow", "dns"]
    assert len(applied) == 1 and c.refresh_errors == 1
    assert listener.reaped == 1 and c.reap_errors == 1
    assert c.poll(0.01) == 0


class CountingListener(FakeListener):
    """Reaps find `flows` flows; conntrack NEW events come as told."""

    def __init__(self) -> None:
        super().__init__([])
        self.flows = 0

    def reap(self) -> int:  # type: ignore[override]
        self.reaped += 1
        return self.flows

    def new_flow(self, end: bool = False) -> None:
        self.datagrams.append(m.ct_event(m.tuple_(17, "10.1.0.10", "192.0.2.20", 1, 53),
                                         m.tuple_(17, "192.0.2.20", "198.51.100.2", 53, 1),
                                         end=end))
        self.b.send(b"x")


def test_reaps_follow_the_flows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A conntrack dump walks the whole hash: none while the NI has no flow, every
    reap_every seconds while flows start, none once they do not (nor for ends)."""
    from runner.flowlog import collector as col

    clock = [1000.0]
    monkeypatch.setattr(col.time, "time", lambda: clock[0])
    listener = CountingListener()
    c = Collector(listener, Recorder("n", AppIndex), RotatingJsonl(tmp_path / "f.jsonl"),  # type: ignore[arg-type]
                  lambda text: None, reap_every=5.0)

    def at(t: float, ready: bool = False) -> int:
        clock[0] = 1000.0 + t
        c.handle(ready)
        return listener.reaped

    assert at(0) == 1  # one at start: no flow
    assert at(30) == at(600) == 1  # and none while nothing happens
    listener.flows = 1
    listener.new_flow()
    assert at(601, ready=True) == 1
    assert at(605) == 1 and at(606) == 2  # 5 s after the flow started
    listener.new_flow()
    assert at(607, ready=True) == 2
    assert at(611) == 3  # another started since: 5 s later again
    assert at(616) == 4  # nothing started or ended since the last one: the last
    assert at(700) == 4 and at(5000) == 4  # flows remain, quiet: the GC reports their ends
    listener.new_flow(end=True)
    assert at(5000.5, ready=True) == 4 and at(5100) == 4  # an end: no reap for it
    listener.new_flow()
    assert at(5001, ready=True) == 4 and at(5006) == 5  # a flow again: reaps again
    listener.flows = 0
    listener.new_flow()
    assert at(5007, ready=True) == 5 and at(5011) == 6  # empty: no more reaps
    assert at(9000) == 6
