"""Issue 14 end to end: three lab devices, each with its own supervisor (and private
containerd), driven from a 3-member etcd in lab namespaces, with real traffic.

    1. fleet apply to device A creates its NIs (traffic), B and C unchanged; status of all
    2. the etcd member A watches is killed: changes still flow; back: nothing lost
    3. device B cut off for 60 s while its desired state changes: keeps serving (traffic),
       says disconnected; link back: the change is applied within 2 s, status reappears
    4. an invalid field: its status says why, nothing applied, other NIs untouched
    5. C's supervisor killed: its status keys vanish after the TTL; restarted while etcd
       is unreachable: its NIs are rebuilt from the local store (traffic)
    6. RBAC: A's credentials cannot read B's prefix
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from runner.fleet.keys import Layout
from runner.fleet.rbac import device_user
from runner.image.build import build_image
from runner.lab.etcd import EtcdLab, in_netns
from runner.lab.topology import INET_IP, Lab
from tests.integration.conftest import RUN_ID
from tests.integration.fleet_lab import fleet, fleet_status, manifest, wait_until

R = RUN_ID
OP = "nirunner-operator"
TTL = 5
DEVICES = ("a", "b", "c")


def ni(device: str, n: int) -> str:
    return f"{device}{n}-{R}"  # NI netns names are machine-wide: unique per run and device


class Fleet:
    def __init__(self) -> None:
        self.etcd = EtcdLab(f"nrh{R}", size=3)
        self.devices = {d: Lab(f"nh{R}{d}", image_archive=str(build_image().archive))
                        for d in DEVICES}
        self.op = ""
        self.apps: dict[str, str] = {}

    def build(self) -> None:
        self.etcd.build()
        self.etcd.start()
        self.op = self.etcd.host("op", 100)
        fleet(self.etcd, "root", "rbac", "init", netns=self.op)
        for i, (d, lab) in enumerate(self.devices.items()):
            fleet(self.etcd, "root", "rbac", "add-device", d, netns=self.op)
            lab.build()
            lab.serve(lab.inet, "tcp", 7000, "inet")
            self.etcd.attach(lab.device, "fleet0", 101 + i)
            lab.start_containerd()
            lab.write_config(lab.image)
            cert = self.etcd.client_cert(device_user(d))
            with open(lab.config_path, "a") as f:
                f.write("source:\n  etcd:\n"
                        f"    endpoints: [{', '.join(self.etcd.endpoints)}]\n"
                        f"    device: {d}\n    statusTTL: {TTL}\n"
                        f"    tls: {{ca: {self.etcd.ca}, cert: {cert.cert}, key: {cert.key}}}\n")
            lab.start_supervisor()

    def teardown(self) -> None:
        for lab in self.devices.values():
            lab.teardown()
        self.etcd.teardown()

    def apply(self, device: str, *docs: str,
              check: bool = True) -> subprocess.CompletedProcess[str]:
        path = self.etcd.base / f"apply-{device}.yaml"
        path.write_text("---\n".join(docs))
        return fleet(self.etcd, OP, "apply", "--device", device, "-f", str(path),
                     netns=self.op, check=check)

    def put_raw(self, device: str, name: str, text: str) -> None:
        """Store a document as any etcd client could, without nirunner's checks."""
        cert = self.etcd.client_cert(OP)
        script = ("import sys\nfrom runner.fleet.etcd import Etcd, TlsFiles\n"
                  f"Etcd({self.etcd.endpoints!r}, TlsFiles({self.etcd.ca!r}, {cert.cert!r}, "
                  f"{cert.key!r})).put(sys.argv[1], sys.stdin.read())\n")
        subprocess.run(in_netns(self.op, [sys.executable, "-c", script,
                                          Layout("/nirunner").ni(device, name)]),
                       input=text, text=True, check=True, timeout=30)

    def status(self) -> dict[str, dict]:
        return fleet_status(self.etcd, netns=self.op)

    def local(self, device: str) -> dict[str, dict]:
        out = self.devices[device].cli("status", "--json").stdout
        return {s["name"]: s for s in json.loads(out)}

    def plug(self, device: str, app: str, name: str) -> str:
        lab = self.devices[device]
        ns = lab.app(app, name)
        lab.dhcp(ns, app)
        self.apps[app] = ns
        return ns

    def reaches_inet(self, device: str, app: str) -> bool:
        reply = self.devices[device].connect(self.apps[app], "tcp", INET_IP, 7000)
        return reply == "inet sees 198.51.100.2"

    def supervisor_log(self, device: str) -> str:
        return (self.devices[device].base / "supervisor.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def lab() -> Iterator[Fleet]:
    f = Fleet()
    try:
        f.build()
        for d in ("b", "c"):
            f.apply(d, manifest(ni(d, 1), "10.1.0.0/24"))
        for d in ("b", "c"):
            wait_until(lambda d=d: ni(d, 1) in f.local(d), f"{d}'s first NI", 60)  # type: ignore[misc]
            f.plug(d, f"app{d}", ni(d, 1))
        yield f
    finally:
        f.teardown()


def test_1_apply_to_a_creates_its_nis_b_and_c_unchanged(lab: Fleet) -> None:
    before = {d: lab.local(d) for d in ("b", "c")}
    lab.apply("a", manifest(ni("a", 1), "10.1.0.0/24", port=8080),
              manifest(ni("a", 2), "10.1.0.0/24"))
    wait_until(lambda: {ni("a", 1), ni("a", 2)} <= set(lab.local("a")), "a's NIs", 60)
    wait_until(lambda: lab.local("a")[ni("a", 1)]["state"] == "running", "a1 running", 60)
    lab.plug("a", "appa", ni("a", 1))
    assert lab.reaches_inet("a", "appa")
    for d in ("b", "c"):
        now = lab.local(d)
        assert set(now) == set(before[d])
        assert all(now[n]["task"]["pid"] == before[d][n]["task"]["pid"] for n in now)
    st = wait_until(lambda: (s := lab.status()) and all(s[d]["online"] for d in DEVICES)
                    and len(s["a"]["nis"]) == 2 and s, "all three in fleet status", 20)
    assert {n["name"]: n["state"] for n in st["a"]["nis"]} == {
        ni("a", 1): "running", ni("a", 2): "running"}
    assert st["a"]["nis"][0]["apps"] >= 0 and st["b"]["summary"]["nis"] == 1


def test_2_member_killed_changes_still_flow_member_back_nothing_lost(lab: Fleet) -> None:
    state = json.loads((lab.devices["a"].state_dir / "fleet.json").read_text())
    revision = state["revision"]
    victim = lab.etcd.members[0]
    lab.etcd.kill_member(victim)
    try:
        lab.apply("a", manifest(ni("a", 3), "10.3.0.0/24"))
        wait_until(lambda: ni("a", 3) in lab.local("a"), "a3 created with a member down", 60)
    finally:
        lab.etcd.restart_member(victim)
    kept = fleet_status(lab.etcd, netns=lab.op, endpoints=[victim.client_url])
    assert ni("a", 3) in kept["a"]["desired"]
    assert json.loads((lab.devices["a"].state_dir / "fleet.json").read_text())["revision"] \
        > revision


def test_3_device_cut_off_for_60s_keeps_serving_and_catches_up(lab: Fleet) -> None:
    b = lab.devices["b"]
    lab.etcd.set_link(b.device, up=False)
    try:
        lab.apply("b", manifest(ni("b", 2), "10.2.0.0/24"))
        wait_until(lambda: "serving the local store" in lab.supervisor_log("b"),
                   "b says it is disconnected", 30)
        wait_until(lambda: not lab.status()["b"]["online"], "b's status expires", TTL + 10)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            assert lab.reaches_inet("b", "appb")  # old NIs keep serving
            time.sleep(5)
        assert ni("b", 2) not in lab.local("b")
    finally:
        lab.etcd.set_link(b.device, up=True)
        t0 = time.monotonic()
    wait_until(lambda: ni("b", 2) in lab.local("b"), "b catches up", 10, step=0.05)
    took = time.monotonic() - t0
    wait_until(lambda: lab.status()["b"]["online"], "b's status back", 10)
    print(f"b: change applied {took:.2f}s after the link came back")
    assert took < 2.0, f"change applied {took:.2f}s after the link came back"


def test_4_invalid_field_reported_nothing_applied_others_untouched(lab: Fleet) -> None:
    pid = lab.local("c")[ni("c", 1)]["task"]["pid"]
    bad = manifest(ni("c", 2), "10.2.0.0/24").replace("subnet: 10.2.0.0/24",
                                                       "subnet: 10.2.0.0/24\n  mtu: 99999")
    refused = lab.apply("c", bad, check=False)
    assert refused.returncode == 1 and "spec.mtu" in refused.stderr  # the CLI checks first
    lab.put_raw("c", ni("c", 2), bad)  # a client that does not check (etcdctl, a controller)
    st = wait_until(lambda: next((n for n in lab.status()["c"]["nis"]
                                  if n["name"] == ni("c", 2)), None), "c2 reported", 20)
    assert st["state"] == "rejected" and "spec.mtu 99999 is out of range" in st["reason"]
    assert ni("c", 2) not in lab.local("c")
    assert lab.local("c")[ni("c", 1)]["task"]["pid"] == pid
    assert lab.reaches_inet("c", "appc")


def test_5_dead_supervisor_status_vanishes_restart_offline_rebuilds(lab: Fleet) -> None:
    c = lab.devices["c"]
    c.stop_supervisor(signal.SIGKILL)
    t0 = time.monotonic()
    wait_until(lambda: not lab.status()["c"]["online"], "c's status expires", TTL + 10)
    assert time.monotonic() - t0 > 1
    lab.etcd.set_link(c.device, up=False)
    try:
        c.start_supervisor()
        wait_until(lambda: lab.local("c").get(ni("c", 1), {}).get("state") == "running",
                   "c1 served from the local store, offline", 60)
        assert lab.reaches_inet("c", "appc")
    finally:
        lab.etcd.set_link(c.device, up=True)
    wait_until(lambda: lab.status()["c"]["online"], "c's status back", 20)


def test_6_rbac_a_cannot_read_b(lab: Fleet) -> None:
    a = lab.devices["a"]
    res = fleet(lab.etcd, device_user("a"), "status", "--device", "b", netns=a.device,
                check=False)
    assert res.returncode == 1 and "permission denied" in res.stderr

