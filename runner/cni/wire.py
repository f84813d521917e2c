"""The workload calls' values (runner/cni/api.py) as nirunner's gRPC messages and back.

Used by both ends: the CNI plugin's backend (client) and the API server. Loads
the generated stubs, so the plugin imports it only for the verbs that talk.
"""

from __future__ import annotations

from collections.abc import Iterable

from runner.cni.api import (
    Attachment,
    AttachmentKey,
    AttachRequest,
    Dns,
    PortMapping,
    Route,
)
from runner.pb.nirunner.v1 import nirunner_pb2 as pb

DEFAULT_LEASE_TIMEOUT = 10.0


def key_msg(k: AttachmentKey) -> pb.WorkloadKey:
    return pb.WorkloadKey(network=k.network, container_id=k.container_id, ifname=k.ifname)


def key_of(m: pb.WorkloadKey) -> AttachmentKey:
    return AttachmentKey(m.network, m.container_id, m.ifname)


def ports_msg(ports: Iterable[PortMapping]) -> list[pb.PortMapping]:
    return [pb.PortMapping(host_port=p.host_port, container_port=p.container_port,
                           protocol=p.protocol, host_ip=p.host_ip) for p in ports]


def ports_of(ms: Iterable[pb.PortMapping]) -> tuple[PortMapping, ...]:
    return tuple(PortMapping(m.host_port, m.container_port, m.protocol or "tcp", m.host_ip)
                 for m in ms)


def request_msg(r: AttachRequest) -> pb.AttachWorkloadRequest:
    target = {"interface": r.interface} if r.interface else {"netns": r.netns}
    return pb.AttachWorkloadRequest(
        ni=r.ni, key=key_msg(r.key), mac=r.mac, hostname=r.hostname, app=r.app,
        port_mappings=ports_msg(r.port_mappings),
        lease_timeout_ms=round(r.lease_timeout * 1000), **target)


def request_of(m: pb.AttachWorkloadRequest) -> AttachRequest:
    return AttachRequest(
        ni=m.ni, key=key_of(m.key), netns=m.netns, mac=m.mac, hostname=m.hostname, app=m.app,
        port_mappings=ports_of(m.port_mappings), interface=m.interface,
        lease_timeout=m.lease_timeout_ms / 1000 if m.lease_timeout_ms else DEFAULT_LEASE_TIMEOUT)


def attachment_msg(a: Attachment) -> pb.Attachment:
    return pb.Attachment(
        ni=a.ni, key=key_msg(a.key), netns=a.netns, interface=a.interface,
        host_ifname=a.host_ifname, mac=a.mac, mtu=a.mtu, address=a.address, gateway=a.gateway,
        routes=[pb.Route(dst=r.dst, gw=r.gw) for r in a.routes],
        dns=pb.Dns(nameservers=list(a.dns.nameservers), domain=a.dns.domain,
                   search=list(a.dns.search)),
        port_mappings=ports_msg(a.port_mappings))


def attachment_of(m: pb.Attachment) -> Attachment:
    return Attachment(
        ni=m.ni, key=key_of(m.key), netns=m.netns, host_ifname=m.host_ifname, mac=m.mac,
        mtu=m.mtu, address=m.address, gateway=m.gateway,
        routes=tuple(Route(r.dst, r.gw) for r in m.routes),
        dns=Dns(tuple(m.dns.nameservers), m.dns.domain, tuple(m.dns.search)),
        port_mappings=ports_of(m.port_mappings), interface=m.interface)
