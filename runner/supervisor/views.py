"""Gather an NI's view for status: the supervisor's records plus a few reads
(leases, ni-init's services file, cgroup usage, VPN state over VICI, nft listing)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from runner import nitask
from runner.containerd import tasks
from runner.containerd.errors import ContainerdError
from runner.containerd.metrics import Usage
from runner.drivers import nft
from runner.model.types import NIType
from runner.net import names
from runner.plan.ni import NIPlan
from runner.plan.site import Plan
from runner.plan.switch import SwitchPlan
from runner.reconcile import kinds as k
from runner.supervisor import apps, status, switches, vpn
from runner.supervisor.store import Attachment

if TYPE_CHECKING:
    from runner.supervisor.core import Supervisor


def gather(sup: Supervisor, plan: Plan, name: str, infos: dict[str, tasks.TaskInfo] | None,
           detail: bool, usage_of: Mapping[str, Usage] | None = None) -> status.NIView:
    """`infos`: the namespace's tasks from one list call; None if containerd is unreachable;
    `usage_of`: the running tasks' usage by container id (else read here)."""
    ni = sup.desired.nis[name]
    p = None if name in plan.refused else plan.of(name)  # refused: a switch NI not built
    container = names.container_id(name)
    h = sup.health.get(name)
    known = sup.current.get(f"task:{container}")
    if infos is None:
        task = status.TaskView(container, "unknown",
                               known.pid if isinstance(known, k.Task) else 0)
    else:
        info = infos.get(container)
        task = status.TaskView(container, info.status if info else "missing",
                               info.pid if info else 0)
    task = status.TaskView(task.container, task.status, task.pid,
                           h.restarts if h else 0, h.last_exit if h else None)
    state_dir = sup.store.state_dir(name)
    svc = status.services(state_dir / "services.status")
    if ni.type is not NIType.VPN:
        svc.pop("charon", None)
    if ni.type is NIType.SWITCH:  # its task runs no service
        svc.pop("dnsmasq", None)
    usage = {}
    if task.status == "running":
        with contextlib.suppress(ContainerdError):
            u = (usage_of if usage_of is not None
                 else nitask.usage(sup.client, [container])).get(container)
            if u is not None:
                usage = {"memory": u.memory_bytes, "cpuSeconds": round(u.cpu_ns / 1e9, 3),
                         "pids": u.pids}
    vpn_st, vpn_down = None, ""
    if isinstance(p, NIPlan) and p.vpn is not None and ni.vpn is not None:
        vpn_st = vpn.status(p.vpn, str(ni.vpn.remote), state_dir)
        vpn_down = "" if vpn_st.get("up") else vpn.down_reason(vpn_st)
    errors = [e for owner, e in sup.errors.values() if owner == name]
    held = sup.held(name) if task.status != "running" else ""
    attached = tuple(_attached(a) for a in sup.desired.attachments if a.ni == name)
    now = time.time()
    ports = None
    if isinstance(p, SwitchPlan):  # its apps as their ports learned them
        learned = sup.switches.bindings(name)
        ports = tuple(switches.apps_view(
            p, sup.switches.learned.get(name, ()) if learned is None else learned,
            {a.mac: a.hostname for a in attached}, now))
    view = status.NIView(
        ni=ni, plan=p, task=task,
        failed_reason=(h.failed_reason if h else "") or plan.refused.get(name, ""),
        last_error=(h.last_error if h and h.last_error else "") or (errors[0] if errors else ""),
        held=held, leases=tuple(status.leases(state_dir / "dnsmasq.leases")),
        attached=attached, services=svc, usage=usage, vpn=vpn_st, vpn_down=vpn_down, now=now,
        ports=ports,
    )
    if not detail:
        return view
    rules = tuple(str(x.rule) for x in sup.current.values()
                  if isinstance(x, k.Rule) and x.ni == name)
    try:
        listing: str | None = (nft.list_table("inet", "ni", names.netns(name))
                               if isinstance(p, NIPlan) else switch_tables(names.netns(name)))
    except Exception as e:  # the netns may be gone mid-rebuild
        listing = f"unavailable: {e}"
    return status.NIView(**{**view.__dict__, "items": tuple(sup.item_states(name)),
                            "device_rules": rules, "nft": listing,
                            "edge": apps.gather(sup, p.netns, name)
                            if isinstance(p, NIPlan) else None})


def _attached(a: Attachment) -> status.Attached:
    return status.Attached(
        a.netns, a.ifname, a.mac, a.host_ifname, a.hostname, a.kind, a.container_id,
        a.network, str(a.address) if a.address else "",
        tuple(f"{p.protocol} {p.host_port} -> {p.container_port}" for p in a.port_mappings))


def switch_tables(netns: str) -> str:
    """A switch NI's port tables, as nft lists them."""
    return "\n".join(nft.list_table(family, table, netns) for family, table in nft.tables(netns)
                     if table.startswith(names.APP_PREFIX))
