"""Gather an NI's view for status: the supervisor's records plus a few reads
(leases, ni-init's services file, cgroup usage, VPN state over VICI, nft listing)."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from runner.containerd import metrics, tasks
from runner.containerd.errors import ContainerdError
from runner.drivers import nft
from runner.model.types import NIType
from runner.plan.site import Plan
from runner.reconcile import kinds as k
from runner.supervisor import apps, status, vpn
from runner.supervisor.store import Attachment

if TYPE_CHECKING:
    from runner.supervisor.core import Supervisor


def gather(sup: Supervisor, plan: Plan, name: str, infos: dict[str, tasks.TaskInfo] | None,
           detail: bool) -> status.NIView:
    """`infos`: the namespace's tasks from one list call; None if containerd is unreachable."""
    ni, p = sup.desired.nis[name], plan.nis[name]
    h = sup.health.get(name)
    known = sup.current.get(f"task:{p.container_id}")
    if infos is None:
        task = status.TaskView(p.container_id, "unknown",
                               known.pid if isinstance(known, k.Task) else 0)
    else:
        info = infos.get(p.container_id)
        task = status.TaskView(p.container_id, info.status if info else "missing",
                               info.pid if info else 0)
    task = status.TaskView(task.container, task.status, task.pid,
                           h.restarts if h else 0, h.last_exit if h else None)
    state_dir = sup.store.state_dir(name)
    svc = status.services(state_dir / "services.status")
    if ni.type is not NIType.VPN:
        svc.pop("charon", None)
    usage = {}
    if task.status == "running":
        with contextlib.suppress(ContainerdError, ValueError):
            u = metrics.decode(tasks.task_metrics(sup.client, p.container_id))
            usage = {"memory": u.memory_bytes, "cpuSeconds": round(u.cpu_ns / 1e9, 3),
                     "pids": u.pids}
    vpn_st, vpn_down = None, ""
    if p.vpn is not None and ni.vpn is not None:
        vpn_st = vpn.status(p.vpn, str(ni.vpn.remote), state_dir)
        vpn_down = "" if vpn_st.get("up") else vpn.down_reason(vpn_st)
    errors = [e for owner, e in sup.errors.values() if owner == name]
    held = sup.held(name) if task.status != "running" else ""
    view = status.NIView(
        ni=ni, plan=p, task=task, failed_reason=h.failed_reason if h else "",
        last_error=(h.last_error if h and h.last_error else "") or (errors[0] if errors else ""),
        held=held, leases=tuple(status.leases(state_dir / "dnsmasq.leases")),
        attached=tuple(_attached(a) for a in sup.desired.attachments if a.ni == name),
        services=svc, usage=usage, vpn=vpn_st, vpn_down=vpn_down, now=time.time(),
    )
    if not detail:
        return view
    rules = tuple(str(x.rule) for x in sup.current.values()
                  if isinstance(x, k.Rule) and x.ni == name)
    try:
        listing: str | None = nft.list_table("inet", "ni", p.netns)
    except Exception as e:  # the netns may be gone mid-rebuild
        listing = f"unavailable: {e}"
    return status.NIView(**{**view.__dict__, "items": tuple(sup.item_states(name)),
                            "device_rules": rules, "nft": listing,
                            "edge": apps.gather(sup, p.netns, name)})


def _attached(a: Attachment) -> status.Attached:
    return status.Attached(
        a.netns, a.ifname, a.mac, a.host_ifname, a.hostname, a.kind, a.container_id,
        a.network, str(a.address) if a.address else "",
        tuple(f"{p.protocol} {p.host_port} -> {p.container_port}" for p in a.port_mappings))
