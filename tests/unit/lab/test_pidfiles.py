"""Records of the processes a lab started: found again by a new object, never a stranger."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from runner.lab import pidfiles


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "60"], start_new_session=True)


def test_a_record_finds_the_process_and_stop_ends_it(tmp_path: Path) -> None:
    p = _sleeper()
    try:
        pidfiles.record(tmp_path, "dns", p.pid)
        (rec,) = pidfiles.records(tmp_path)
        assert (rec.name, rec.pid) == ("dns", p.pid)
        assert pidfiles.stop(rec, timeout=5)
        assert p.wait(5) == -15  # SIGTERM reached it
        assert pidfiles.read(tmp_path, "dns") is None
    finally:
        p.kill()
        p.wait()


def test_a_reused_pid_is_not_ours(tmp_path: Path) -> None:
    p = _sleeper()
    try:
        rec = pidfiles.record(tmp_path, "dns", p.pid)
        # the same PID with another start time: a later process that got the number
        (tmp_path / "dns.pid").write_text(f"{p.pid} {rec.start + 1}\n")
        assert pidfiles.records(tmp_path) == []
        stranger = pidfiles.Recorded("dns", p.pid, rec.start + 1)
        assert pidfiles.stop(stranger, timeout=0.2)  # "gone" as far as we know ...
        assert p.poll() is None  # ... and the process was not touched
    finally:
        p.kill()
        p.wait()


def test_forget_and_garbage(tmp_path: Path) -> None:
    (tmp_path / "junk.pid").write_text("not a pid\n")
    p = _sleeper()
    try:
        pidfiles.record(tmp_path, "x", p.pid)
        pidfiles.forget(tmp_path, "x")
        pidfiles.forget(tmp_path, "x")  # twice is fine
        assert pidfiles.records(tmp_path) == []
        assert pidfiles.records(tmp_path / "missing") == []
    finally:
        p.kill()
        p.wait()


def test_a_zombie_counts_as_gone(tmp_path: Path) -> None:
    p = subprocess.Popen(["sleep", "0.2"])
    rec = pidfiles.record(tmp_path, "t", p.pid)
    assert pidfiles.alive(rec)
    deadline = time.monotonic() + 5
    while pidfiles.alive(rec) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert p.returncode is None  # exited but not reaped yet: a zombie
    assert not pidfiles.alive(rec) and not pidfiles.running(p.pid)
    p.wait()
