from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.model.manifest import load_paths
from runner.supervisor.store import Attachment, Desired, StateCorrupt, Store

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _desired() -> Desired:
    nis = {ni.name: ni for ni in load_paths([str(EXAMPLES)])}
    return Desired(nis=nis, slots={"factory": 0, "lab": 1},
                   attachments=[Attachment("lab", "/run/netns/a", "eth0", "ap12345678",
                                           "02:00:00:00:00:01", "plc")])


def test_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert store.load() == Desired()  # nothing stored yet
    store.save(_desired())
    assert store.load() == _desired()
    assert (store.path.stat().st_mode & 0o777) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_torn_file_is_reported(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.save(_desired())
    raw = store.path.read_bytes()
    store.path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(StateCorrupt, match="cannot be read back"):
        store.load()


def test_edited_file_is_reported(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.save(_desired())
    doc = json.loads(store.path.read_text())
    doc["body"]["slots"]["lab"] = 7
    store.path.write_text(json.dumps(doc))
    with pytest.raises(StateCorrupt, match="checksum mismatch"):
        store.load()


def test_paths(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert store.config_dir("lab") == tmp_path / "ni" / "lab" / "config"
    assert store.state_dir("lab") == tmp_path / "ni" / "lab" / "state"
    assert store.log_path("lab") == tmp_path / "ni" / "lab" / "task.log"
