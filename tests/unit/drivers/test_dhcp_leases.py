"""Taking a lease out of dnsmasq's lease file while dnsmasq does not run."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

from runner.drivers.dhcp import forget_lease


def test_forget_a_lease(tmp_path: Path) -> None:
    f = tmp_path / "dnsmasq.leases"
    keep = "1700000000 02:00:00:00:00:02 10.1.0.102 cli 01:02:00:00:00:00:02\n"
    f.write_text("0 02:00:00:00:00:01 10.1.0.101 web 01:02:00:00:00:00:01\n" + keep)
    assert forget_lease(str(f), "02:00:00:00:00:01", IPv4Address("10.1.0.101"))
    assert f.read_text() == keep
    assert not forget_lease(str(f), "02:00:00:00:00:01", IPv4Address("10.1.0.101"))
    assert not forget_lease(str(f), "02:00:00:00:00:02", IPv4Address("10.1.0.109"))  # not its
    assert not forget_lease(str(tmp_path / "none"), "02:00:00:00:00:01", IPv4Address("1.2.3.4"))
