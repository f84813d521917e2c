"""Make the kernel and containerd match a plan: one NI at a time, then the device.

Every step is idempotent (read, then change only what differs), so running the
executor again after an interruption, or with nothing changed, is safe.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable, Collection
from dataclasses import dataclass

from runner import nitask
from runner.containerd import spec as oci
from runner.containerd import tasks
from runner.containerd.client import Client
from runner.containerd.errors import ContainerdError, NotFound
from runner.drivers import files, links, nft, routes
from runner.drivers import netns as ns
from runner.model.types import NetworkInstance
from runner.net import names
from runner.pb.containerd.services.containers.v1 import containers_pb2
from runner.plan.device import DevicePlan
from runner.plan.ni import NIPlan
from runner.render import swanctl
from runner.supervisor import vpn
from runner.supervisor.store import Store
from runner.supervisor.testhooks import crash_point

log = logging.getLogger("nirunner.executor")

RULES_OWNED = range(names.TRANSIT_RULE_BASE, names.LOCAL_RULE_PRIORITY)


@dataclass(frozen=True)
class NIResult:
    name: str
    action: str  # created | recreated | started | updated | unchanged
    detail: str = ""


def limits(ni: NetworkInstance) -> oci.Limits:
    r = ni.resources
    return oci.Limits.from_cpus(r.memory, r.cpu, r.pids)


@dataclass(frozen=True)
class TaskView:
    """What containerd has of an NI, from one list call per pass for all NIs."""

    container: containers_pb2.Container | None
    status: str  # running | created | stopped | paused | ... | missing


def task_views(c: Client) -> dict[str, TaskView]:
    """By container id: two gRPC calls, whatever the number of NIs."""
    states = {t.container_id: t.status for t in tasks.list_tasks(c)}
    return {x.id: TaskView(x, states.get(x.id, "missing")) for x in tasks.list_containers(c)}


@dataclass(frozen=True)
class Prepared:
    changed_files: list[str]
    created_netns: bool


class Executor:
    def __init__(self, client: Client, store: Store, image: str) -> None:
        self.client = client
        self.store = store
        self.image = image
        # what was last applied to the kernel: NI -> (plan fingerprint, netns inode),
        # and the device's. A pass whose plan matches skips that kernel work; a
        # forced pass (forget()) redoes it all, which also heals outside tampering.
        self._applied: dict[str, tuple[str, int]] = {}
        self._device_applied = ""
        self._limits: dict[str, oci.Limits] = {}  # in force per NI (saves parsing specs)

    def forget(self, device_only: bool = False) -> None:
        """Redo the kernel work on the next pass (all of it, or the device's)."""
        if not device_only:
            self._applied.clear()
            self._limits.clear()
        self._device_applied = ""

    # -- one NI -------------------------------------------------------------

    def ensure_ni(self, p: NIPlan, ni: NetworkInstance, view: TaskView | None = None
                  ) -> NIResult:
        return self.finish_ni(p, ni, self.prepare_ni(p), view)

    def prepare_ni(self, p: NIPlan) -> Prepared:
        """The NI's network and config files (everything but its task)."""
        # the state dir first: it is the record that this supervisor owns the NI's
        # objects (see Supervisor._remove_orphans); it is removed last
        self.store.state_dir(p.name).mkdir(parents=True, exist_ok=True)
        fingerprint = p.restart_key + p.live_key
        inode = ns.inode(p.netns)
        created_netns = False
        cached = inode is not None and self._applied.get(p.name) == (fingerprint, inode)
        if not cached:
            self._applied.pop(p.name, None)
            created_netns = ns.ensure(p.netns)
            crash_point("netns", p.name)
            ns.set_sysctls(p.sysctls, p.netns)
            self._links(p)
            crash_point("links", p.name)
            routes.sync(p.routes, [names.MAIN_TABLE], p.netns)
            nft.apply(p.nft, p.netns, f"apply nft table of NI {p.name}")
        # the files follow the fingerprint too, but a VPN NI's secrets are read from
        # the device's files, which may change on their own
        changed = self._files(p) if not cached or p.vpn is not None else []
        if not cached:
            self._applied[p.name] = (fingerprint, ns.inode(p.netns) or 0)
        return Prepared(changed, created_netns)

    def finish_ni(self, p: NIPlan, ni: NetworkInstance, prep: Prepared,
                  view: TaskView | None = None) -> NIResult:
        """The NI's task, and a reload of its services if their files changed."""
        changed_files, created_netns = prep.changed_files, prep.created_netns
        action, detail = self._task(p, ni, view)
        crash_point("task", p.name)
        if changed_files and action in ("unchanged", "updated"):
            # the running services re-read their files: no restart
            self._reload(p, changed_files)
            detail = ", ".join(filter(None, [detail, "reloaded " + ", ".join(changed_files)]))
            action = "updated"
        elif created_netns and action == "unchanged":
            action = "updated"
        if action == "unchanged" and p.vpn is not None:
            vpn.kick(p.name, p.vpn, self.store.state_dir(p.name))  # charon gave up: retry
        return NIResult(p.name, action, detail)

    def _links(self, p: NIPlan) -> None:
        if p.transit is not None:
            t = p.transit
            links.ensure_veth(t.device_if, t.ni_if, p.netns, p.mtu)
            with links.ipr() as ip:
                links.ensure_up(ip, t.device_if, p.mtu, (t.device_addr,))

        def inside(ip: links.IPRoute) -> None:
            links.ensure_up(ip, "lo")
            links.ensure_bridge(ip, p.bridge.name, p.bridge.mac, p.mtu)
            links.ensure_up(ip, p.bridge.name, p.mtu, (p.bridge.address,))
            if p.transit is not None:
                links.ensure_up(ip, p.transit.ni_if, p.mtu, (p.transit.ni_addr,))

        links.in_netns(p.netns, inside)

    def _files(self, p: NIPlan) -> list[str]:
        cfg, state = self.store.config_dir(p.name), self.store.state_dir(p.name)
        state.mkdir(parents=True, exist_ok=True)
        changed = [n for n, text in sorted(p.files.items())
                   if files.write_atomic(cfg / n, text, mode=0o644, durable=False)]
        if p.vpn is not None:  # secrets: 0600, read from the device's files
            changed += vpn.write_credentials(p.name, p.vpn, cfg)
        keep = {n.split("/", 1)[0] for n in p.files}  # "swanctl/swanctl.conf" keeps swanctl/
        for stale in cfg.iterdir():
            if stale.name not in keep and not stale.name.startswith("."):
                if stale.is_dir():
                    shutil.rmtree(stale)
                else:
                    stale.unlink()
                changed.append(stale.name)
        return changed

    def _nitask(self, p: NIPlan, ni: NetworkInstance) -> nitask.NITask:
        return nitask.NITask(
            name=p.name, ni_type=str(p.type), uplink=ni.uplink or "",
            generation=p.restart_key, netns_path=ns.path(p.netns),
            config_dir=str(self.store.config_dir(p.name)),
            state_dir=str(self.store.state_dir(p.name)),
            log_path=str(self.store.log_path(p.name)), limits=limits(ni),
        )

    def _task(self, p: NIPlan, ni: NetworkInstance, view: TaskView | None) -> tuple[str, str]:
        c, t = self.client, self._nitask(p, ni)
        if view is None:  # not listed for this pass: ask
            try:
                container = tasks.get_container(c, p.container_id)
            except NotFound:
                container = None
            try:
                state = tasks.get_task(c, p.container_id).status if container else "missing"
            except NotFound:
                state = "missing"
        else:
            container, state = view.container, view.status
        if container is None:
            nitask.run(c, self.image, t)
            self._limits[p.name] = t.limits
            return "created", ""
        if container.labels.get(nitask.LABEL_GENERATION) != p.restart_key:
            nitask.remove(c, p.name)
            nitask.run(c, self.image, t)
            self._limits[p.name] = t.limits
            return "recreated", "type, subnet, gateway, uplink or DHCP/DNS settings changed"
        if state != "running":
            if state != "missing":
                tasks.delete_task(c, p.container_id)
            nitask.start(c, t)
            return "started", f"task was {state}"
        current = self._limits.get(p.name) or tasks.limits_of(container)
        self._limits[p.name] = current
        if current != t.limits:
            tasks.update_limits(c, p.container_id, t.limits)
            self._limits[p.name] = t.limits
            return "updated", "resource limits changed"
        return "unchanged", ""

    def _reload(self, p: NIPlan, changed: list[str]) -> None:
        with contextlib.suppress(NotFound):
            tasks.kill_task(self.client, p.container_id, tasks.SIGHUP, all_processes=False)
        # charon does not reload on SIGHUP: the supervisor hands it the change over VICI
        if p.vpn is not None and any(n.startswith(f"{swanctl.SWANCTL_DIR}/") for n in changed):
            done = vpn.reload(p.name, p.vpn, self.store.config_dir(p.name),
                              self.store.state_dir(p.name), changed)
            log.info("NI %s: VPN reloaded: %s", p.name, done)

    def remove_ni(self, name: str, slot: int | None) -> None:
        """Best effort: every step runs; the errors are gathered and raised together."""
        self._applied.pop(name, None)
        self._limits.pop(name, None)
        errors: list[str] = []
        steps: list[tuple[str, Callable[[], object]]] = [
            ("remove task and container", lambda: nitask.remove(self.client, name)),
            ("remove netns", lambda: ns.remove(names.netns(name))),
        ]
        if slot is not None:
            ifname = names.transit_device_if(slot)
            steps.append(("remove transit link", lambda: links.delete(ifname)))
            steps.append(("wait for transit link", lambda: links.wait_gone(ifname)))
        steps.append(("remove state", lambda: shutil.rmtree(self.store.ni_dir(name),
                                                             ignore_errors=True)))
        for what, step in steps:
            try:
                step()
            except (ContainerdError, OSError, links.LinkError, ns.NetnsError) as e:
                errors.append(f"{what} of NI {name}: {e}")
        if errors:
            raise ns.NetnsError("; ".join(errors))

    # -- the device netns ------------------------------------------------------

    def ensure_device(self, d: DevicePlan, nis: Collection[str] = ()) -> list[str]:
        """Sysctls, uplink route tables, rules, and the device nft table."""
        fingerprint = repr((d.sysctls, d.routes, d.rules, d.absent_rules, d.nft))
        if fingerprint == self._device_applied:
            return []
        self._device_applied = ""
        missing = ns.set_sysctls(d.sysctls, missing_ok=True)
        routes.sync(d.routes, d.uplink_tables.values())
        routes.sync_rules(d.rules, RULES_OWNED, d.absent_rules)
        crash_point("rules", nis)
        nft.apply(d.nft, None, "apply nft table of the device")
        if not missing:  # an uplink not there yet: try again next pass
            self._device_applied = fingerprint
        return missing
