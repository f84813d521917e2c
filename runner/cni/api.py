"""What the CNI plugin needs from the supervisor: values and a small client interface.

The plugin only parses, asks and prints; the supervisor does the work (plug a
veth into the NI's bridge, take a DHCP lease from the NI's dnsmasq and pin it,
add port maps) and keeps the attachment in its desired state. This module is
the contract between the two; the workload calls of
`protos/nirunner/v1/nirunner.proto` are the same contract as gRPC messages
(runner/cni/wire.py converts), served by runner/supervisor/workloads.py.

It imports nothing heavy: the plugin starts for every container, so the gRPC
binding is loaded only by `connect`, and only for the verbs that talk.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from runner.errors import NirunnerError

# the same default as runner.api.client.DEFAULT_SOCKET (a unit test keeps them
# equal); not imported from there because that module loads grpc
DEFAULT_SOCKET = "/run/nirunner/nirunner.sock"


@dataclass(frozen=True)
class AttachmentKey:
    """An attachment made through CNI: the spec's (network, container id, ifname)."""

    network: str  # the CNI network name (config `name`)
    container_id: str
    ifname: str  # inside the container's netns


@dataclass(frozen=True)
class PortMapping:
    """One entry of the `portMappings` capability: uplink port -> container port."""

    host_port: int
    container_port: int
    protocol: str = "tcp"  # tcp | udp
    host_ip: str = ""  # "" (or 0.0.0.0): the NI's uplink address


@dataclass(frozen=True)
class AttachRequest:
    """A container's netns (`netns`: a veth, a lease) or, with `interface`, a device
    interface taken as it is (a VM's tap; key ("", "", interface))."""

    ni: str
    key: AttachmentKey
    netns: str  # path of the container's network namespace
    mac: str = ""  # "" : the supervisor derives a stable one from the key
    hostname: str = ""  # sent in the DHCP request, so the NI's DNS knows the container
    app: str = ""  # a declared app of the NI (app-edge work); "" for none
    port_mappings: tuple[PortMapping, ...] = ()
    interface: str = ""  # a link of the device netns instead of a netns
    lease_timeout: float = 10.0  # seconds for the NI's DHCP server to answer


@dataclass(frozen=True)
class Route:
    dst: str  # CIDR
    gw: str = ""


@dataclass(frozen=True)
class Dns:
    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()


@dataclass(frozen=True)
class Attachment:
    """An attachment as the supervisor made it (and intends to keep it)."""

    ni: str
    key: AttachmentKey
    netns: str
    host_ifname: str  # the veth end on the NI's bridge (inside the NI's netns)
    mac: str  # of the container's interface
    mtu: int
    address: str  # CIDR, from the NI's dnsmasq, e.g. "10.1.0.57/24"; "" for a tap
    gateway: str  # the NI's bridge address; "" for an air-gapped NI
    routes: tuple[Route, ...] = ()
    dns: Dns = Dns()
    port_mappings: tuple[PortMapping, ...] = ()
    interface: str = ""  # a taken device interface's name (a tap)


@dataclass(frozen=True)
class CheckReport:
    """Intended against actual, read without changing anything."""

    attachment: Attachment | None  # None: the supervisor has no such attachment
    problems: tuple[str, ...] = ()  # e.g. "veth ap1a2b3c4d is missing"; empty: all fine


@dataclass(frozen=True)
class GcReport:
    removed: tuple[AttachmentKey, ...] = ()
    errors: tuple[str, ...] = ()  # one per attachment that could not be removed


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str = ""  # why not, for a person
    degraded: bool = False  # not ready, and existing attachments lost a service (DHCP, DNS)


class ErrorKind(enum.Enum):
    UNAVAILABLE = "unavailable"  # the supervisor is not running or not answering
    NOT_FOUND = "not-found"  # no such NI
    NOT_READY = "not-ready"  # the NI exists but cannot take attachments now
    INVALID = "invalid"  # a bad argument (MAC, host IP, port, netns path)
    CONFLICT = "conflict"  # a port mapping collides with one in force
    EXISTS = "exists"  # the key is attached already, or ifname exists in the netns
    NO_LEASE = "no-lease"  # the NI's dnsmasq gave no address
    UNSUPPORTED = "unsupported"  # this supervisor's API has no such call
    FAILED = "failed"  # anything else


class BackendError(NirunnerError):
    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Backend(Protocol):
    """The supervisor as the plugin sees it. Every call is one API round trip."""

    def attach(self, req: AttachRequest) -> Attachment:
        """Plug, lease, pin and map ports; all or nothing (a failure leaves no trace)."""
        ...

    def detach(self, ni: str, key: AttachmentKey) -> bool:
        """Undo attach; idempotent. False if there was nothing to remove."""
        ...

    def check(self, ni: str, key: AttachmentKey) -> CheckReport:
        ...

    def gc(self, ni: str, network: str, valid: Sequence[AttachmentKey]) -> GcReport:
        """Remove the CNI attachments of `network` in NI `ni` whose key is not in `valid`."""
        ...

    def ready(self, ni: str) -> Readiness:
        ...

    def close(self) -> None:
        ...


def connect(socket: str, timeout: float = 60.0) -> Backend:
    """The supervisor's API on its Unix socket (gRPC, loaded only now)."""
    from runner.cni.grpc_backend import GrpcBackend

    return GrpcBackend(socket, timeout)
