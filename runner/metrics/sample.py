"""A sample of every NI for the metrics: the supervisor's records, then the expensive reads.

Scraping must never slow a pass, so a sample takes the supervisor's lock only to
copy its records (plan, health, attachments: microseconds), and not even that
while a pass holds it (the last copy serves then). The reads that cost something
— containerd's task list and metrics (one call each for every task), the device
table's nft counters (one `nft` process), lease and ni-init files, each VPN NI's
charon over VICI — run outside the lock, at most once every `max_age` seconds
whatever the number of scrapers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import nitask
from runner.containerd import metrics, tasks
from runner.containerd.errors import ContainerdError
from runner.drivers import nft
from runner.errors import NirunnerError
from runner.model.types import NetworkInstance, NIType
from runner.net import names
from runner.plan.ni import NIPlan
from runner.plan.switch import SwitchPlan
from runner.supervisor import status
from runner.supervisor.health import Health

if TYPE_CHECKING:
    from runner.supervisor.core import Supervisor

log = logging.getLogger("nirunner.metrics")

LOCK_WAIT = 0.05  # seconds a sample waits for the supervisor's lock before using its last copy


@dataclass(frozen=True)
class Records:
    """What a sample copies from the supervisor under its lock."""

    nis: dict[str, NetworkInstance]
    plans: dict[str, NIPlan | SwitchPlan]
    health: dict[str, Health]
    attached: dict[str, tuple[status.Attached, ...]]
    errors: dict[str, tuple[str, str]]  # item id -> (owner, error)
    containerd_ok: bool
    counters: dict[str, str]  # device nft counter -> what it counts (render.nft)


@dataclass(frozen=True)
class NISample:
    name: str
    type: str
    uplink: str
    state: str
    task_running: bool
    restarts: int
    usage: metrics.Usage | None
    memory_limit: int
    cpu_limit: float
    pids_limit: int
    apps: int
    leases: int
    attached: int
    services: dict[str, str]
    transit: dict[str, tuple[int, int]]  # "in"/"out" -> (packets, bytes)
    port_maps: dict[str, tuple[int, int]]  # port map name -> (packets, bytes)
    vpn: dict[str, Any] | None  # vpn.status()
    vpn_rekeys: dict[str, int] = field(default_factory=dict)  # "ike"/"child" -> count


@dataclass(frozen=True)
class Sample:
    nis: tuple[NISample, ...]
    items_in_error: dict[str, int]  # item kind -> items whose last op failed
    containerd_up: bool
    taken: float  # time.time()
    seconds: float  # what taking it cost
    problems: tuple[str, ...] = ()  # reads that failed (the sample is partial then)


def records(sup: Supervisor) -> Records:
    """The copy (call with the supervisor's lock held)."""
    from runner.render.nft import device_counters

    plan = sup.plan()
    atts: dict[str, list[status.Attached]] = {}
    for a in sup.desired.attachments:
        atts.setdefault(a.ni, []).append(
            status.Attached(a.netns, a.ifname, a.mac, a.host_ifname, a.hostname))
    return Records(
        nis={n: ni for n, ni in sup.desired.nis.items() if n not in plan.refused},
        plans={**plan.nis, **plan.switches},
        health={n: Health(**vars(h)) for n, h in sup.health.items()},
        attached={n: tuple(v) for n, v in atts.items()},
        errors=dict(sup.errors), containerd_ok=sup.containerd_ok,
        counters=device_counters(plan.device.nft_rules))


class Sampler:
    def __init__(self, sup: Supervisor, max_age: float = 5.0,
                 read_counters: Callable[[], dict[str, tuple[int, int]]] | None = None,
                 read_vpn: Callable[[NIPlan, NetworkInstance, Path], dict[str, Any]] | None
                 = None
                 ) -> None:
        """`read_counters` and `read_vpn` replace the nft and VICI reads in tests."""
        self.sup = sup
        self.max_age = max_age
        self._read_counters = read_counters or (
            lambda: nft.counters("inet", names.DEVICE_NFT_TABLE))
        self._read_vpn = read_vpn or _vpn_status
        self._lock = threading.Lock()
        self._records: Records | None = None
        self._sample: Sample | None = None
        self._vpn_seen: dict[str, dict[str, tuple[str, bool]]] = {}  # ni -> sa -> (id, up)
        self._rekeys: dict[str, dict[str, int]] = {}

    def get(self) -> Sample:
        """The newest sample, taken now if the last one is older than `max_age`."""
        with self._lock:
            s = self._sample
            if s is None or time.time() - s.taken >= self.max_age:
                s = self._sample = self._take()
            return s

    # -- taking one -----------------------------------------------------------------------

    def _copy(self) -> Records:
        lock = self.sup.lock
        wait = LOCK_WAIT if self._records is not None else 10.0
        if lock.acquire(timeout=wait):
            try:
                self._records = records(self.sup)
            finally:
                lock.release()
        if self._records is None:
            raise NirunnerError("metrics: the supervisor has been busy for 10 s")
        return self._records

    def _take(self) -> Sample:
        t0 = time.monotonic()
        r = self._copy()
        problems: list[str] = []
        infos: dict[str, tasks.TaskInfo] | None = None
        usage: dict[str, metrics.Usage] = {}
        try:
            infos = {t.container_id: t for t in tasks.list_tasks(self.sup.client)}
            usage = nitask.usage(self.sup.client, [cid for cid, t in infos.items()
                                                   if t.status == "running"])
        except ContainerdError as e:
            problems.append(f"containerd: {e}")
        counted: dict[str, tuple[int, int]] = {}
        if r.counters:
            try:
                counted = self._read_counters()
            except NirunnerError as e:
                problems.append(str(e))
        by_what = {what: counted[c] for c, what in r.counters.items() if c in counted}
        nis = tuple(self._ni(r, name, infos, usage, by_what) for name in sorted(r.nis))
        errors: dict[str, int] = {}
        for item_id in r.errors:
            kind = item_id.split(":", 1)[0]
            errors[kind] = errors.get(kind, 0) + 1
        for p in problems:
            log.debug("metrics sample: %s", p)
        return Sample(nis, errors, infos is not None, time.time(), time.monotonic() - t0,
                      tuple(problems))

    def _ni(self, r: Records, name: str, infos: dict[str, tasks.TaskInfo] | None,
            usage: dict[str, metrics.Usage], by_what: dict[str, tuple[int, int]]) -> NISample:
        ni, p = r.nis[name], r.plans[name]
        h = r.health.get(name)
        if infos is None:
            task = status.TaskView(p.container_id, "unknown", 0)
        else:
            info = infos.get(p.container_id)
            task = status.TaskView(p.container_id, info.status if info else "missing",
                                   info.pid if info else 0)
        state_dir = self.sup.store.state_dir(name)
        services = status.services(state_dir / "services.status")
        if ni.type is not NIType.VPN:
            services.pop("charon", None)
        if ni.type is NIType.SWITCH:  # its task runs no service
            services.pop("dnsmasq", None)
        vpn_st = self._read_vpn(p, ni, state_dir) if isinstance(p, NIPlan) and \
            p.vpn is not None and ni.vpn is not None and \
            task.status == "running" else None
        now = time.time()
        errors = [e for owner, e in r.errors.values() if owner == name]
        held = "" if task.status == "running" else (
            "containerd unreachable" if not r.containerd_ok else h.held(time.monotonic())
            if h else "")
        view = status.NIView(
            ni=ni, plan=p, task=task, failed_reason=h.failed_reason if h else "",
            last_error=(h.last_error if h and h.last_error else "") or (
                errors[0] if errors else ""),
            held=held, leases=tuple(status.leases(state_dir / "dnsmasq.leases")),
            attached=r.attached.get(name, ()), services=services,
            vpn=vpn_st, vpn_down="" if not vpn_st or vpn_st.get("up") else "tunnel down",
            now=now)
        state, _ = status.state(view)
        transit: dict[str, tuple[int, int]] = {}
        if p.transit is not None:
            for direction in (names.TRANSIT_IN, names.TRANSIT_OUT):
                got = by_what.get(f"{direction} {p.transit.device_if}")
                if got is not None:
                    transit[direction] = got
        port_maps = {pm.name: by_what[f"port map {name}/{pm.name}"] for pm in ni.port_maps
                     if f"port map {name}/{pm.name}" in by_what}
        r_ = ni.resources
        return NISample(
            name=name, type=str(ni.type), uplink=ni.uplink or "", state=state,
            task_running=task.status == "running", restarts=h.restarts if h else 0,
            usage=usage.get(p.container_id) if task.status == "running" else None,
            memory_limit=r_.memory, cpu_limit=r_.cpu, pids_limit=r_.pids,
            apps=len(status.apps(view)),
            leases=sum(1 for x in view.leases if x["expires"] == 0 or x["expires"] > now),
            attached=len(view.attached), services=services, transit=transit,
            port_maps=port_maps, vpn=vpn_st, vpn_rekeys=self._count_rekeys(name, vpn_st))

    def _count_rekeys(self, name: str, st: dict[str, Any] | None) -> dict[str, int]:
        """An SA replaced by another (a new unique id) while both were up, between two
        samples: a rekey. (A tunnel that failed and came back within one sample
        interval counts too; one that was seen down does not.)"""
        counts = self._rekeys.setdefault(name, {"ike": 0, "child": 0})
        if st is None:
            self._vpn_seen.pop(name, None)
            return dict(counts)
        seen = self._vpn_seen.setdefault(name, {})
        for sa, up_states in (("ike", ("ESTABLISHED", "REKEYING")),
                              ("child", ("INSTALLED", "REKEYING"))):
            entry = st.get(sa) or {}
            now = (str(entry.get("uniqueId", "")), entry.get("state") in up_states)
            before = seen.get(sa)
            if before and before[1] and now[1] and before[0] and now[0] != before[0]:
                counts[sa] += 1
            seen[sa] = now
        return dict(counts)


def _vpn_status(p: NIPlan, ni: NetworkInstance, state_dir: Path) -> dict[str, Any]:
    from runner.supervisor import vpn

    assert p.vpn is not None and ni.vpn is not None
    return vpn.status(p.vpn, str(ni.vpn.remote), state_dir)
