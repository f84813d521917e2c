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
