"""systemd's notify protocol: datagrams to $NOTIFY_SOCKET, abstract names, the watchdog."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.supervisor.notify import Notifier, Watchdog


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """What systemd holds: a datagram socket; yields (NOTIFY_SOCKET value, socket)."""
    path = tmp_path / "notify"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(2)
    yield str(path), s
    s.close()


def _messages(s: socket.socket, n: int) -> list[str]:
    return [s.recv(4096).decode() for _ in range(n)]


def test_ready_status_stopping(receiver: tuple[str, socket.socket]) -> None:
    path, s = receiver
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert n.ready("serving on /run/x.sock;\n3 NIs")
    assert n.status("first reconcile")
    assert n.stopping()
    assert _messages(s, 3) == ["READY=1\nSTATUS=serving on /run/x.sock; 3 NIs",
                               "STATUS=first reconcile", "STOPPING=1"]


def test_abstract_socket_name() -> None:
    name = f"nirunner-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(b"\0" + name.encode())
        s.settimeout(2)
        assert Notifier.from_env({"NOTIFY_SOCKET": f"@{name}"}).ready()
        assert s.recv(100) == b"READY=1"


def test_without_systemd_nothing_is_sent() -> None:
    n = Notifier.from_env({})
    assert n.address is None and n.watchdog_interval is None
    assert not n.ready() and not n.watchdog()
    assert Notifier.from_env({"NOTIFY_SOCKET": "relative/path"}).address is None


def test_the_variables_are_taken_out_of_the_environment(tmp_path: Path) -> None:
    env = {"NOTIFY_SOCKET": str(tmp_path / "n"), "WATCHDOG_USEC": "1000000", "PATH": "/bin"}
    Notifier.from_env(env)
    assert env == {"PATH": "/bin"}  # children (ip, nft) must not notify in our name
    env = {"NOTIFY_SOCKET": str(tmp_path / "n")}
    Notifier.from_env(env, unset=False)
    assert "NOTIFY_SOCKET" in env


@pytest.mark.parametrize("env,interval", [
    ({"WATCHDOG_USEC": "3000000"}, 1.5),
    ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "4242"}, 1.5),  # for us
    ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}, None),  # for another process
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({}, None),
])
def test_watchdog_interval_is_half_and_honours_the_pid(
    env: dict[str, str], interval: float | None
) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": "/run/x", **env}, pid=4242)
    assert n.watchdog_interval == interval


def test_a_vanished_socket_is_not_fatal(tmp_path: Path) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert not n.ready()
    assert not n.watchdog()  # logged once, never raised


def test_watchdog_pings_at_the_interval(receiver: tuple[str, socket.socket]) -> None:
    path, s = receiver
    n = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000",
                           "WATCHDOG_PID": str(os.getpid())})
    w = Watchdog(n)
    w.start()
    try:
        times = []
        for _ in range(5):
            assert s.recv(100) == b"WATCHDOG=1"
            times.append(time.monotonic())
    finally:
        w.stop()
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(0.05 < g < 0.4 for g in gaps), gaps  # every 0.1 s, give or take load


def test_a_stuck_pass_stops_the_pings(receiver: tuple[str, socket.socket]) -> None:
    path, s = receiver
    n = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    w = Watchdog(n, stall_limit=0.3)
    w.busy()
    w.start()
    try:
        assert s.recv(100) == b"WATCHDOG=1"  # busy for less than the limit: fine
        time.sleep(0.5)
        while True:  # drain what was sent before the limit passed
            s.settimeout(0.01)
            try:
                s.recv(100)
            except TimeoutError:
                break
        s.settimeout(0.5)
        with pytest.raises(TimeoutError):
            s.recv(100)  # stuck: silence, so systemd restarts us
        w.idle()
        s.settimeout(2)
        assert s.recv(100) == b"WATCHDOG=1"  # back in the loop: pings again
    finally:
        w.stop()
