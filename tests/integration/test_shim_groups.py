"""NI tasks share runc shims (shimGroupSize): fewer processes, and a shim killed takes its
group down, which the supervisor brings back within seconds.

A lab device with 6 NIs, shimGroupSize 3, one app plugged into each NI.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.memory import ppid
from runner.drivers.dhcp import DhcpError, acquire
from runner.image.build import build_image
from runner.lab.topology import INET_IP, Lab, wait_for
from tests.integration.conftest import RUN_ID

R = RUN_ID
NIS = [f"g{i}-{R}" for i in range(6)]
GROUP = 3


def manifest(name: str) -> str:
    return (f"apiVersion: nirunner/v1\nkind: NetworkInstance\nmetadata: {{name: {name}}}\n"
            f"spec:\n  type: local\n  uplink: eth0\n  subnet: 10.1.0.0/24\n"
            f"  dns: {{upstream: [{INET_IP}]}}\n")


class Site:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.apps: dict[str, str] = {}  # NI -> its app's netns
        self.macs: dict[str, str] = {}  # NI -> its app's MAC

    def status(self) -> dict[str, dict]:
        return {s["name"]: s for s in json.loads(self.lab.cli("status", "--json").stdout)}

    def pids(self) -> dict[str, int]:
        return {n: s["task"]["pid"] for n, s in self.status().items()}

    def shims(self) -> dict[int, set[str]]:
        """Shim PID -> the NIs whose task it serves (a task's init is the shim's child)."""
        out: dict[int, set[str]] = {}
        for name, pid in self.pids().items():
            out.setdefault(ppid(pid), set()).add(name)
        return out

    def answers_dhcp(self, name: str) -> bool:
        try:
            acquire(f"/run/netns/{self.apps[name]}", "eth0", self.macs[name], timeout=0.5)
            return True
        except DhcpError:
            return False


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    lab = Lab(f"nrg{R}", image_archive=str(build_image().archive))
    try:
        lab.build()
        lab.start_dns({"www.example.test": INET_IP})
        lab.start_containerd()
        lab.write_config(lab.image)
        with open(lab.config_path, "a") as f:
            f.write(f"shimGroupSize: {GROUP}\n")
        lab.start_supervisor()
        s = Site(lab)
        nis = lab.base / "nis.yaml"
        nis.write_text("---\n".join(manifest(n) for n in NIS))
        lab.cli("apply", "-f", str(nis))
        for i, name in enumerate(NIS):
            s.apps[name] = lab.app(f"a{i}", name)
        s.macs = {n: st["attached"][0]["mac"] for n, st in s.status().items()}
        wait_for(lambda: all(st["state"] == "running" for st in s.status().values()), 30,
                 "every NI running")
        yield s
    finally:
        lab.teardown()


def test_tasks_share_shims_in_groups(site: Site) -> None:
    shims = site.shims()
    assert sorted(len(v) for v in shims.values()) == [GROUP, GROUP], shims
    for pid in shims:
        assert b"containerd-shim-runc-v2" in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert all(site.answers_dhcp(n) for n in NIS)


def test_a_shared_shim_killed_its_group_is_back_within_3s(site: Site) -> None:
    shims = site.shims()
    victim, group = next(iter(shims.items()))
    others = set(NIS) - group
    before = site.pids()
    os.kill(victim, signal.SIGKILL)
    t0 = time.monotonic()
    for name in sorted(group):  # a new task (the old one may still answer a moment:
        # containerd takes the group's tasks down once it sees their shim gone)
        wait_for(lambda n=name: site.pids().get(n) not in (None, 0, before[n])
                 and site.answers_dhcp(n), 10, f"{name}'s new task serving DHCP")
    took = time.monotonic() - t0
    print(f"a shared shim killed: its {len(group)} NIs serve DHCP again after {took:.2f}s")
    assert took <= 3.0
    after = site.pids()
    assert all(after[n] != before[n] for n in group)
    assert all(after[n] == before[n] for n in others)  # the other group never noticed
    assert all(s["state"] == "running" for s in site.status().values())
    assert sorted(len(v) for v in site.shims().values()) == [GROUP, GROUP]
