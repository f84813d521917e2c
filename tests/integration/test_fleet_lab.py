"""A fleet lab in network namespaces: a 3-member etcd with TLS (each member in its
own netns), an operator netns running `nirunner fleet`, and simulated devices, each
in its own netns running a real FleetSource (runner.lab.fleetdevice) whose target
validates and records like the supervisor does, without building NIs.

Covers issue 14's RBAC (6), member kill (2), and the source's side of a device cut
off (3) and of a dead device's status (5); tests/integration/fleet_supervisor_pending.py
has the same scenarios with real supervisors, for when the supervisor implements
the source's Target.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runner.fleet.rbac import device_user
from runner.lab.etcd import EtcdLab, in_netns
from tests.integration.conftest import RUN_ID
from tests.integration.fleet_lab import fleet, fleet_status, manifest, wait_until

OP = "nirunner-operator"
TTL = 5  # seconds: the devices' status lease


@dataclass
class Device:
    id: str
    netns: str
    store: Path
    proc: subprocess.Popen[bytes] | None = None

    def applied(self) -> list[str]:
        return sorted(p.stem for p in (self.store / "nis").glob("*.yaml"))

    def source(self) -> dict[str, Any]:
        try:
            return json.loads((self.store / "source.json").read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return {}


class FleetLab:
    def __init__(self) -> None:
        self.etcd = EtcdLab(f"nrg{RUN_ID}", size=3)
        self.devices: dict[str, Device] = {}
        self.op = ""

    def build(self) -> None:
        self.etcd.build()
        self.etcd.start()
        self.op = self.etcd.host("op", 100)
        fleet(self.etcd, "root", "rbac", "init", netns=self.op)
        for i, d in enumerate(("a", "b")):
            fleet(self.etcd, "root", "rbac", "add-device", d, netns=self.op)
            ns = self.etcd.host(f"d{d}", 101 + i)
            self.devices[d] = Device(d, ns, self.etcd.base / f"device-{d}")
            self.start_device(d)

    def start_device(self, d: str, wait: bool = True) -> None:
        dev = self.devices[d]
        cert = self.etcd.client_cert(device_user(d))
        dev.store.mkdir(parents=True, exist_ok=True)
        config = dev.store / "supervisor.yaml"
        config.write_text(
            f"stateDir: {dev.store}\n"
            "uplinks: [{name: eth0, interface: eth0}]\n"
            "source:\n  etcd:\n"
            f"    endpoints: [{', '.join(self.etcd.endpoints)}]\n"
            f"    device: {d}\n    prefix: /nirunner\n    statusTTL: {TTL}\n"
            f"    tls: {{ca: {self.etcd.ca}, cert: {cert.cert}, key: {cert.key}}}\n")
        log = open(dev.store / "device.log", "ab")  # noqa: SIM115 - the child owns it
        dev.proc = subprocess.Popen(
            in_netns(dev.netns, [sys.executable, "-m", "runner.lab.fleetdevice", "--config",
                                 str(config), "--store", str(dev.store),
                                 "--status-every", "0.5"]),
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        if wait:
            wait_until(lambda: dev.source().get("state") == "connected",
                       f"device {d} connected", 30)

    def stop_device(self, d: str, sig: int = signal.SIGKILL) -> None:
        dev = self.devices[d]
        if dev.proc is not None and dev.proc.poll() is None:
            os.killpg(dev.proc.pid, sig)
            dev.proc.wait(10)
        dev.proc = None
        with contextlib.suppress(FileNotFoundError):
            (dev.store / "source.json").unlink()

    def teardown(self) -> None:
        for d in list(self.devices):
            with contextlib.suppress(Exception):
                self.stop_device(d)
        self.etcd.teardown()

    def apply(self, device: str, *docs: str, user: str = OP,
              check: bool = True) -> subprocess.CompletedProcess[str]:
        path = self.etcd.base / f"apply-{device}.yaml"
        path.write_text("---\n".join(docs))
        return fleet(self.etcd, user, "apply", "--device", device, "-f", str(path),
                     netns=self.op, check=check)

    def status(self) -> dict[str, Any]:
        return fleet_status(self.etcd, netns=self.op)


@pytest.fixture(scope="module")
def lab() -> Iterator[FleetLab]:
    lab = FleetLab()
    try:
        lab.build()
        yield lab
    finally:
        lab.teardown()


def test_apply_reaches_only_its_device_and_status_shows_all(lab: FleetLab) -> None:
    out = lab.apply("a", manifest("factory", "10.1.0.0/24", port=8080),
                    manifest("lab", "10.1.0.0/24")).stdout
    assert "a/factory: created" in out and "a/lab: created" in out
    a, b = lab.devices["a"], lab.devices["b"]
    wait_until(lambda: a.applied() == ["factory", "lab"], "a applied", 10)
    assert b.applied() == []
    st = wait_until(lambda: (s := lab.status()) and len(s["a"]["nis"]) == 2 and s, "a's status",
                    10)
    assert st["a"]["online"] and st["b"]["online"]
    assert st["a"]["desired"] == ["factory", "lab"]
    assert {n["name"]: n["state"] for n in st["a"]["nis"]} == {"factory": "running",
                                                               "lab": "running"}
    table = fleet(lab.etcd, OP, "status", netns=lab.op).stdout
    assert table.splitlines()[0].split()[:2] == ["DEVICE", "STATUS"]
    assert any(line.split()[:2] == ["a", "online"] for line in table.splitlines())
    assert any(line.split()[:2] == ["b", "online"] for line in table.splitlines())
    # unchanged documents are not written again
    again = lab.apply("a", manifest("factory", "10.1.0.0/24", port=8080)).stdout
    assert "a/factory: unchanged" in again and "revision" not in again
    # a bad manifest is refused by the CLI before etcd sees it
    bad = lab.apply("a", manifest("x", "10.1.0.0/24", port=8080), check=False)
    assert bad.returncode == 1 and "8080" in bad.stderr and "already mapped" in bad.stderr


def test_rbac_device_a_cannot_read_b_or_write_its_own_desired_state(lab: FleetLab) -> None:
    lab.apply("b", manifest("site", "10.5.0.0/24"))
    wait_until(lambda: lab.devices["b"].applied() == ["site"], "b applied", 10)
    a = lab.devices["a"]
    res = fleet(lab.etcd, device_user("a"), "status", "--device", "b", netns=a.netns, check=False)
    assert res.returncode == 1 and "permission denied" in res.stderr
    assert "/nirunner/devices/b/" in res.stderr
    res = lab.apply("a", manifest("evil", "10.9.0.0/24"), user=device_user("a"), check=False)
    assert res.returncode == 1 and "permission denied" in res.stderr
    res = fleet(lab.etcd, device_user("a"), "delete", "--device", "b", "site", netns=a.netns,
                check=False)
    assert res.returncode == 1 and "permission denied" in res.stderr
    assert lab.devices["b"].applied() == ["site"]


def test_member_killed_changes_flow_member_back_nothing_lost(lab: FleetLab) -> None:
    a = lab.devices["a"]
    watched = a.source()["endpoint"]
    victim = next(m for m in lab.etcd.members if m.client_url == watched)
    lab.etcd.kill_member(victim)
    try:
        t0 = time.monotonic()
        lab.apply("a", manifest("extra", "10.2.0.0/24"))
        wait_until(lambda: "extra" in a.applied(), "change reaches a", 30)
        took = time.monotonic() - t0
        # it got there through another member (the source says so once its watch is up)
        wait_until(lambda: a.source()["endpoint"] != watched, "a on another member", 10)
        fleet(lab.etcd, OP, "delete", "--device", "a", "lab", netns=lab.op)
        wait_until(lambda: "lab" not in a.applied(), "delete reaches a", 10)
    finally:
        lab.etcd.restart_member(victim)
    kept = fleet_status(lab.etcd, netns=lab.op, endpoints=[victim.client_url])
    assert kept["a"]["desired"] == ["extra", "factory"]
    print(f"change applied {took:.2f}s after the watched member was killed (incl. CLI)")


def test_device_cut_off_keeps_its_nis_and_catches_up_on_return(lab: FleetLab) -> None:
    b = lab.devices["b"]
    before = b.applied()
    lab.etcd.set_link(b.netns, up=False)
    try:
        wait_until(lambda: b.source().get("state") == "disconnected", "b disconnected", 30)
        lab.apply("b", manifest("later", "10.6.0.0/24"))
        wait_until(lambda: not lab.status()["b"]["online"], "b's status to expire", TTL + 10)
        assert b.applied() == before  # still serving what it had
        assert b.source()["error"]
    finally:
        lab.etcd.set_link(b.netns, up=True)
        t0 = time.monotonic()
    wait_until(lambda: "later" in b.applied(), "change after reconnect", 15, step=0.05)
    took = time.monotonic() - t0
    wait_until(lambda: lab.status()["b"]["online"], "b's status back", 10)
    print(f"reconnected: change applied {took:.2f}s after the link came back")
    assert took < 2.0


def test_dead_device_status_vanishes_and_restart_offline_keeps_its_store(lab: FleetLab) -> None:
    a = lab.devices["a"]
    applied = a.applied()
    assert applied
    lab.stop_device("a", signal.SIGKILL)
    t0 = time.monotonic()
    wait_until(lambda: not lab.status()["a"]["online"], "a's status to expire", TTL + 10)
    assert time.monotonic() - t0 > 1
    lab.etcd.set_link(a.netns, up=False)
    try:
        lab.start_device("a", wait=False)
        wait_until(lambda: a.source().get("state") == "disconnected", "a up, offline", 15)
        time.sleep(3)  # several tries to reach etcd, all failing
        assert a.proc is not None and a.proc.poll() is None  # it keeps running
        assert a.source()["state"] == "disconnected" and a.source()["error"]
        assert a.applied() == applied  # rebuilt from its local store, nothing removed
    finally:
        lab.etcd.set_link(a.netns, up=True)
    wait_until(lambda: a.source().get("state") == "connected", "a reconnected", 15)
    wait_until(lambda: lab.status()["a"]["online"], "a's status back", 10)
    assert a.applied() == applied
