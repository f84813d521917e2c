from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runner.flowlog.writer import RotatingJsonl, read


def test_rotates_at_the_cap_keeps_backups_and_reads_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "flows.jsonl"
    w = RotatingJsonl(path, max_bytes=1024, backups=2)
    for i in range(100):
        w.write([{"n": i, "pad": "x" * 40}])
    w.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["flows.jsonl", "flows.jsonl.1", "flows.jsonl.2"]
    assert all(p.stat().st_size <= 1024 for p in tmp_path.iterdir())
    kept = [r["n"] for r in read(path)]
    assert kept == list(range(kept[0], 100)) and 0 < kept[0]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_appends_to_an_existing_file_and_counts_its_size(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text('{"n":-1}\n' * 120)
    w = RotatingJsonl(path, max_bytes=1024, backups=1)
    assert w.write([{"n": 0}]) == 1
    w.close()
    assert (tmp_path / "f.jsonl.1").exists()
    assert [r["n"] for r in read(path)][-1] == 0


def test_no_backups_keeps_only_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    w = RotatingJsonl(path, max_bytes=1024, backups=0)
    for i in range(50):
        w.write([{"n": i, "pad": "y" * 50}])
    w.close()
    assert [p.name for p in tmp_path.iterdir()] == ["f.jsonl"]
    assert [r["n"] for r in read(path)][-1] == 49


def test_a_too_small_cap_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        RotatingJsonl(tmp_path / "f", max_bytes=10)


def test_tail_follows_new_records_across_rotations(tmp_path: Path) -> None:
    """(A tail that falls a whole file behind skips it: with the 4 MiB files of the
    supervisor's flow logs, that is 4 MiB within one poll.)"""
    import threading
    import time

    from runner.flowlog.writer import Tail

    path = tmp_path / "flows.jsonl"
    w = RotatingJsonl(path, max_bytes=1024, backups=2)
    w.write([{"n": -1}])  # before the tail: not followed
    tail = Tail(path)
    got: list[int] = []
    done = threading.Event()

    def follow() -> None:
        for r in tail.records(lambda: done.is_set() or len(got) >= 60, poll=0.01):
            got.append(r["n"])

    t = threading.Thread(target=follow)
    t.start()
    for n in range(60):  # about 10 rotations of 1 KiB, at a pace it can follow
        w.write([{"n": n, "pad": "x" * 150}])
        time.sleep(0.01)
    t.join(10)
    done.set()
    assert got == list(range(60))


def test_records_for_flows_last_app_and_follow(tmp_path: Path) -> None:
    import threading

    from runner.supervisor.flows import records

    path = tmp_path / "flows.jsonl"
    w = RotatingJsonl(path)
    w.write([{"app": "plc", "n": 1}, {"app": "hmi", "n": 2}, {"app": "plc", "n": 3}])
    assert [r["n"] for r in records(path)] == [1, 2, 3]
    assert [r["n"] for r in records(path, app="plc")] == [1, 3]
    assert [r["n"] for r in records(path, last=2)] == [2, 3]
    stop = threading.Event()
    found: list[int] = []

    def follow() -> None:
        for r in records(path, app="plc", last=1, follow=True, stop=stop.is_set):
            found.append(r["n"])
            if r["n"] == 5:
                stop.set()

    t = threading.Thread(target=follow)
    t.start()
    import time

    time.sleep(0.3)
    w.write([{"app": "hmi", "n": 4}, {"app": "plc", "n": 5}])
    t.join(5)
    assert not t.is_alive() and found == [3, 5]
