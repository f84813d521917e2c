"""What `nirunner status` and `inspect` show of an NI, as one JSON-able dict."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.containerd import metrics, tasks
from runner.containerd.errors import ContainerdError
from runner.drivers import nft
from runner.plan.site import Plan
from runner.supervisor import vpn

if TYPE_CHECKING:
    from runner.supervisor.core import Supervisor


def leases(path: Path) -> list[dict[str, Any]]:
    """dnsmasq's lease file: `expiry mac ip hostname client-id` per line."""
    out = []
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            w = line.split()
            if len(w) >= 4:
                out.append({"ip": w[2], "mac": w[1], "hostname": "" if w[3] == "*" else w[3],
                            "expires": int(w[0])})
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


def ni_status(sup: Supervisor, plan: Plan, name: str, detail: bool,
              listed: dict[str, tasks.TaskInfo]) -> dict[str, Any]:
    """`listed`: the namespace's tasks by container id, from one call for all NIs."""
    ni, p = sup.desired.nis[name], plan.nis[name]
    h = sup.health.get(name)
    st: dict[str, Any] = {
        "name": name, "type": str(ni.type), "uplink": ni.uplink or "",
        "subnet": str(ni.subnet), "gateway": str(ni.gateway), "mtu": p.mtu,
    }
    if p.transit:
        st["transit"] = {"device": str(p.transit.device_addr), "ni": str(p.transit.ni_addr),
                         "link": p.transit.device_if}
    task: dict[str, Any] = {"container": p.container_id, "pid": 0, "status": "missing",
                            "restarts": h.restarts if h else 0,
                            "lastExit": h.last_exit if h else None}
    info = listed.get(p.container_id)
    if info is not None:
        task.update(pid=info.pid, status=info.status)
    st["task"] = task
    limits = ni.resources
    usage: dict[str, Any] = {"memoryLimit": limits.memory, "cpuLimit": limits.cpu,
                             "pidsLimit": limits.pids}
    if task["status"] == "running":
        with contextlib.suppress(ContainerdError, ValueError):
            u = metrics.decode(tasks.task_metrics(sup.client, p.container_id))
            usage.update(memory=u.memory_bytes, cpuSeconds=round(u.cpu_ns / 1e9, 3),
                         pids=u.pids)
    st["usage"] = usage
    state_dir = sup.store.state_dir(name)
    svc = services(state_dir / "services.status")
    st["services"] = svc
    now = time.time()
    st["apps"] = [lease for lease in leases(state_dir / "dnsmasq.leases")
                  if lease["expires"] == 0 or lease["expires"] > now]
    st["attached"] = [{"netns": a.netns, "ifname": a.ifname, "mac": a.mac,
                       "hostIfname": a.host_ifname}
                      for a in sup.desired.attachments if a.ni == name]
    st["portMaps"] = [
        {"name": pm.name, "protocol": str(pm.protocol), "uplinkPort": pm.uplink_port,
         "target": pm.target, "targetIp": str(ni.target_ip(pm)), "targetPort": pm.target_port}
        for pm in ni.port_maps]
    st["state"], st["reason"] = _state(task["status"], svc, h)
    if p.vpn is not None and ni.vpn is not None:
        st["vpn"] = vpn.status(p.vpn, str(ni.vpn.remote), state_dir)
        if st["state"] == "running" and not st["vpn"]["up"]:
            st["state"], st["reason"] = "degraded", vpn.down_reason(st["vpn"])
    if detail:
        st["routes"] = [str(r) for r in p.routes]
        st["deviceRules"] = [str(r) for r in plan.device.rules
                             if p.transit and r.iif == p.transit.device_if]
        try:
            st["nft"] = nft.list_table("inet", "ni", p.netns)
        except Exception as e:  # the netns may be gone mid-rebuild
            st["nft"] = f"unavailable: {e}"
    return st


def _state(task: str, svc: dict[str, str], h: Any) -> tuple[str, str]:
    if h is not None and h.failed_reason:
        return "failed", h.failed_reason
    if task != "running":
        if h is not None and h.last_error:
            return "pending", h.last_error
        return "pending", f"task {task}"
    bad = {k: v for k, v in svc.items() if v in ("backoff", "failed")}
    if svc.get("dnsmasq") != "running" and "dnsmasq" not in bad:
        return "pending", "services starting"
    if bad:
        return "degraded", ", ".join(f"{k} {v}" for k, v in sorted(bad.items()))
    if h is not None and h.last_error:
        return "degraded", h.last_error
    return "running", ""
