"""An in-memory supervisor behind the CNI plugin's Backend interface."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from runner.cni.api import (
    Attachment,
    AttachmentKey,
    AttachRequest,
    BackendError,
    CheckReport,
    Dns,
    ErrorKind,
    GcReport,
    Readiness,
    Route,
)


@dataclass
class FakeNI:
    subnet: str = "10.1.0.0/24"
    domain: str = "factory.lan"
    ready: bool = True
    uplink_ports: set[tuple[str, int]] = field(default_factory=set)  # held by manifests


@dataclass
class FakeSupervisor:
    nis: dict[str, FakeNI] = field(default_factory=lambda: {"factory": FakeNI()})
    attachments: dict[AttachmentKey, Attachment] = field(default_factory=dict)
    drift: dict[AttachmentKey, list[str]] = field(default_factory=dict)
    running: bool = True
    calls: list[str] = field(default_factory=list)
    closed: int = 0

    def connect(self, socket: str) -> FakeSupervisor:
        if not self.running:
            raise BackendError(ErrorKind.UNAVAILABLE, f"no API socket {socket}")
        return self

    def close(self) -> None:
        self.closed += 1

    def _ni(self, name: str) -> FakeNI:
        if name not in self.nis:
            raise BackendError(ErrorKind.NOT_FOUND, f"no such NI: {name}")
        return self.nis[name]

    def attach(self, req: AttachRequest) -> Attachment:
        self.calls.append(f"attach {req.key.container_id}")
        ni = self._ni(req.ni)
        if not ni.ready:
            raise BackendError(ErrorKind.NOT_READY, f"NI {req.ni} is not running")
        if req.key in self.attachments:
            raise BackendError(ErrorKind.EXISTS, f"{req.key.container_id} is attached already")
        used = set(ni.uplink_ports) | {(p.protocol, p.host_port) for a in self.attachments.values()
                                       for p in a.port_mappings}
        for pm in req.port_mappings:
            if (pm.protocol, pm.host_port) in used:
                raise BackendError(ErrorKind.CONFLICT,
                                   f"uplink port {pm.protocol}/{pm.host_port} is mapped already")
        net = ipaddress.IPv4Network(ni.subnet)
        taken = {a.address for a in self.attachments.values()}
        ip = next(f"{h}/{net.prefixlen}" for h in list(net.hosts())[99:]
                  if f"{h}/{net.prefixlen}" not in taken)
        gw = str(next(net.hosts()))
        att = Attachment(ni=req.ni, key=req.key, netns=req.netns, host_ifname="ap0011aabb",
                         mac=req.mac or "02:00:00:00:00:99", mtu=1500, address=ip, gateway=gw,
                         routes=(Route("0.0.0.0/0", gw),),
                         dns=Dns((gw,), ni.domain, (ni.domain,)),
                         port_mappings=req.port_mappings)
        self.attachments[req.key] = att
        return att

    def detach(self, ni: str, key: AttachmentKey) -> bool:
        self.calls.append(f"detach {key.container_id}")
        self._ni(ni)
        return self.attachments.pop(key, None) is not None

    def check(self, ni: str, key: AttachmentKey) -> CheckReport:
        self._ni(ni)
        return CheckReport(self.attachments.get(key), tuple(self.drift.get(key, ())))

    def gc(self, ni: str, network: str, valid: Sequence[AttachmentKey]) -> GcReport:
        self._ni(ni)
        gone = [k for k, a in self.attachments.items()
                if a.ni == ni and k.network == network and k not in valid]
        for k in gone:
            del self.attachments[k]
        return GcReport(removed=tuple(gone))

    def ready(self, ni: str) -> Readiness:
        n = self._ni(ni)
        return Readiness(True) if n.ready else Readiness(
            False, "task exited", degraded=any(a.ni == ni for a in self.attachments.values()))
