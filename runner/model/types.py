"""The validated values that the rest of nirunner works with (pure data).

Parsing and validation (with field paths and line numbers) live in
`runner.model.manifest` and `runner.model.config`; these classes are only
ever built from input that passed validation.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from runner.net.appedge import AclRule


class NIType(enum.StrEnum):
    LOCAL = "local"
    VPN = "vpn"
    SWITCH = "switch"


class IpsecBackend(enum.StrEnum):
    """Where ESP runs for VPN NIs (supervisor config `ipsecBackend`)."""

    AUTO = "auto"  # the kernel's ESP if it has it, else kernel-libipsec
    KERNEL = "kernel"  # XFRM in the NI netns
    LIBIPSEC = "libipsec"  # strongSwan's userspace ESP over a TUN device (always UDP-encapsulated)


class TaskSeccomp(enum.StrEnum):
    """The seccomp filter of NI tasks (supervisor config `taskSeccomp`)."""

    ENFORCE = "enforce"  # the NI allow-list; anything else fails with EPERM (default)
    LOG = "log"  # the allow-list, but anything else is allowed and logged by the kernel
    OFF = "off"  # no filter (debugging)


class Protocol(enum.StrEnum):
    TCP = "tcp"
    UDP = "udp"


@dataclass(frozen=True)
class DhcpRange:
    start: IPv4Address
    end: IPv4Address


@dataclass(frozen=True)
class Reservation:
    name: str  # a DNS label; also the app's hostname in DNS
    mac: str  # lower-case, colon separated
    ip: IPv4Address


@dataclass(frozen=True)
class Dhcp:
    range: DhcpRange
    lease_time: int  # seconds
    reservations: tuple[Reservation, ...] = ()


@dataclass(frozen=True)
class StaticHost:
    name: str  # a DNS name (labels joined by dots)
    addresses: tuple[IPv4Address, ...]


@dataclass(frozen=True)
class Dns:
    domain: str | None = None
    upstream: tuple[IPv4Address, ...] | None = None  # None: the device's resolvers
    static: tuple[StaticHost, ...] = ()


@dataclass(frozen=True)
class PortMap:
    name: str
    protocol: Protocol
    uplink_port: int
    target: str  # a reservation name or an IPv4 address inside the subnet
    target_port: int


@dataclass(frozen=True)
class Resources:
    memory: int = 64 << 20  # bytes
    cpu: float = 0.5  # cores
    pids: int = 256


@dataclass(frozen=True)
class PskAuth:
    """A pre-shared key, read from a file on the device (its bytes, minus one trailing newline)."""

    secret_file: str


@dataclass(frozen=True)
class CertAuth:
    """Certificate authentication: our certificate and key, and the CA that signs the peer's."""

    cert_file: str  # PEM
    key_file: str  # PEM, a secret
    ca_file: str  # PEM


@dataclass(frozen=True)
class Vpn:
    """The IPsec tunnel of a VPN NI; the local traffic selector is the NI's subnet."""

    remote: IPv4Address  # the peer (IKE)
    auth: PskAuth | CertAuth
    local_id: str
    remote_id: str
    remote_subnets: tuple[IPv4Network, ...]
    ike_proposals: tuple[str, ...] = ("default",)
    esp_proposals: tuple[str, ...] = ("default",)
    dpd: int = 30  # seconds between dead peer detection checks; 0: off


@dataclass(frozen=True)
class App:
    """A declared app (spec.apps): its identity on the bridge and its ACLs.

    `name` is its hostname (DNS and DHCP), the name `attach --app` binds and the
    flow log shows. `acls` None: no ACLs (everything allowed, as without the
    app edge); a tuple, even empty: default-deny but DHCP and DNS to the gateway.
    """

    name: str
    mac: str
    ip: IPv4Address | None = None  # None: whatever DHCP leases it
    acls: tuple[AclRule, ...] | None = None


@dataclass(frozen=True)
class FlowLog:
    """spec.flowLog: per-NI conntrack-based records of flows and DNS answers."""

    enabled: bool = True
    max_size: int = 4 << 20  # bytes of the file before it rotates
    keep: int = 3  # rotated files kept


@dataclass(frozen=True)
class NetworkInstance:
    """An NI. A switch NI (apps on the uplink's own segment) has no subnet, gateway,
    DHCP, DNS or port maps of ours: those are None or empty exactly for type switch."""

    name: str
    type: NIType
    subnet: IPv4Network | None
    gateway: IPv4Address | None
    dhcp: Dhcp | None
    uplink: str | None = None  # None: air-gapped
    mtu: int | None = None  # None: the uplink's MTU
    dns: Dns = field(default_factory=Dns)
    ntp: tuple[IPv4Address, ...] = ()
    port_maps: tuple[PortMap, ...] = ()
    resources: Resources = field(default_factory=Resources)
    vpn: Vpn | None = None  # exactly for type vpn
    apps: tuple[App, ...] = ()
    flow_log: FlowLog = field(default_factory=FlowLog)
    vlan: int | None = None  # switch NIs only: VLAN N of the uplink (None: untagged)

    def declared(self) -> tuple[App, ...]:
        """Every declared app: the reservations (a fixed IP, no ACLs), then spec.apps."""
        reservations = self.dhcp.reservations if self.dhcp else ()
        return tuple(App(r.name, r.mac, r.ip) for r in reservations) + self.apps

    def target_ip(self, pm: PortMap) -> IPv4Address:
        """The app address a port map points at (an app or reservation name, or an IP)."""
        for a in self.declared():
            if a.name == pm.target and a.ip is not None:
                return a.ip
        return IPv4Address(pm.target)


@dataclass(frozen=True)
class Uplink:
    name: str  # the name manifests use, e.g. "eth0"
    interface: str  # the kernel interface in the device netns


@dataclass(frozen=True)
class EtcdTls:
    ca: str  # PEM: the CA that signs the etcd members' certificates
    cert: str  # PEM: the device's client certificate; its CN is the device's etcd user
    key: str  # PEM: its private key (a secret)


@dataclass(frozen=True)
class EtcdSource:
    """Desired state from a fleet's etcd (supervisor config `source.etcd`)."""

    endpoints: tuple[str, ...]  # https://HOST:PORT (http:// only without tls)
    device: str  # this device's id: its keys are <prefix>/devices/<device>/...
    prefix: str = "/nirunner"
    tls: EtcdTls | None = None
    status_ttl: int = 10  # seconds: a dead device's status vanishes after this


@dataclass(frozen=True)
class MetricsConfig:
    """The Prometheus endpoint (supervisor config `metrics`): loopback or a Unix socket."""

    listen: str  # "/run/nirunner/metrics.sock" or "127.0.0.1:9464"
    cache_seconds: int = 5  # the expensive reads (nft, cgroups, VICI) are this old at most

    @property
    def unix_path(self) -> str | None:
        return self.listen if self.listen.startswith("/") else None

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2]) if self.unix_path is None else 0


@dataclass(frozen=True)
class SupervisorConfig:
    containerd_address: str = "/run/containerd/containerd.sock"
    containerd_namespace: str = "nirunner"
    state_dir: str = "/var/lib/nirunner"
    api_socket: str = "/run/nirunner/nirunner.sock"
    transit_pool: IPv4Network = IPv4Network("169.254.100.0/22")
    image: str = "nirunner/ni:0.1.0"
    resolv_conf: str = "/etc/resolv.conf"  # the device's resolvers: NIs' default upstream
    ipsec_backend: IpsecBackend = IpsecBackend.AUTO
    secrets_dir: str = "/etc/nirunner/secrets"  # VPN credential files must be below it
    uplinks: tuple[Uplink, ...] = ()
    source: EtcdSource | None = None  # None: manifests through the local API only
    task_seccomp: TaskSeccomp = TaskSeccomp.ENFORCE
    metrics: MetricsConfig | None = None  # None: no metrics endpoint (the default)
    # NI tasks that share one runc shim process (containerd's io.containerd.runc.v2.group):
    # ~13 MiB of shim per task alone; a shim killed takes its group's tasks with it, and
    # the supervisor restarts them (measured: see README, Performance)
    shim_group_size: int = 10

    def uplink(self, name: str) -> Uplink | None:
        return next((u for u in self.uplinks if u.name == name), None)
