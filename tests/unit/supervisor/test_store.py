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


def test_workload_attachments_round_trip_and_old_files_read(tmp_path: Path) -> None:
    from ipaddress import IPv4Interface

    from runner.cni.api import PortMapping
    from runner.supervisor.store import CNI, TAP

    store = Store(tmp_path)
    d = _desired()
    cni = Attachment("lab", "/run/netns/c1", "eth0", "ap0000aaaa", "02:00:00:00:00:02", "web",
                     CNI, "lab-net", "c1", IPv4Interface("10.2.0.57/24"),
                     (PortMapping(8080, 80, "tcp"), PortMapping(5353, 53, "udp", "198.51.100.2")))
    tap = Attachment("lab", "", "tapvm0", "ap0000bbbb", "02:00:00:00:0a:01", kind=TAP, mtu=1400,
                     up=True)
    d.attachments += [cni, tap]
    store.save(d)
    assert store.load() == d
    assert sorted(p.name for p in store.attachments_dir.iterdir()) == ["lab.json"]
    # a file of format 1 (the attachments in desired.json), written before attachments
    # had a kind: they read back as `attach --netns` ones
    old = {"ni": "lab", "netns": "/run/netns/a", "ifname": "eth0", "host_ifname": "ap12345678",
           "mac": "02:00:00:00:00:01", "hostname": "plc"}
    doc = json.loads(store.path.read_text())
    doc["format"] = 1
    doc["body"]["attachments"] = [old]
    from runner.supervisor.store import _checksum

    doc["checksum"] = _checksum(doc["body"])
    store.path.write_text(json.dumps(doc))
    (a,) = store.load().attachments
    assert a == Attachment("lab", "/run/netns/a", "eth0", "ap12345678", "02:00:00:00:00:01",
                           "plc") and a.kind == "netns" and a.address is None
    doc["body"]["attachments"] = [{**old, "kind": "vm"}]
    doc["checksum"] = _checksum(doc["body"])
    store.path.write_text(json.dumps(doc))
    with pytest.raises(StateCorrupt, match="unknown kind 'vm'"):
        store.load()


def test_a_save_writes_only_what_changed(tmp_path: Path) -> None:
    store = Store(tmp_path)
    d = _desired()
    store.save(d)
    mtimes = {p: p.stat().st_mtime_ns for p in (store.path, *store.attachments_dir.iterdir())}
    store.save(Desired(dict(d.nis), dict(d.slots), list(d.attachments)))  # the same
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    plug = Attachment("lab", "/run/netns/x", "eth0", "ap0000cccc", "02:00:00:00:00:09")
    store.save(Desired(dict(d.nis), dict(d.slots), [*d.attachments, plug]))
    assert store.path.stat().st_mtime_ns == mtimes[store.path]  # an attach: its NI's file
    assert store.load().attachments == [*d.attachments, plug]
    store.save(Desired(dict(d.nis), dict(d.slots), []))
    assert list(store.attachments_dir.iterdir()) == [] and store.load().attachments == []


def test_the_attachments_dir_is_private_also_when_made_after_a_save_without_any(
        tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    d = _desired()
    store.save(Desired(dict(d.nis), dict(d.slots), []))
    assert not store.attachments_dir.exists()
    store.save(d)
    assert store.attachments_dir.stat().st_mode & 0o777 == 0o700
    assert store.load() == d
