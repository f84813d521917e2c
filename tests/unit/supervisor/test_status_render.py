from __future__ import annotations

from pathlib import Path

from runner.cli.ni_commands import render_status
from runner.supervisor.status import leases, services


def test_leases_and_services_files(tmp_path: Path) -> None:
    (tmp_path / "l").write_text(
        "1900000000 02:00:00:00:00:10 10.1.0.10 plc 01:02:00:00:00:00:10\n"
        "1900000001 02:00:00:00:00:11 10.1.0.9 * *\n")
    assert [x["ip"] for x in leases(tmp_path / "l")] == ["10.1.0.9", "10.1.0.10"]
    assert leases(tmp_path / "l")[0]["hostname"] == ""
    assert leases(tmp_path / "missing") == []
    (tmp_path / "s").write_text("dnsmasq running pid=7 restarts=0 last_exit=-\n")
    assert services(tmp_path / "s") == {"dnsmasq": "running"}


def test_status_table() -> None:
    st = {
        "name": "factory", "type": "local", "state": "degraded", "reason": "dnsmasq backoff",
        "uplink": "eth0", "subnet": "10.1.0.0/24",
        "apps": [{"ip": "10.1.0.10", "mac": "02:00:00:00:00:10", "hostname": "plc"}],
        "portMaps": [{"name": "web", "protocol": "tcp", "uplinkPort": 8080, "target": "plc",
                      "targetIp": "10.1.0.10", "targetPort": 80}],
        "task": {"pid": 42, "restarts": 1},
        "usage": {"memory": 5 << 20, "memoryLimit": 64 << 20, "cpuSeconds": 0.5,
                  "cpuLimit": 0.25, "pidsLimit": 128},
    }
    out = render_status([st])
    header, row = out.splitlines()[:2]
    assert header.split()[:3] == ["NAME", "TYPE", "STATE"]
    assert row.split() == ["factory", "local", "degraded", "eth0", "10.1.0.0/24", "1", "1",
                           "42", "1", "5.0/64.0", "0.5/0.25"]
    assert "10.1.0.10  02:00:00:00:00:10  plc" in out
    assert "plc (10.1.0.10):80" in out
    assert out.rstrip().endswith("factory: degraded: dnsmasq backoff")


def test_switch_ni_status_table() -> None:
    st = {
        "name": "plant", "type": "switch", "state": "running", "reason": "", "uplink": "eth1",
        "subnet": "", "vlan": None,
        "apps": [{"ip": "203.0.113.114", "mac": "02:00:00:00:0e:10", "hostname": "",
                  "source": "dhcp", "port": "mv12345678"},
                 {"ip": "", "mac": "02:00:00:00:0e:11", "hostname": "hmi", "source": "",
                  "port": "mv9abcdef0"}],
        "portMaps": [], "task": {"pid": 42, "restarts": 0},
        "usage": {"memoryLimit": 32 << 20, "cpuLimit": 0.1, "pidsLimit": 32},
    }
    out = render_status([st])
    assert out.splitlines()[1].split()[:6] == ["plant", "switch", "running", "eth1",
                                               "(segment)", "2"]
    assert "203.0.113.114  02:00:00:00:0e:10  DHCP ACK      mv12345678  -" in out
    assert "-              02:00:00:00:0e:11  -             mv9abcdef0  hmi" in out
    assert "vlan 100" in render_status([{**st, "vlan": 100}]).splitlines()[1]
