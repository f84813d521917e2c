"""bench.run's lock: one benchmark at a time on a machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import run as bench_run


def test_one_benchmark_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "bench.lock"
    fd = bench_run._lock(path)
    try:
        assert path.read_text() == f"{os.getpid()}\n"
        with pytest.raises(SystemExit, match=rf"another benchmark is running \(pid {os.getpid()}"):
            bench_run._lock(path)  # a second open file description: refused
    finally:
        os.close(fd)
    os.close(bench_run._lock(path))  # free again once the holder is gone
