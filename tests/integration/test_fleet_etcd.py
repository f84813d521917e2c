"""The etcd client, RBAC and FleetSource against a real 3-member etcd (Debian's
etcd-server) with TLS client certificates, its members on loopback: the test
process is a client itself. A recording target stands in for the supervisor."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.fleet import rbac
from runner.fleet.etcd import Etcd, PermissionDenied, TlsFiles, Unavailable
from runner.fleet.keys import Layout
from runner.fleet.source import FleetSource
from runner.lab.etcd import EtcdLab
from runner.lab.fleetdevice import RecordingTarget
from runner.model.types import EtcdSource, EtcdTls, SupervisorConfig, Uplink
from tests.integration.conftest import RUN_ID
from tests.integration.fleet_lab import fleet, fleet_status, manifest, wait_until

LAYOUT = Layout("/nirunner")
CONFIG = SupervisorConfig(uplinks=(Uplink("eth0", "eth0"),))


@pytest.fixture(scope="module")
def lab() -> Iterator[EtcdLab]:
    lab = EtcdLab(f"nrf{RUN_ID}", size=3, loopback=True)
    try:
        lab.build()
        lab.start()
        with client(lab, "root") as root:
            rbac.setup(root, LAYOUT)
            for device in ("a", "b", "c"):
                rbac.add_device(root, LAYOUT, device)
        yield lab
    finally:
        lab.teardown()


def client(lab: EtcdLab, user: str, endpoints: list[str] | None = None) -> Etcd:
    cert = lab.client_cert(user)
    return Etcd(endpoints or lab.endpoints, TlsFiles(lab.ca, cert.cert, cert.key), timeout=3)


def source_config(lab: EtcdLab, device: str, ttl: int = 10) -> EtcdSource:
    cert = lab.client_cert(rbac.device_user(device))
    return EtcdSource(tuple(lab.endpoints), device, "/nirunner",
                      EtcdTls(lab.ca, cert.cert, cert.key), ttl)


def test_keys_txn_and_leases(lab: EtcdLab) -> None:
    with client(lab, "root") as etcd:
        assert etcd.status().version.startswith("3.")
        assert len(etcd.members()) == 3
        rev = etcd.put("/t/one", "1")
        etcd.put("/t/two", b"2")
        assert etcd.get("/t/one").value == b"1"  # type: ignore[union-attr]
        kvs, at = etcd.get_prefix("/t/")
        assert [kv.key for kv in kvs] == ["/t/one", "/t/two"] and at >= rev + 1
        from runner.fleet.etcd import put_op, unchanged_since

        stale = etcd.txn([unchanged_since("/t/one", rev - 1)], [put_op("/t/one", "x")])
        assert not stale.succeeded and etcd.get("/t/one").value == b"1"  # type: ignore[union-attr]
        fresh = etcd.txn([unchanged_since("/t/one", rev)], [put_op("/t/one", "y")])
        assert fresh.succeeded and etcd.get("/t/one").value == b"y"  # type: ignore[union-attr]
        lease, ttl = etcd.lease_grant(5)
        assert ttl == 5 and etcd.lease_keepalive(lease) == 5
        etcd.put("/t/leased", "v", lease=lease)
        etcd.lease_revoke(lease)
        assert etcd.get("/t/leased") is None
        assert etcd.lease_keepalive(lease) <= 0
        assert etcd.delete("/t/", prefix=True) == 2


def test_rbac_a_device_reads_only_its_own_and_writes_only_its_status(lab: EtcdLab) -> None:
    with client(lab, "nirunner-operator") as op:
        op.put(LAYOUT.ni("a", "x"), "{}")
        op.put(LAYOUT.ni("b", "y"), "{}")
        with pytest.raises(PermissionDenied, match="permission denied"):
            op.put(LAYOUT.summary("a"), "{}")  # operators do not forge status
    with client(lab, rbac.device_user("a")) as dev:
        kvs, _ = dev.get_prefix(LAYOUT.device("a"))
        assert [kv.key for kv in kvs] == [LAYOUT.ni("a", "x")]
        with pytest.raises(PermissionDenied) as e:
            dev.get_prefix(LAYOUT.device("b"))
        assert "list /nirunner/devices/b/" in str(e.value) and "refused" in str(e.value)
        with pytest.raises(PermissionDenied):
            dev.get_prefix(LAYOUT.devices())
        with pytest.raises(PermissionDenied):
            dev.put(LAYOUT.ni("a", "x"), "{}")  # its desired state is the operator's
        dev.put(LAYOUT.summary("a"), "{}")
        with pytest.raises(PermissionDenied):
            dev.put(LAYOUT.summary("b"), "{}")
        with pytest.raises(PermissionDenied):
            dev.watch(LAYOUT.device("b"), 0)
        dev.delete(LAYOUT.summary("a"))
    with client(lab, "root") as root:
        root.delete(LAYOUT.devices(), prefix=True)
    # a certificate of a user etcd does not know
    with client(lab, "stranger") as nobody, pytest.raises(PermissionDenied):
        nobody.get_prefix(LAYOUT.device("a"))


def test_source_applies_refuses_reports_and_its_status_expires(lab: EtcdLab,
                                                               tmp_path: Path) -> None:
    fleet(lab, "nirunner-operator", "apply", "--device", "a", "-f",
          str(_write(tmp_path, "good.yaml", manifest("good", "10.1.0.0/24", port=8080))))
    target = RecordingTarget(CONFIG)
    source = FleetSource(source_config(lab, "a", ttl=5), target, tmp_path / "a",
                         status_every=0.2)
    source.start()
    try:
        wait_until(lambda: target.names() == ["good"], "good applied", 10)
        # a resource with an invalid field: refused with the reason, the rest untouched
        with client(lab, "nirunner-operator") as op:
            op.put(LAYOUT.ni("a", "bad"), manifest("bad", "10.2.0.0/24").replace(
                "subnet: 10.2.0.0/24", "subnet: 10.2.0.0/24\n  mtu: 99999"))
        st = wait_until(lambda: _ni_status(lab, "a", "bad"), "bad reported", 10)
        assert st["state"] == "rejected" and "spec.mtu 99999 is out of range" in st["reason"]
        assert "(line 9)" in st["reason"]
        assert target.names() == ["good"]
        assert _ni_status(lab, "a", "good")["state"] == "running"
        devices = fleet_status(lab)
        assert devices["a"]["online"] and devices["a"]["summary"]["rejected"] == 1
        text = fleet(lab, "nirunner-operator", "status", "--device", "a").stdout
        assert "a/bad: rejected: /nirunner/devices/a/networkinstances/bad: bad: spec.mtu" in text
    finally:
        source.stop()  # as if the device died: the lease is not revoked
    t0 = time.monotonic()
    wait_until(lambda: not fleet_status(lab)["a"]["online"], "a's status to expire", 15)
    assert time.monotonic() - t0 > 2  # it is the lease that removed it, not the stop
    with client(lab, "root") as root:
        assert root.get_prefix(LAYOUT.status("a"))[0] == []
        root.delete(LAYOUT.devices(), prefix=True)


def test_member_killed_changes_still_flow_and_nothing_is_lost(lab: EtcdLab,
                                                            tmp_path: Path) -> None:
    target = RecordingTarget(CONFIG)
    source = FleetSource(source_config(lab, "b"), target, tmp_path / "b", status_every=0.2)
    source.start()
    try:
        with client(lab, "nirunner-operator") as op:
            op.put(LAYOUT.ni("b", "one"), manifest("one", "10.1.0.0/24"))
            wait_until(lambda: target.names() == ["one"], "one applied", 10)
            watched = wait_until(lambda: source.state()["endpoint"], "b watching", 10)
            victim = next(m for m in lab.members if m.client_url == watched)
            lab.kill_member(victim)
            t0 = time.monotonic()
            op.put(LAYOUT.ni("b", "two"), manifest("two", "10.2.0.0/24"))
            wait_until(lambda: target.names() == ["one", "two"], "two applied", 30)
            took = time.monotonic() - t0
            assert source.state()["endpoint"] != watched
            op.delete(LAYOUT.ni("b", "one"))
            wait_until(lambda: target.names() == ["two"], "one deleted", 10)
        lab.restart_member(victim)
        # the member that was away has everything it missed, read through it alone
        with client(lab, "nirunner-operator", [victim.client_url]) as only:
            kvs, _ = only.get_prefix(LAYOUT.device("b"))
            assert [kv.key for kv in kvs] == [LAYOUT.ni("b", "two")]
        print(f"change applied {took:.2f}s after the watched member was killed")
    finally:
        source.stop()
        with client(lab, "root") as root:
            root.delete(LAYOUT.devices(), prefix=True)


def test_compacted_while_stopped_means_relist(lab: EtcdLab, tmp_path: Path) -> None:
    target = RecordingTarget(CONFIG, tmp_path / "store")
    config = source_config(lab, "c")
    with client(lab, "nirunner-operator") as op:
        op.put(LAYOUT.ni("c", "one"), manifest("one", "10.1.0.0/24"))
        op.put(LAYOUT.ni("c", "two"), manifest("two", "10.2.0.0/24"))
        source = FleetSource(config, target, tmp_path / "c")
        source.start()
        wait_until(lambda: target.names() == ["one", "two"], "both applied", 10)
        source.stop()
        op.delete(LAYOUT.ni("c", "two"))
        op.put(LAYOUT.ni("c", "three"), manifest("three", "10.3.0.0/24"))
    with client(lab, "root") as root:
        rev = root.put("/t/compact-here", "x")
        root.compact(rev)
    source = FleetSource(config, target, tmp_path / "c")
    assert source.saved.revision < rev
    source.start()
    try:
        wait_until(lambda: target.names() == ["one", "three"], "relisted", 10)
        saved = json.loads((tmp_path / "c" / "fleet.json").read_text())
        assert saved["revision"] >= rev
        assert oct(os.stat(tmp_path / "c" / "fleet.json").st_mode & 0o777) == "0o600"
    finally:
        source.stop()
        with client(lab, "root") as root:
            root.delete(LAYOUT.devices(), prefix=True)


def test_no_endpoint_answers(lab: EtcdLab) -> None:
    dead = ["https://127.0.0.1:9", "https://127.0.0.1:10"]
    with client(lab, "root", dead) as etcd, pytest.raises(Unavailable) as e:
        etcd.get("/x")
    assert "no etcd endpoint answered" in str(e.value) and "127.0.0.1:10" in str(e.value)


def _write(d: Path, name: str, text: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(text)
    return d / name


def _ni_status(lab: EtcdLab, device: str, name: str) -> dict[str, object] | None:
    with client(lab, "nirunner-operator") as op:
        kv = op.get(LAYOUT.ni_status(device, name))
    return json.loads(kv.value) if kv else None
