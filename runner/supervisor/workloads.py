"""Workloads that join an NI through the API: containers by CNI, VM taps.

Each is an attachment in the desired state and, as reconciler items, a plug
(a veth into the container's netns) with its address configured there and its
lease pinned (an `appaddr` item, a line in the NI's dhcp-hosts, port maps in
the NI's and the device's nft tables), or a device interface taken into the
NI's bridge (a `tap` item). Every change is a diff run by the supervisor's
engine, under its lock, so API calls are serialized:

- ADD: (1) the plug, an atomic run; (2) a DHCP exchange from inside the
  container's netns, the one effect that is not an item: it gives the address
  the items are then built with; (3) address, pin and port maps, an atomic run.
  Any failure after (1) releases the lease (if one was taken) and runs the
  diff back to the desired state before (1): nothing is left.
- DEL: the attachment leaves the desired state, the diff deletes its items (best
  effort: a pass deletes what is left), and the lease is released from the NI's
  side, which works with the container's netns gone.
- CHECK: the attachment's items read back (the configurators' read) against the
  intended ones; nothing is changed.
- GC: DEL of every attachment of a network that the runtime no longer lists.
- a tap: one atomic run; its item's delete gives the interface back.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from ipaddress import IPv4Interface
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.cni import attachments as at
from runner.cni.api import (
    Attachment as Result,
)
from runner.cni.api import (
    AttachmentKey,
    AttachRequest,
    CheckReport,
    Dns,
    ErrorKind,
    GcReport,
    Readiness,
    Route,
)
from runner.cni.effects import DriverEffects, Effects
from runner.dhcp.client import Lease
from runner.dhcp.packet import DhcpError
from runner.errors import NirunnerError
from runner.model.types import NetworkInstance, NIType
from runner.net import names
from runner.net.errors import NetValueError
from runner.plan.ni import NIWorkloads
from runner.reconcile import kinds as k
from runner.reconcile.build import AppPlug
from runner.render import dnsmasq
from runner.supervisor import attach as attach_mod
from runner.supervisor.store import CNI, TAP, Attachment

if TYPE_CHECKING:
    from runner.supervisor.core import Supervisor

log = logging.getLogger("nirunner.workloads")


class WorkloadError(NirunnerError):
    """A refused or failed workload call; `kind` tells the API (and the CNI plugin) which."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# -- what attachments are to the plan and the items (pure) ----------------------------

def plan_inputs(attachments: Sequence[Attachment]) -> dict[str, NIWorkloads]:
    return at.plan_inputs([a for a in attachments if a.kind == CNI])


PlugMemo = dict[int, tuple[Attachment, AppPlug]]


def _plug(a: Attachment) -> AppPlug:
    return AppPlug(a.ni, a.netns, a.ifname, a.host_ifname, a.mac, a.kind, a.hostname,
                   a.address, a.mtu, a.up)


def app_plugs(attachments: Sequence[Attachment], memo: PlugMemo | None = None
              ) -> list[AppPlug]:
    """`memo` (kept by the caller): the same attachment object gives the same plug object,
    so the item builder's memo finds an NI's plugs unchanged at once (by identity)."""
    if memo is None:
        return [_plug(a) for a in attachments]
    out = []
    for a in attachments:
        hit = memo.get(id(a))
        if hit is None or hit[0] is not a:  # the memo holds `a`: its id is not reused
            hit = memo[id(a)] = (a, _plug(a))
        out.append(hit[1])
    if len(memo) > 2 * len(attachments) + 16:
        keep = {id(a) for a in attachments}
        for gone in [i for i in memo if i not in keep]:
            del memo[gone]
    return out


class Workloads:
    def __init__(self, sup: Supervisor, fx: Effects | None = None) -> None:
        self.sup = sup
        self.fx: Effects = fx or DriverEffects()

    def links_present(self, attachments: Sequence[Attachment]) -> set[str]:
        """The taps that exist: in the device netns, or taken into their NI already."""
        return {a.ifname for a in attachments if a.kind == TAP and (
            self.fx.link(None, a.ifname) is not None
            or self.fx.link(names.netns(a.ni), a.host_ifname) is not None)}

    # -- the API's calls -------------------------------------------------------------------

    def attach(self, req: AttachRequest) -> Result:
        with self.sup.lock:
            ni = self._ni(req.ni)
            if ni.type is NIType.SWITCH:  # its ports are macvlans of the segment, see
                raise WorkloadError(  # runner.supervisor.switches; taps and CNI: not yet
                    ErrorKind.INVALID, f"NI {ni.name} is a switch NI: containers and taps "
                    "join it with `nirunner attach --netns` (CNI and --interface: not yet)")
            if req.interface:
                return self._take(ni, req.interface)
            return self._attach(ni, req)

    def detach(self, ni: str, key: AttachmentKey) -> bool:
        """Idempotent: False when there was nothing to remove."""
        with self.sup.lock:
            self._ni(ni)
            rec = at.find(self.sup.desired.attachments, ni, key)
            if rec is None:
                return False
            errors = self._remove([rec])
            self.sup.events.emit("workload.detached", ni, at.owner(rec),
                                 **_fields(rec))
            if errors:
                raise WorkloadError(ErrorKind.FAILED, f"detach {at.owner(rec)} from NI {ni}: "
                                    + "; ".join(errors))
            return True

    def check(self, ni: str, key: AttachmentKey) -> CheckReport:
        """The attachment's items as they are against what is intended; changes nothing."""
        with self.sup.lock:
            self._ni(ni)
            rec = at.find(self.sup.desired.attachments, ni, key)
            if rec is None:
                return CheckReport(None)
            return CheckReport(self._result(rec), tuple(self._problems(rec)))

    def gc(self, ni: str, network: str, valid: Sequence[AttachmentKey]) -> GcReport:
        with self.sup.lock:
            self._ni(ni)
            victims = at.gc_victims(self.sup.desired.attachments, ni, network, valid)
            if not victims:
                return GcReport()
            errors = self._remove(victims)
            for v in victims:
                self.sup.events.emit("workload.detached", ni, f"{at.owner(v)} (GC)",
                                     **_fields(v))
            return GcReport(tuple(at.key_of(v) for v in victims), tuple(errors))

    def ready(self, ni: str) -> Readiness:
        with self.sup.lock:
            self._ni(ni)
            (st,) = self.sup.status([ni])
        return at.readiness(st)

    # -- ADD of a container --------------------------------------------------------------

    def _attach(self, ni: NetworkInstance, req: AttachRequest) -> Result:
        atts = self.sup.desired.attachments
        key = req.key
        if at.find(atts, ni.name, key) is not None:
            raise WorkloadError(ErrorKind.EXISTS, f"container {key.container_id} {key.ifname} "
                                f"is attached to NI {ni.name} already (network {key.network})")
        r = self.ready(ni.name)
        if not r.ready:
            raise WorkloadError(ErrorKind.NOT_READY, f"NI {ni.name} is not ready: {r.reason}")
        try:
            plain = attach_mod.attachment(ni.name, req.netns, key.ifname,
                                          req.mac or at.mac_for(ni.name, key), req.hostname)
        except NirunnerError as e:
            raise WorkloadError(ErrorKind.INVALID, str(e)) from None
        if self.fx.link(req.netns, key.ifname) is not None:
            raise WorkloadError(ErrorKind.EXISTS, f"{req.netns} has an interface "
                                f"{key.ifname} already")
        self._check_ports(ni, req)
        rec = replace(plain, host_ifname=at.host_ifname_for(ni.name, key), kind=CNI,
                      network=key.network, container_id=key.container_id,
                      port_mappings=req.port_mappings)
        before = list(atts)
        scope = {ni.name, ""}
        self._change([*before, rec], scope)  # 1: the plug
        lease: Lease | None = None
        try:
            lease = self.fx.lease(rec.netns, rec.ifname, rec.mac, rec.hostname,
                                  req.lease_timeout)
            if lease.address.network != ni.subnet:
                raise WorkloadError(ErrorKind.NO_LEASE, f"the DHCP server gave "
                                    f"{lease.address}, outside subnet {ni.subnet}")
            rec = replace(rec, address=lease.address)
            if self.sup.edge is not None:  # the anti-spoofing sets know the address before
                self.sup.edge.sync_leases(rec.ni)  # the pin is asked for from it
            self._change([*before, rec], scope)  # 3: address, pin, port maps
        except Exception as e:
            undo = self._undo(rec, lease, before, scope)
            kind = (e.kind if isinstance(e, WorkloadError) else
                    ErrorKind.NO_LEASE if isinstance(e, DhcpError) else ErrorKind.FAILED)
            extra = f" (and undoing it: {'; '.join(undo)})" if undo else ""
            raise WorkloadError(kind, f"attach {at.owner(rec)} to NI {ni.name}: {e}{extra}") \
                from None
        self.sup.events.emit("workload.attached", ni.name,
                             f"{at.owner(rec)}: {rec.ifname} {rec.address}", **_fields(rec))
        return self._result(rec)

    def _check_ports(self, ni: NetworkInstance, req: AttachRequest) -> None:
        up = self.sup.facts().uplink(ni.uplink) if ni.uplink else None
        addrs = [a.ip for a in up.addresses] if up else []
        invalid, conflicts = at.port_map_problems(
            ni, addrs, self.sup.desired.nis,
            [a for a in self.sup.desired.attachments if a.kind == CNI], req.port_mappings)
        if invalid:
            raise WorkloadError(ErrorKind.INVALID, "; ".join(invalid))
        if conflicts:
            raise WorkloadError(ErrorKind.CONFLICT, "; ".join(conflicts))

    def _change(self, attachments: list[Attachment], scope: set[str]) -> None:
        try:
            self.sup.change_attachments(attachments, scope)
        except WorkloadError:
            raise
        except NirunnerError as e:  # undone by the engine: the state is as before
            raise WorkloadError(ErrorKind.FAILED, str(e)) from None

    def _undo(self, rec: Attachment, lease: Lease | None, before: list[Attachment],
              scope: set[str]) -> list[str]:
        """After a failed ADD: release the lease, remove the plug, forget the record."""
        errors = []
        if lease is not None:
            try:
                self._release(rec.ni, lease.address, rec.mac)
            except Exception as e:
                errors.append(f"release {lease.address.ip}: {e}")
        try:
            run = self.sup.change_attachments(before, scope, atomic=False)
            errors += [f"{d.op.line()}: {d.error}" for d in run.failed]
        except Exception as e:  # the next pass removes what is left
            errors.append(str(e))
        for why in errors:
            log.warning("undo a failed attach of %s: %s", at.owner(rec), why)
        return errors

    # -- taps ----------------------------------------------------------------------------

    def _take(self, ni: NetworkInstance, name: str) -> Result:
        try:
            names.check_ifname(name)
        except NetValueError as e:
            raise WorkloadError(ErrorKind.INVALID, f"attach to NI {ni.name}: {e}") from None
        ours = {u.interface for u in self.sup.config.uplinks}
        if name in ours or name == "lo" or names.transit_slot(name) is not None \
                or name.startswith(names.APP_PREFIX):
            raise WorkloadError(ErrorKind.INVALID, f"attach to NI {ni.name}: {name} is "
                                "an uplink or a link of nirunner's own, not a tap")
        taken = next((a for a in self.sup.desired.attachments
                      if a.kind == TAP and a.ifname == name), None)
        if taken is not None:
            raise WorkloadError(ErrorKind.EXISTS, f"{name} is attached to NI {taken.ni} "
                                "already")
        link = self.fx.link(None, name)
        if link is None:
            raise WorkloadError(ErrorKind.INVALID, f"attach to NI {ni.name}: no interface "
                                f"{name} in the device netns")
        if link.kind != "tun":
            raise WorkloadError(ErrorKind.INVALID, f"attach to NI {ni.name}: {name} is a "
                                f"{link.kind or 'plain'} link, not a tap")
        rec = Attachment(ni.name, "", name, at.tap_host_ifname(ni.name, name), link.mac.lower(),
                         kind=TAP, mtu=link.mtu, up=link.up)
        self._change([*self.sup.desired.attachments, rec], {ni.name})
        self.sup.events.emit("workload.attached", ni.name, f"{at.owner(rec)} as "
                             f"{rec.host_ifname}", **_fields(rec))
        return self._result(rec)

    # -- helpers -------------------------------------------------------------------------

    def _ni(self, name: str) -> NetworkInstance:
        ni = self.sup.desired.nis.get(name)
        if ni is None:
            raise WorkloadError(ErrorKind.NOT_FOUND, f"no such NI: {name}")
        return ni

    def _remove(self, victims: list[Attachment]) -> list[str]:
        """Drop `victims` from the desired state, delete their items (best effort), give
        their leases back; every error, in words.

        A lease goes back by a DHCPRELEASE to the NI's dnsmasq; where its task is known
        not to run, it is taken out of dnsmasq's lease file instead, before the diff
        (which may start the task): dnsmasq would keep a pinned lease forever."""
        keep = [a for a in self.sup.desired.attachments if a not in victims]
        leased = [(v, v.address) for v in victims if v.address is not None]
        down = {v.ni for v, _ in leased if not self._task_runs(v.ni)}
        errors = []
        for v, address in leased:
            if v.ni in down:
                errors += self._try(f"forget the lease of {at.owner(v)}", self.fx.forget,
                                    self._lease_file(v.ni), v.mac, address.ip)
        try:
            run = self.sup.change_attachments(keep, {v.ni for v in victims} | {""},
                                              atomic=False)
            errors += [f"{d.op.line()}: {d.error}" for d in run.failed]
        except NirunnerError as e:
            errors.append(str(e))
        for v, address in leased:
            if v.ni not in down:
                errors += self._try(f"release the lease of {at.owner(v)}", self._release,
                                    v.ni, address, v.mac)
        return errors

    def _release(self, ni: str, address: IPv4Interface, mac: str) -> None:
        gateway = self.sup.desired.nis[ni].gateway
        if gateway is None:
            raise WorkloadError(ErrorKind.FAILED, f"NI {ni} has no DHCP server of ours")
        self.fx.release(names.netns(ni), address, gateway, mac)

    def _task_runs(self, ni: str) -> bool:
        """As far as the supervisor knows (containerd away: as last seen)."""
        task = self.sup.current.get(f"{k.Task.KIND}:{names.container_id(ni)}")
        return isinstance(task, k.Task) and task.running

    def _lease_file(self, ni: str) -> str:
        return str(self.sup.store.state_dir(ni) / Path(dnsmasq.LEASE_FILE).name)

    @staticmethod
    def _try(what: str, fn: Callable[..., object], *args: Any) -> list[str]:
        try:
            fn(*args)
        except Exception as e:
            return [f"{what}: {e}"]
        return []

    def _item_ids(self, rec: Attachment) -> list[str]:
        plan = self.sup.plan().nis[rec.ni]
        key = f"{rec.ni}/{rec.host_ifname}"
        if rec.kind == TAP:
            return [f"{k.TakenLink.KIND}:{key}"]
        ids = [f"{k.Plug.KIND}:{key}"]
        if rec.address is not None:
            ids += [f"{k.AppAddress.KIND}:{key}", f"{k.ConfigFiles.KIND}:{rec.ni}"]
        if rec.port_mappings:
            ids += [f"{k.NftTable.KIND}:{plan.netns}/inet {names.NI_NFT_TABLE}",
                    k.DEVICE_NFT_ID]
        return ids

    def _problems(self, rec: Attachment) -> list[str]:
        if rec.netns and not os.path.exists(rec.netns):
            return [f"netns {rec.netns} is gone"]
        intended = self.sup.intended()
        items = [intended[i] for i in self._item_ids(rec) if i in intended]
        seen = self.sup.engine.read(items)
        out = []
        for x in items:
            live = seen.found.get(x.id)
            if x.id in seen.failed:
                out.append(f"{x.describe()}: cannot be read: {seen.failed[x.id]}")
            elif live is None:
                out.append(f"{x.describe()}: missing")
            elif live != x:
                what = "; ".join(c.text for c in x.changes(live))
                out.append(f"{x.describe()}: {what or 'not as nirunner made it'}")
        return out

    def _result(self, rec: Attachment) -> Result:
        ni = self.sup.desired.nis[rec.ni]
        mtu = self.sup.plan().nis[rec.ni].mtu
        key = at.key_of(rec)
        if rec.kind == TAP:
            return Result(rec.ni, key, "", rec.host_ifname, rec.mac, mtu, "", "",
                          interface=rec.ifname)
        gw = str(ni.gateway) if ni.uplink is not None else ""
        domain = ni.dns.domain or ""
        return Result(
            ni=rec.ni, key=key, netns=rec.netns, host_ifname=rec.host_ifname, mac=rec.mac,
            mtu=mtu, address=str(rec.address) if rec.address else "", gateway=gw,
            routes=(Route("0.0.0.0/0", gw),) if gw else (),
            dns=Dns((str(ni.gateway),), domain, (domain,) if domain else ()),
            port_mappings=rec.port_mappings)


def _fields(a: Attachment) -> dict[str, Any]:
    """Event fields naming an attachment."""
    out: dict[str, Any] = {"ifname": a.ifname, "via": a.kind}
    if a.container_id:
        out["container"] = a.container_id
    if a.address is not None:
        out["address"] = str(a.address)
    return out
