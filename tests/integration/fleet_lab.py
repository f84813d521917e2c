"""Shared pieces of the fleet integration tests: manifests, waits, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from runner.lab.etcd import EtcdLab, in_netns


def manifest(name: str, subnet: str, port: int | None = None, uplink: str = "eth0") -> str:
    text = (f"apiVersion: nirunner/v1\nkind: NetworkInstance\nmetadata:\n  name: {name}\n"
            f"spec:\n  type: local\n  uplink: {uplink}\n  subnet: {subnet}\n")
    if port:
        base = subnet.rsplit(".", 1)[0]
        text += ("  dhcp:\n    reservations:\n"
                 f"      - {{name: web, mac: '02:00:00:00:00:10', ip: {base}.10}}\n"
                 "  portMaps:\n"
                 f"    - {{name: web, protocol: tcp, uplinkPort: {port}, target: web, "
                 "targetPort: 80}\n")
    return text


def wait_until(cond: Callable[[], Any], what: str, timeout: float, step: float = 0.1) -> Any:
    """cond()'s first true value, polled for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(step)


def fleet(lab: EtcdLab, user: str, *args: str, netns: str | None = None,
          endpoints: list[str] | None = None, check: bool = True,
          timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`nirunner fleet ARGS` as etcd user `user` (its client certificate), in `netns`."""
    cert = lab.client_cert(user)
    cmd = in_netns(netns, [sys.executable, "-m", "runner.cli.main", "fleet", *args,
                           "--endpoints", ",".join(endpoints or lab.endpoints),
                           "--prefix", "/nirunner", "--cacert", lab.ca,
                           "--cert", cert.cert, "--key", cert.key])
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"nirunner fleet {' '.join(args)}: {res.stderr.strip()}")
    return res


def fleet_status(lab: EtcdLab, user: str = "nirunner-operator", **kw: Any) -> dict[str, Any]:
    """Device -> its entry in `nirunner fleet status --json`."""
    res = fleet(lab, user, "status", "--json", **kw)
    return {d["device"]: d for d in json.loads(res.stdout)}
