"""FleetSource against an in-memory etcd and a recording target: what gets applied,
refused, deleted, saved and reported, in which order."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from runner.fleet.etcd import Etcd
from runner.fleet.follow import Backoff
from runner.fleet.keys import Layout
from runner.fleet.source import FleetSource
from runner.lab.fleetdevice import RecordingTarget
from runner.model.types import EtcdSource, SupervisorConfig, Uplink
from tests.unit.fleet.fake_etcd import FakeEtcd

LAYOUT = Layout("/nr")
CONFIG = SupervisorConfig(uplinks=(Uplink("eth0", "eth0"),))


def ni(name: str, subnet: str = "10.1.0.0/24", port: int | None = None,
       meta_name: str | None = None) -> str:
    text = (f"apiVersion: nirunner/v1\nkind: NetworkInstance\nmetadata:\n"
            f"  name: {meta_name or name}\nspec:\n  type: local\n  uplink: eth0\n"
            f"  subnet: {subnet}\n")
    if port:
        text += ("  dhcp:\n    reservations:\n      - {name: app, mac: '02:00:00:00:00:01', "
                 "ip: " + subnet.rsplit(".", 1)[0] + ".10}\n"
                 f"  portMaps:\n    - {{name: web, protocol: tcp, uplinkPort: {port}, "
                 "target: app, targetPort: 80}\n")
    return text


def key(name: str, device: str = "a") -> str:
    return LAYOUT.ni(device, name)


def wait(cond: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.etcd = FakeEtcd()
        self.target = RecordingTarget(CONFIG)
        self.source = self.make()

    def make(self) -> FleetSource:
        return FleetSource(EtcdSource(("https://fake:1",), "a", "/nr", None, 3), self.target,
                           self.tmp, etcd=cast(Etcd, self.etcd), status_every=0.05,
                           backoff=Backoff(0.01, 0.02))

    def saved(self) -> dict[str, Any]:
        """fleet.json as it is now (all empty before the first save)."""
        path = self.tmp / "fleet.json"
        if not path.exists():
            return {"revision": 0, "applied": {}, "rejected": {}}
        return cast(dict[str, Any], json.loads(path.read_text()))


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.source.stop(timeout=2)


def test_lists_then_applies_each_document_and_refuses_a_bad_one(rig: Rig) -> None:
    good = rig.etcd.put(key("good"), ni("good"))
    bad = rig.etcd.put(key("bad"), ni("bad", subnet="10.2.0.1/24"))  # host bits set
    rig.etcd.put(LAYOUT.ni("b", "other"), ni("other"))  # another device's
    last = rig.etcd.put(LAYOUT.device("a") + "future/x", "ignored")  # not an NI key
    rig.source.start()
    wait(lambda: rig.source.state()["state"] == "connected", "connected")
    wait(lambda: rig.saved()["revision"] >= last, "revision saved")
    assert rig.target.names() == ["good"]
    state = rig.source.state()
    assert list(state["rejected"]) == ["bad"]
    reason = state["rejected"]["bad"]["reason"]
    assert reason.startswith(f"{key('bad')}: bad: spec.subnet")
    assert "host bits" in reason and "(line 8)" in reason
    saved = rig.saved()
    assert saved["applied"] == {"good": good}
    assert saved["rejected"]["bad"]["revision"] == bad
    assert stat.S_IMODE((rig.tmp / "fleet.json").stat().st_mode) == 0o600


def test_a_bad_change_keeps_the_last_good_state_and_a_fix_clears_it(rig: Rig) -> None:
    rig.etcd.put(key("site"), ni("site"))
    rig.source.start()
    wait(lambda: rig.target.names() == ["site"], "site applied")
    rig.etcd.put(key("site"), ni("site", subnet="10.9.0.0/33"))
    wait(lambda: "site" in rig.source.state()["rejected"], "rejection")
    assert str(rig.target.nis["site"][0].subnet) == "10.1.0.0/24"  # kept
    fixed = rig.etcd.put(key("site"), ni("site", subnet="10.9.0.0/24"))
    wait(lambda: str(rig.target.nis["site"][0].subnet) == "10.9.0.0/24", "fix applied")
    assert rig.source.state()["rejected"] == {}
    wait(lambda: rig.saved()["applied"] == {"site": fixed}, "revision saved")


def test_set_rules_apply_against_the_other_nis(rig: Rig) -> None:
    rig.etcd.put(key("one"), ni("one", port=8080))
    rig.source.start()
    wait(lambda: rig.target.names() == ["one"], "one applied")
    rig.etcd.put(key("two"), ni("two", subnet="10.2.0.0/24", port=8080))  # same uplink port
    wait(lambda: "two" in rig.source.state()["rejected"], "clash refused")
    assert "8080" in rig.source.state()["rejected"]["two"]["reason"]
    assert rig.target.names() == ["one"]


def test_a_port_that_moves_between_nis_in_one_revision_goes_in(rig: Rig) -> None:
    rig.etcd.put(key("beta"), ni("beta", subnet="10.2.0.0/24", port=8080))
    rig.source.start()
    wait(lambda: rig.target.names() == ["beta"], "beta applied")
    # alpha (tried first) takes 8080, which beta gives up in the same transaction
    rig.etcd.txn([], [
        _put(key("alpha"), ni("alpha", port=8080)),
        _put(key("beta"), ni("beta", subnet="10.2.0.0/24", port=8082)),
    ])
    wait(lambda: rig.target.names() == ["alpha", "beta"], "alpha applied")
    assert rig.target.nis["beta"][0].port_maps[0].uplink_port == 8082
    assert rig.source.state()["rejected"] == {}


def test_a_refused_document_goes_in_once_a_later_change_frees_its_port(rig: Rig) -> None:
    rig.etcd.put(key("beta"), ni("beta", subnet="10.2.0.0/24", port=8080))
    rig.source.start()
    wait(lambda: rig.target.names() == ["beta"], "beta applied")
    rig.etcd.put(key("alpha"), ni("alpha", port=8080))
    wait(lambda: "alpha" in rig.source.state()["rejected"], "alpha refused")
    rig.etcd.put(key("beta"), ni("beta", subnet="10.2.0.0/24", port=8082))
    wait(lambda: rig.target.names() == ["alpha", "beta"], "alpha applied after all")
    assert rig.source.state()["rejected"] == {}


def _put(k: str, v: str) -> Any:
    from runner.fleet.etcd import put_op

    return put_op(k, v)


def test_key_and_metadata_name_must_agree(rig: Rig) -> None:
    rig.etcd.put(key("alpha"), ni("alpha", meta_name="beta"))
    rig.etcd.put(key("two-docs"), ni("two-docs") + "---\n" + ni("x", subnet="10.3.0.0/24"))
    rig.etcd.put(key("binary"), b"\xff\xfe")
    rig.source.start()
    wait(lambda: len(rig.source.state()["rejected"]) == 3, "three rejections")
    rejected = rig.source.state()["rejected"]
    assert "metadata.name is 'beta', but the key names 'alpha'" in rejected["alpha"]["reason"]
    assert "holds 2 NI documents" in rejected["two-docs"]["reason"]
    assert "not UTF-8" in rejected["binary"]["reason"]
    assert rig.target.names() == []


def test_deletes_and_a_relist_removes_what_etcd_no_longer_has(rig: Rig) -> None:
    rig.target.apply_one("local-only", "test", ni("local-only", subnet="10.7.0.0/24"))
    keep = rig.etcd.put(key("keep"), ni("keep"))
    rig.etcd.put(key("drop"), ni("drop", subnet="10.2.0.0/24"))
    rig.etcd.put(key("bad"), "kind: Nope\n")
    rig.source.start()
    wait(lambda: rig.target.names() == ["drop", "keep"], "listing applied")
    assert ("delete", "local-only") in rig.target.calls
    rig.etcd.delete(key("drop"))
    rig.etcd.delete(key("bad"))
    wait(lambda: rig.target.names() == ["keep"], "drop deleted")
    wait(lambda: rig.source.state()["rejected"] == {}, "bad forgotten")
    wait(lambda: rig.saved()["applied"] == {"keep": keep}, "saved")


def test_a_restart_resumes_from_the_saved_revision(rig: Rig) -> None:
    one = rig.etcd.put(key("one"), ni("one"))
    rig.source.start()
    wait(lambda: rig.target.names() == ["one"], "one applied")
    wait(lambda: rig.saved()["revision"] >= one, "saved")
    rig.source.stop(timeout=2)
    saved = rig.saved()["revision"]
    rig.etcd.put(key("two"), ni("two", subnet="10.2.0.0/24"))  # while it was down
    rig.etcd.calls.clear()
    rig.source = rig.make()
    rig.source.start()
    wait(lambda: rig.target.names() == ["one", "two"], "two applied")
    desired = [c for c in rig.etcd.calls if "/nr/devices/" in c]
    assert desired[0] == f"watch {LAYOUT.device('a')} from {saved + 1}"  # no listing
    assert not any(c.startswith("list /nr/devices") for c in desired)


def test_a_compacted_revision_means_listing_again(rig: Rig) -> None:
    rig.etcd.put(key("one"), ni("one"))
    rig.etcd.put(key("two"), ni("two", subnet="10.2.0.0/24"))
    rig.source.start()
    wait(lambda: rig.target.names() == ["one", "two"], "applied")
    rig.etcd.disconnect()
    wait(lambda: rig.source.state()["state"] == "disconnected", "disconnected")
    with rig.etcd.lock:  # while it is away, a change, then a compaction
        rig.etcd.down = False
        rig.etcd.revision += 1
        del rig.etcd.kvs[key("two")]
        rig.etcd.compacted = rig.etcd.revision
        rig.etcd.history.clear()
    wait(lambda: rig.target.names() == ["one"], "relisted")
    assert any(c == f"list {LAYOUT.device('a')}" for c in rig.etcd.calls[1:])


def test_offline_keeps_serving_and_says_since_when(rig: Rig) -> None:
    rig.etcd.put(key("one"), ni("one"))
    rig.source.start()
    wait(lambda: rig.source.state()["state"] == "connected", "connected")
    wait(lambda: rig.target.names() == ["one"], "applied")
    before = time.time()
    rig.etcd.disconnect()
    wait(lambda: rig.source.state()["state"] == "disconnected", "disconnected")
    s = rig.source.state()
    assert s["since"] >= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before - 1))
    assert "fake etcd" in s["error"]
    assert rig.source.describe().startswith("etcd: disconnected since ")
    time.sleep(0.1)  # several retries, all failing
    assert rig.target.names() == ["one"]  # nothing removed while offline
    rig.etcd.reconnect()
    rig.etcd.put(key("two"), ni("two", subnet="10.2.0.0/24"))
    wait(lambda: rig.target.names() == ["one", "two"], "change after reconnect")
    assert rig.source.state()["state"] == "connected"


def test_state_of_another_device_is_not_reused(tmp_path: Path) -> None:
    (tmp_path / "fleet.json").write_text(json.dumps(
        {"format": 1, "prefix": "/nr", "device": "zz", "revision": 99, "applied": {},
         "rejected": {}}))
    rig = Rig(tmp_path)
    assert rig.source.saved.revision == 0
    (tmp_path / "fleet.json").write_text("{torn")
    assert rig.make().saved.revision == 0


def test_status_is_written_under_the_lease_and_only_when_it_changes(rig: Rig) -> None:
    rig.etcd.put(key("one"), ni("one"))
    rig.etcd.put(key("bad"), ni("bad", subnet="nope"))
    rig.etcd.put(LAYOUT.ni_status("a", "gone"), "{}")  # a leftover of an earlier run
    rig.source.start()
    wait(lambda: LAYOUT.ni_status("a", "one") in rig.etcd.kvs, "status written")
    wait(lambda: LAYOUT.ni_status("a", "gone") not in rig.etcd.kvs, "leftover removed")
    one = json.loads(rig.etcd.kvs[LAYOUT.ni_status("a", "one")].value)
    assert one == {"name": "one", "state": "running", "reason": "", "pid": one["pid"],
                   "apps": 0, "vpn": None, "applied": rig.etcd.kvs[key("one")].mod_revision}
    bad = json.loads(rig.etcd.kvs[LAYOUT.ni_status("a", "bad")].value)
    assert bad["state"] == "rejected" and "'nope' is not" in bad["reason"]
    summary = json.loads(rig.etcd.kvs[LAYOUT.summary("a")].value)
    assert summary["nis"] == 2 and summary["running"] == 1 and summary["rejected"] == 1
    lease = rig.etcd.kvs[LAYOUT.summary("a")].lease
    assert lease and all(kv.lease == lease for k, kv in rig.etcd.kvs.items()
                         if k.startswith(LAYOUT.status("a")))
    wait(lambda: json.loads(rig.etcd.kvs[LAYOUT.summary("a")].value)["connectedSince"],
         "summary says since when it is connected")
    writes = rig.etcd.calls.count("write status of a")
    time.sleep(0.3)  # several status periods, nothing changed
    assert rig.etcd.calls.count("write status of a") == writes
    rig.etcd.expire(lease)  # as after a long cut: etcd dropped the lease and its keys
    wait(lambda: LAYOUT.summary("a") in rig.etcd.kvs, "status rewritten under a new lease")
    wait(lambda: LAYOUT.ni_status("a", "one") in rig.etcd.kvs, "NI status rewritten")
    assert rig.etcd.kvs[LAYOUT.summary("a")].lease != lease


def test_stop_is_prompt(rig: Rig) -> None:
    rig.source.start()
    wait(lambda: rig.source.state()["state"] == "connected", "connected")
    t0 = time.monotonic()
    rig.source.stop(timeout=5)
    assert time.monotonic() - t0 < 3.0  # no thread waits out a period or a backoff
    assert not any(t.is_alive() for t in rig.source.threads)
