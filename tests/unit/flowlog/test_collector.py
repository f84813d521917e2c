"""The collector's loop with a fake listener (the netlink socket is the integration tests')."""

from __future__ import annotations

import socket
from pathlib import Path

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
