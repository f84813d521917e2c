"""What `nirunner status` and `inspect` show of an NI: a view, formatted as one JSON-able dict.

The supervisor gathers an `NIView` (desired, applied items, task, health, leases,
usage); `ni_status` only formats it. Nothing here talks to the kernel or containerd.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.model.types import NetworkInstance, NIType
from runner.plan.ni import NIPlan
from runner.plan.switch import SwitchPlan

UNREACHABLE = "containerd unreachable"


def leases(path: Path) -> list[dict[str, Any]]:
    """dnsmasq's lease file: `expiry mac ip hostname client-id` per line."""
    out = []
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            w = line.split()
            if len(w) >= 4 and w[0].isdigit():
                out.append({"ip": w[2], "mac": w[1].lower(),
                            "hostname": "" if w[3] == "*" else w[3], "expires": int(w[0])})
    return sorted(out, key=lambda x: tuple(int(p) for p in x["ip"].split(".")))


def services(path: Path) -> dict[str, str]:
    """ni-init's view: `<name> <state> pid=.. restarts=.. last_exit=..` per line."""
    out = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            w = line.split()
            if len(w) >= 2:
                out[w[0]] = w[1]
    return out


@dataclass(frozen=True)
class Attached:
    netns: str
    ifname: str
    mac: str
    host_ifname: str
    hostname: str = ""
    kind: str = "netns"  # netns | cni | tap
    container_id: str = ""  # cni
    network: str = ""  # cni
    address: str = ""  # cni: the pinned lease
    port_mappings: tuple[str, ...] = ()  # cni: "tcp 8080 -> 80"


@dataclass(frozen=True)
class TaskView:
    container: str
    status: str  # running | stopped | created | missing | unknown
    pid: int  # last known when containerd is unreachable
    restarts: int = 0
    last_exit: int | None = None


@dataclass(frozen=True)
class NIView:
    """Everything status shows of one NI, gathered at one time."""

    ni: NetworkInstance
    plan: NIPlan | SwitchPlan | None  # None: a switch NI this kernel cannot build
    task: TaskView
    failed_reason: str = ""
    last_error: str = ""
    held: str = ""  # why its task is not started now (backoff, containerd away)
    leases: tuple[dict[str, Any], ...] = ()
    attached: tuple[Attached, ...] = ()
    services: dict[str, str] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    vpn: dict[str, Any] | None = None
    vpn_down: str = ""  # why the tunnel is down, if it is
    items: tuple[dict[str, str], ...] = ()  # detail: every item, its state and last error
    device_rules: tuple[str, ...] = ()
    nft: str | None = None  # detail: the NI's nft table as nft lists it
    edge: dict[str, Any] | None = None  # detail: the app edge (runner.supervisor.apps.view)
    now: float = 0.0
    ports: tuple[dict[str, Any], ...] | None = None  # a switch NI's apps as it learned them


def apps(v: NIView) -> list[dict[str, Any]]:
    """The NI's apps: attached ones and holders of unexpired leases, each once (by MAC);
    a switch NI's: its ports with what they learned (runner.supervisor.switches)."""
    if v.ports is not None:
        return list(v.ports)
    out: dict[str, dict[str, Any]] = {}
    for lease in v.leases:
        if lease["expires"] == 0 or lease["expires"] > v.now:
            out[lease["mac"]] = {**lease, "attached": False}
    for a in v.attached:
        entry = out.setdefault(a.mac, {"ip": "", "mac": a.mac, "hostname": a.hostname,
                                       "expires": None})
        entry["attached"] = True
    return sorted(out.values(), key=lambda x: (not x["ip"], tuple(
        int(p) for p in x["ip"].split(".")) if x["ip"] else (), x["mac"]))


def ni_status(v: NIView, detail: bool = False) -> dict[str, Any]:
    ni, p = v.ni, v.plan
    st: dict[str, Any] = {
        "name": ni.name, "type": str(ni.type), "uplink": ni.uplink or "",
        "subnet": str(ni.subnet or ""), "gateway": str(ni.gateway or ""),
        "mtu": p.mtu if p else 0,
    }
    if ni.type is NIType.SWITCH:
        st["vlan"] = ni.vlan
        if isinstance(p, SwitchPlan) and p.segment is not None:
            st["segment"] = {"lower": p.segment.lower, "ports": [
                x.port_if for x in p.ports]}
    if p is not None and p.transit:
        st["transit"] = {"device": str(p.transit.device_addr), "ni": str(p.transit.ni_addr),
                         "link": p.transit.device_if}
    st["task"] = {"container": v.task.container, "pid": v.task.pid, "status": v.task.status,
                  "restarts": v.task.restarts, "lastExit": v.task.last_exit}
    r = ni.resources
    st["usage"] = {"memoryLimit": r.memory, "cpuLimit": r.cpu, "pidsLimit": r.pids, **v.usage}
    st["services"] = dict(v.services)
    st["apps"] = apps(v)
    st["attached"] = [{"netns": a.netns, "ifname": a.ifname, "mac": a.mac,
                       "hostIfname": a.host_ifname, "kind": a.kind,
                       **({"containerId": a.container_id, "network": a.network,
                           "address": a.address, "portMappings": list(a.port_mappings)}
                          if a.kind == "cni" else {})} for a in v.attached]
    st["portMaps"] = [
        {"name": pm.name, "protocol": str(pm.protocol), "uplinkPort": pm.uplink_port,
         "target": pm.target, "targetIp": str(ni.target_ip(pm)), "targetPort": pm.target_port}
        for pm in ni.port_maps]
    st["state"], st["reason"] = state(v)
    if v.vpn is not None:
        st["vpn"] = v.vpn
    if detail:
        st["routes"] = [str(x) for x in p.routes] if p else []
        st["deviceRules"] = list(v.device_rules)
        st["items"] = list(v.items)
        if v.nft is not None:
            st["nft"] = v.nft
        if v.edge is not None:
            st["appEdge"] = v.edge
    return st


def state(v: NIView) -> tuple[str, str]:
    """(state, reason): failed, unknown, pending, degraded or running."""
    if v.failed_reason:
        return "failed", v.failed_reason
    if v.task.status == "unknown":
        return "unknown", UNREACHABLE
    if v.task.status != "running":
        why = v.last_error or v.held or f"task {v.task.status}"
        return "pending", why
    bad = {k: s for k, s in v.services.items() if s in ("backoff", "failed")}
    serves = v.ni.type is not NIType.SWITCH  # a switch NI's task starts no service
    if serves and v.services.get("dnsmasq") != "running" and "dnsmasq" not in bad:
        return "pending", "services starting"
    if bad:
        return "degraded", ", ".join(f"{k} {s}" for k, s in sorted(bad.items()))
    if v.last_error:
        return "degraded", v.last_error
    if v.vpn is not None and not v.vpn.get("up"):
        return "degraded", v.vpn_down
    return "running", ""
