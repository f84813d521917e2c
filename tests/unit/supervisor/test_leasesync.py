"""Leases followed into the edge and ACL tables: what is applied for new, renewed and gone
leases, and a full sync from what the tables hold (fakes for nft and the kernel)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runner.drivers.edge import AclView, EdgeView
from runner.errors import NirunnerError
from runner.supervisor.leasesync import Applied, LeaseSync, changes, hostnames, read_file

PLC, HMI = "02:00:00:00:00:10", "02:00:00:00:00:11"


def lease_file(path: Path, *lines: tuple[int, str, str, str]) -> None:
    path.write_text("".join(f"{end} {mac} {ip} {name} 01:{mac}\n"
                            for end, mac, ip, name in lines))


def test_read_file_keeps_live_ipv4_leases(tmp_path: Path) -> None:
    now = int(time.time())
    f = tmp_path / "dnsmasq.leases"
    lease_file(f, (now + 600, PLC, "10.1.0.100", "plc"), (now - 5, HMI, "10.1.0.101", "hmi"),
               (0, "02:00:00:00:00:12", "10.1.0.102", "*"))
    found = read_file(f, now)
    assert set(found) == {(PLC, "10.1.0.100"), ("02:00:00:00:00:12", "10.1.0.102")}
    assert found[(PLC, "10.1.0.100")][1] == now + 600
    assert found[("02:00:00:00:00:12", "10.1.0.102")][0].seconds == 0  # infinite
    assert hostnames(f) == {PLC: "plc", HMI: "hmi"}
    f.write_text(f"{now + 60} {PLC} 10.1.0.100 \x1b[2J 01:x\n")
    assert hostnames(f) == {}  # not a name: not shown anywhere
    assert read_file(tmp_path / "missing", now) == {}


def test_changes_for_new_renewed_and_gone_leases(tmp_path: Path) -> None:
    now = int(time.time())
    f = tmp_path / "l"
    lease_file(f, (now + 600, PLC, "10.1.0.100", "plc"))
    text, applied = changes({}, read_file(f, now), {PLC: "plc"})
    assert "add element bridge edge mac_ip { 02:00:00:00:00:10 . 10.1.0.100 timeout 600s }" \
        in text
    assert "add element inet acl ingress { 10.1.0.100 timeout 600s : jump in_plc }" in text
    assert applied == {(PLC, "10.1.0.100"): Applied(now + 600, "plc")}
    assert changes(applied, read_file(f, now), {PLC: "plc"})[0] == ""  # nothing new
    lease_file(f, (now + 900, PLC, "10.1.0.100", "plc"), (now + 60, HMI, "10.1.0.101", "hmi"))
    text, applied = changes(applied, read_file(f, now), {PLC: "plc"})
    assert "timeout 900s" in text and "10.1.0.101 timeout 60s" in text  # renewed, new
    assert "ingress { 10.1.0.101" not in text  # the hmi has no ACLs
    lease_file(f, (now + 900, PLC, "10.1.0.100", "plc"))
    kept, after = changes(applied, read_file(f, now), {PLC: "plc"}, deletes=False)
    assert kept == "" and after == applied  # gone leases wait for deletes
    text, after = changes(applied, read_file(f, now), {PLC: "plc"})
    assert "delete element bridge edge mac_ip { 02:00:00:00:00:11 . 10.1.0.101 }\n" in text
    assert text.endswith("delete element bridge edge acked { 0x020000000011 . 0x0a010065 }\n")
    assert set(after) == {(PLC, "10.1.0.100")}


def test_an_app_that_gains_acls_is_dispatched_anew(tmp_path: Path) -> None:
    now = int(time.time())
    f = tmp_path / "l"
    lease_file(f, (now + 600, HMI, "10.1.0.101", "hmi"))
    _, applied = changes({}, read_file(f, now), {})
    text, after = changes(applied, read_file(f, now), {HMI: "hmi"})
    assert "add element inet acl ingress { 10.1.0.101 timeout" in text
    assert after[(HMI, "10.1.0.101")].acl_app == "hmi"


class Kernel:
    def __init__(self, edge: EdgeView | None = None, acl: AclView | None = None,
                 fail: int = 0) -> None:
        self.edge, self.acl, self.fail = edge, acl, fail
        self.applied: list[str] = []

    def apply(self, text: str) -> None:
        self.applied.append(text)
        if self.fail:
            self.fail -= 1
            raise NirunnerError("No such file or directory")

    def read(self) -> tuple[EdgeView | None, AclView | None]:
        return self.edge, self.acl


def test_full_sync_removes_what_the_file_no_longer_has(tmp_path: Path) -> None:
    now = int(time.time())
    f = tmp_path / "l"
    lease_file(f, (now + 600, PLC, "10.1.0.100", "plc"))
    k = Kernel(EdgeView(leased={(HMI, "10.1.0.101"): 30, (PLC, "10.1.0.100"): 10}),
               AclView(leased={"10.1.0.101": "in_hmi", "10.1.0.100": "in_plc"}))
    sync = LeaseSync("n", f, {PLC: "plc"}, k.apply, k.read)
    sync.full()
    (text,) = k.applied
    assert "delete element bridge edge mac_ip { 02:00:00:00:00:11 . 10.1.0.101 }" in text
    assert "delete element inet acl ingress { 10.1.0.101 : jump in_hmi }" in text
    assert "10.1.0.100 : jump in_plc }\ndelete" in text  # the live one: set again
    assert set(sync.applied) == {(PLC, "10.1.0.100")}
    assert [x.ip.exploded for x in sync.leases()] == ["10.1.0.100"]


def test_a_failed_change_falls_back_to_a_full_sync(tmp_path: Path) -> None:
    now = int(time.time())
    f = tmp_path / "l"
    lease_file(f, (now + 600, PLC, "10.1.0.100", "plc"))
    k = Kernel(EdgeView(), AclView(), fail=1)
    sync = LeaseSync("n", f, {PLC: "plc"}, k.apply, k.read)
    sync.changed()
    assert len(k.applied) == 2 and sync.errors == 1  # the change, then the full sync
    assert set(sync.applied) == {(PLC, "10.1.0.100")}
    k.fail = 2
    with pytest.raises(NirunnerError):
        lease_file(f, (now + 700, PLC, "10.1.0.100", "plc"))
        sync.changed()  # the full sync fails too: the caller hears of it


def test_a_lease_of_a_fixed_address_is_left_to_its_port(tmp_path: Path) -> None:
    """DHCP gives a declared app its fixed address: that lease must not give the address
    a timeout (when it ended, the app would lose the address it always may use)."""
    now = int(time.time())
    f = tmp_path / "l"
    lease_file(f, (now + 600, PLC, "10.1.0.10", "plc"), (now + 600, HMI, "10.1.0.101", "hmi"))
    fixed = {(PLC, "10.1.0.10")}
    text, applied = changes({}, read_file(f, now), {PLC: "plc"}, fixed=fixed)
    assert "10.1.0.10 " not in text and "10.1.0.101 timeout" in text
    assert set(applied) == {(HMI, "10.1.0.101")}
    # one given a timeout before is made fixed again, not deleted
    k = Kernel(EdgeView(leased={(PLC, "10.1.0.10"): 300}), AclView())
    sync = LeaseSync("n", f, {PLC: "plc"}, k.apply, k.read, fixed)
    sync.full()
    (text,) = k.applied
    assert text.startswith(
        "add element bridge edge mac_ip { 02:00:00:00:00:10 . 10.1.0.10 }\n"
        "delete element bridge edge mac_ip { 02:00:00:00:00:10 . 10.1.0.10 }\n"
        "add element bridge edge mac_ip { 02:00:00:00:00:10 . 10.1.0.10 }\n")
    assert text.count("10.1.0.10 ") == 3
