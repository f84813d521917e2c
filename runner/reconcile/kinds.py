"""The kinds of items nirunner reconciles (pure values; see items.py).

    rank  kind       object                                   lives in / depends on
    0     uplink     an uplink interface (external)           -
    0     appns      an app's netns (external)                -
    0     interface  a device interface to take (external)    -
    1     statedir   <stateDir>/ni/<name>                     -
    2     netns      /run/netns/nr-<name>                     (after its state dir)
    3     sysctls    sysctls of a netns (or of an uplink)     netns | uplink
    4     veth       transit veth nr<slot> <-> uplink0        the NI's netns
    5     bridge     br0 with its MAC, MTU and gateway        netns
    6     routes     our routes of one table                  netns, the links they use
    7     rule       an ip rule (iif nr<slot> lookup <table>) (after its veth)
    7     localrule  "lookup local" moved from 0 to 32000     -
    8     nft        one nft table                            netns
    8     edge       table bridge edge: anti-spoofing rules   netns
    8     acl        table inet acl: the apps' ACLs           netns
    9     files      the NI's config dir (dnsmasq, swanctl)   (after its state dir)
    9     edgeport   an app port's elements in table edge     edge (a plug comes after it)
    10    task       the NI's containerd container and task   netns (after files, nft, acl)
    11    plug       an app's veth on br0                     bridge, the app's netns
    11    tap        a device interface taken onto br0        bridge, the interface
    12    appaddr    a CNI app's address, route, pinned lease its plug (after files, task)

The NI's state dir is created first and removed last: it is the record that
this supervisor owns the NI's objects (network namespaces are global).

Leases learned from dnsmasq and the flow log are not items: the supervisor follows
them live for the NIs whose netns exists (runner.supervisor.edgewatch), as it
follows their kernel objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from runner.containerd.spec import Limits
from runner.net import names
from runner.net.appedge import AppPort, NIAcls
from runner.net.routing import Route
from runner.net.routing import Rule as RuleValue
from runner.reconcile.items import Change, Item


def _id(kind: str, key: str) -> str:
    return f"{kind}:{key}"


def netns_id(name: str) -> str:
    return _id("netns", name)


def statedir_id(ni: str) -> str:
    return _id("statedir", ni)


def uplink_id(name: str) -> str:
    return _id("uplink", name)


DEVICE_NFT_ID = "nft:device/inet nirunner"


def edge_id(netns: str) -> str:
    return _id("edge", netns)


def acl_id(netns: str) -> str:
    return _id("acl", netns)


def edgeport_id(netns: str, port: str) -> str:
    return _id("edgeport", f"{netns}/{port}")


@dataclass(frozen=True)
class Uplink(Item):
    """An uplink interface of the device: not ours, it only orders what uses it."""

    KIND = "uplink"
    RANK = 0
    EXTERNAL = True
    name: str
    interface: str

    @property
    def key(self) -> str:
        return self.name

    def describe(self) -> str:
        return f"uplink {self.name} ({self.interface})"


def appns_id(path: str) -> str:
    return _id("appns", path)


@dataclass(frozen=True)
class AppNetns(Item):
    """An app's network namespace (a path): not ours; a plug into it waits for it."""

    KIND = "appns"
    RANK = 0
    EXTERNAL = True
    path: str
    inode: int

    @property
    def key(self) -> str:
        return self.path

    def describe(self) -> str:
        return f"app netns {self.path}"


@dataclass(frozen=True)
class StateDir(Item):
    """<stateDir>/ni/<ni>: config/, state/ and the task log; ours as long as it exists."""

    KIND = "statedir"
    RANK = 1
    ni: str
    path: str

    @property
    def key(self) -> str:
        return self.ni

    def describe(self) -> str:
        return f"state dir {self.path}"


@dataclass(frozen=True)
class Netns(Item):
    KIND = "netns"
    RANK = 2
    ni: str
    name: str
    inode: int = field(default=0, compare=False)  # observed: a re-created one has another

    @property
    def key(self) -> str:
        return self.name

    def after(self) -> tuple[str, ...]:
        return (statedir_id(self.ni),)

    def describe(self) -> str:
        return f"netns {self.name}"


@dataclass(frozen=True)
class Sysctls(Item):
    """Sysctls by path under /proc/sys, in an NI netns or the device's (netns None)."""

    KIND = "sysctls"
    RANK = 3
    ni: str
    netns: str | None
    values: tuple[tuple[str, str], ...]
    uplink: str | None = None  # sysctls of an uplink interface: they exist only with it

    @property
    def key(self) -> str:
        where = self.netns or "device"
        return f"{where}/{self.uplink}" if self.uplink else where

    def deps(self) -> tuple[str, ...]:
        if self.uplink:
            return (uplink_id(self.uplink),)
        return (netns_id(self.netns),) if self.netns else ()

    @property
    def inside(self) -> str | None:
        return netns_id(self.netns) if self.netns else None

    def describe(self) -> str:
        where = f"in {self.netns}" if self.netns else "of the device"
        return f"sysctls {where}" + (f" for uplink {self.uplink}" if self.uplink else "")

    def changes(self, old: Any) -> list[Change]:
        before = dict(old.values)
        return [Change("sysctls", f"{k} {before.get(k, '(unset)')} -> {v}")
                for k, v in self.values if before.get(k) != v]


@dataclass(frozen=True)
class Veth(Item):
    """A transit link: `name` in the device netns, `peer_name` in the NI's netns."""

    KIND = "veth"
    RANK = 4
    RECREATE_ON = ("peer_netns", "peer_name")
    ni: str
    name: str
    peer_netns: str
    peer_name: str
    mtu: int
    address: IPv4Interface
    peer_address: IPv4Interface

    @property
    def key(self) -> str:
        return self.name

    def deps(self) -> tuple[str, ...]:
        return (netns_id(self.peer_netns),)

    @property
    def inside(self) -> str | None:
        """A veth pair goes when either end's netns goes: the kernel takes the device end
        with the NI's netns, many pairs at once (50 in ~20 ms; one by one ~15 ms each).
        A create finds an end still there (the kernel not done yet) stale, and replaces it."""
        return netns_id(self.peer_netns)

    def describe(self) -> str:
        return (f"veth {self.name} {self.address} <-> {self.peer_netns}/{self.peer_name} "
                f"{self.peer_address}")

    def changes(self, old: Any) -> list[Change]:
        out = []
        if old.mtu != self.mtu:
            out.append(Change("MTU", f"mtu {old.mtu} -> {self.mtu}"))
        if (old.address, old.peer_address) != (self.address, self.peer_address):
            out.append(Change("transit link", f"addresses {old.address} <-> {old.peer_address}"
                              f" -> {self.address} <-> {self.peer_address}"))
        return out


@dataclass(frozen=True)
class Bridge(Item):
    """The NI's br0: a fixed MAC (else it takes its lowest port's), the gateway address
    (None: an air-gapped switch NI's, plain L2)."""

    KIND = "bridge"
    RANK = 5
    ni: str
    netns: str
    name: str
    mac: str
    mtu: int
    address: IPv4Interface | None

    @property
    def key(self) -> str:
        return f"{self.netns}/{self.name}"

    def deps(self) -> tuple[str, ...]:
        return (netns_id(self.netns),)

    @property
    def inside(self) -> str | None:
        return netns_id(self.netns)

    def describe(self) -> str:
        return f"bridge {self.name} in {self.netns} ({self.mac}, {self.address or 'no address'})"

    def changes(self, old: Any) -> list[Change]:
        out = []
        if old.mtu != self.mtu:
            out.append(Change("MTU", f"mtu {old.mtu} -> {self.mtu}"))
        if old.address != self.address:
            out.append(Change("gateway", f"address {old.address} -> {self.address}"))
        if old.mac != self.mac:
            out.append(Change("gateway", f"mac {old.mac} -> {self.mac}"))
        return out


@dataclass(frozen=True)
class Routes(Item):
    """Our routes (proto nirunner) of one route table, in an NI netns or the device's."""

    KIND = "routes"
    RANK = 6
    ni: str
    netns: str | None
    table: int
    routes: tuple[Route, ...]
    links: tuple[str, ...] = ()  # ids of the link items the routes go through
    # ids of uplinks (and switch shims) they use: ordering only, never a reason to change
    uplinks: tuple[str, ...] = field(default=(), compare=False)

    @property
    def key(self) -> str:
        return f"{self.netns or 'device'}/{self.table}"

    def deps(self) -> tuple[str, ...]:
        return ((netns_id(self.netns),) if self.netns else ()) + self.links

    def after(self) -> tuple[str, ...]:
        return self.uplinks

    @property
    def inside(self) -> str | None:
        return netns_id(self.netns) if self.netns else None

    def describe(self) -> str:
        where = f"in {self.netns}" if self.netns else "of the device"
        table = "main" if self.table == 254 else str(self.table)
        return f"routes of table {table} {where}"

    def changes(self, old: Any) -> list[Change]:
        before, now = set(old.routes), set(self.routes)
        return ([Change("routes", f"- {r}") for r in sorted(before - now, key=str)]
                + [Change("routes", f"+ {r}") for r in sorted(now - before, key=str)])


@dataclass(frozen=True)
class Rule(Item):
    """An ip rule in the device netns, owned by its priority."""

    KIND = "rule"
    RANK = 7
    RECREATE_ON = ("rule",)
    ni: str
    rule: RuleValue
    link: str | None = None  # the id of the transit link it names (ordering only)

    @property
    def key(self) -> str:
        return str(self.rule.priority)

    def after(self) -> tuple[str, ...]:
        return (self.link,) if self.link else ()

    def describe(self) -> str:
        return f"ip rule {self.rule}"


@dataclass(frozen=True)
class LocalRule(Item):
    """"lookup local" moved from priority 0 to `priority`, below the transit rules, so NI
    traffic to another uplink's address leaves through its own uplink (hairpin outside)."""

    KIND = "localrule"
    RANK = 7
    priority: int
    table: int

    @property
    def key(self) -> str:
        return "local"

    def describe(self) -> str:
        return f"ip rule {self.priority}: from all lookup local (moved from 0)"


@dataclass(frozen=True)
class NftTable(Item):
    """One nft table, applied as one `nft -f` transaction.

    `facets` name what the table does in words ((topic, key, value), e.g. a port map),
    so a change can say "port map plc-web 8080 -> 8090" instead of "ruleset changed".
    """

    KIND = "nft"
    RANK = 8
    ni: str
    netns: str | None
    family: str
    name: str
    text: str
    facets: tuple[tuple[str, str, str], ...] = field(default=(), compare=False)

    @property
    def key(self) -> str:
        return f"{self.netns or 'device'}/{self.family} {self.name}"

    def deps(self) -> tuple[str, ...]:
        return (netns_id(self.netns),) if self.netns else ()

    @property
    def inside(self) -> str | None:
        return netns_id(self.netns) if self.netns else None

    def describe(self) -> str:
        return f"nft table {self.family} {self.name}" + (f" in {self.netns}" if self.netns else "")

    def changes(self, old: Any) -> list[Change]:
        out = facet_changes(old.facets, self.facets)
        return out or [Change("firewall", "ruleset changed")]


def facet_changes(old: tuple[tuple[str, str, str], ...],
                  new: tuple[tuple[str, str, str], ...]) -> list[Change]:
    """Words for the facets that were added, removed or changed.

    A facet's topic is plural ("port maps"); its key may name an NI ("site/web") so
    that a change of the device's table is reported for that NI too.
    """
    before = {(t, k): v for t, k, v in old}
    after = {(t, k): v for t, k, v in new}
    out: list[Change] = []
    for (topic, key), value in after.items():
        ni, _, name = key.rpartition("/")
        what = f"{topic.removesuffix('s')} {key}"
        if (topic, key) not in before:
            out.append(Change(topic, f"{what} added ({value})", ni))
        elif before[(topic, key)] != value:
            out.append(Change(topic, f"{what} {_delta(before[(topic, key)], value)}", ni))
    for (topic, key), value in before.items():
        if (topic, key) not in after:
            ni = key.rpartition("/")[0]
            out.append(Change(topic, f"{topic.removesuffix('s')} {key} removed ({value})", ni))
    return out


def _delta(old: str, new: str) -> str:
    """"8080 -> 8090" when one word differs, else "a b -> c d" in full."""
    a, b = old.split(), new.split()
    if len(a) == len(b):
        diff = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
        if len(diff) == 1:
            return f"{diff[0][0]} -> {diff[0][1]}"
    return f"{old} -> {new}"


@dataclass(frozen=True)
class EdgeTable(Item):
    """table bridge edge of an NI: anti-spoofing at every app port.

    Its rules never change while the NI lives; its app ports (EdgePort) and the
    leased addresses (Leases) are elements. Applying it again would drop them, so a
    changed one is re-created, and they with it.
    """

    KIND = "edge"
    RANK = 8
    RECREATE_ON = ("text",)
    ni: str
    netns: str
    text: str  # the table without ports or leases (runner.render.appedge.edge_ruleset)
    # (MAC, IP) of the declared apps' fixed addresses: when the table is made with the
    # current leases, those leases are left to the ports (allowed for good)
    fixed: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    lease_seconds: int = field(default=0, compare=False)  # in `text` already

    @property
    def key(self) -> str:
        return self.netns

    def deps(self) -> tuple[str, ...]:
        return (netns_id(self.netns),)

    @property
    def inside(self) -> str | None:
        return netns_id(self.netns)

    def describe(self) -> str:
        return f"nft table bridge edge in {self.netns}"


@dataclass(frozen=True)
class AclTable(Item):
    """table inet acl of an NI: its apps' ACLs, changed live in one transaction that keeps
    the host-name sets; `text` renders `acls` with their fixed addresses (leased ones are
    added when it is applied), so equal texts are equal ACLs."""

    KIND = "acl"
    RANK = 8
    ni: str
    netns: str
    text: str
    acls: NIAcls = field(compare=False)

    @property
    def key(self) -> str:
        return self.netns

    def deps(self) -> tuple[str, ...]:
        return (netns_id(self.netns),)

    @property
    def inside(self) -> str | None:
        return netns_id(self.netns)

    def describe(self) -> str:
        return f"nft table inet acl in {self.netns}"

    def changes(self, old: Any) -> list[Change]:
        if not isinstance(old.acls, NIAcls) or old.acls.ni != self.acls.ni:
            return [Change("ACLs", "ruleset changed")]
        before = {a.app: a for a in old.acls.apps}
        now = {a.app: a for a in self.acls.apps}
        out = [Change("ACLs", f"ACLs of app {n} added ({len(now[n].rules)} rules)")
               for n in sorted(set(now) - set(before))]
        out += [Change("ACLs", f"ACLs of app {n} removed") for n in sorted(set(before) - set(now))]
        out += [Change("ACLs", f"ACLs of app {n} changed") for n in sorted(set(now) & set(before))
                if now[n] != before[n]]
        if old.acls.dns_log != self.acls.dns_log:
            out.append(Change("ACLs", f"DNS answers to the flow log "
                                      f"{'on' if self.acls.dns_log else 'off'}"))
        return out or [Change("ACLs", "ruleset changed")]


@dataclass(frozen=True)
class EdgePort(Item):
    """An app port registered in table bridge edge: its MAC, and its fixed addresses."""

    KIND = "edgeport"
    RANK = 9
    RECREATE_ON = ("port",)
    ni: str
    netns: str
    port: AppPort

    @property
    def key(self) -> str:
        return f"{self.netns}/{self.port.port}"

    def deps(self) -> tuple[str, ...]:
        return (edge_id(self.netns),)

    @property
    def inside(self) -> str | None:
        return netns_id(self.netns)

    def describe(self) -> str:
        p = self.port
        who = f"app {p.app}" if p.app else "undeclared"
        ips = "".join(f", {ip}" for ip in p.ips)
        return f"edge port {p.port} in {self.netns} ({who}, {p.mac}{ips})"


@dataclass(frozen=True)
class Secret:
    """A credential the supervisor copies from a device file into the config dir.

    `stamp` identifies the source's content cheaply (inode, size, mtime), so a
    changed file is read again and an unchanged one is not.
    """

    name: str  # under the config dir
    source: str  # the device's file (from the manifest)
    mode: int
    stamp: tuple[int, int, int] = (0, 0, 0)


# which config file concerns what, for results and events
FILE_TOPICS = {
    "dnsmasq.conf": "DHCP/DNS settings",
    "dhcp-hosts": "DHCP reservations",
    "hosts": "DNS names",
    "servers": "upstream DNS",
    "dhcp-opts": "DHCP options",
    "strongswan.conf": "VPN settings",
}


def file_topic(name: str) -> str:
    if name in FILE_TOPICS:
        return FILE_TOPICS[name]
    if name.startswith("swanctl/"):
        return "VPN credentials" if "/private/" in name or name.endswith(
            "secrets.conf") else "VPN connection"
    return "config files"


@dataclass(frozen=True)
class ConfigFiles(Item):
    """The NI's config dir (read-only /etc/nirunner in its task) and its credentials.

    A change is written and then handed to the running task: dnsmasq re-reads its
    files on SIGHUP, charon takes its connection and secrets over VICI.
    """

    KIND = "files"
    RANK = 9
    ni: str
    dir: str
    files: tuple[tuple[str, str], ...]  # name -> text
    secrets: tuple[Secret, ...] = ()
    vpn: Any = field(default=None, compare=False)  # the VpnPlan, for reloads over VICI

    @property
    def key(self) -> str:
        return self.ni

    def after(self) -> tuple[str, ...]:
        return (statedir_id(self.ni),)

    def describe(self) -> str:
        return f"config files of NI {self.ni}"

    def changed_names(self, old: ConfigFiles) -> list[str]:
        before, now = dict(old.files), dict(self.files)
        names = [n for n in sorted(set(before) | set(now)) if before.get(n) != now.get(n)]
        old_s = {s.name: s for s in old.secrets}
        names += [s.name for s in self.secrets if old_s.get(s.name) != s]
        names += [n for n in old_s if n not in {s.name for s in self.secrets}]
        return names

    def changes(self, old: Any) -> list[Change]:
        return [Change(file_topic(n), n) for n in self.changed_names(old)]


@dataclass(frozen=True)
class Task(Item):
    """The NI's containerd container and its running task.

    `generation` fingerprints what the running task cannot take live (type,
    subnet, dnsmasq.conf, ...): a new one, or a new image, means a new container.
    Limits change live; a stopped task is started again.
    """

    KIND = "task"
    RANK = 10
    RECREATE_ON = ("image", "generation", "netns_path", "ni_type", "uplink", "config_dir",
                   "state_dir", "seccomp")
    ni: str
    container_id: str
    image: str
    generation: str
    ni_type: str
    uplink: str
    netns: str
    netns_path: str
    config_dir: str
    state_dir: str
    log_path: str
    limits: Limits
    seccomp: str = "enforce"  # the supervisor config's taskSeccomp (its profile is in
    #                           the generation, so a new profile is a new task too)
    running: bool = True
    pid: int = field(default=0, compare=False)  # observed
    status: str = field(default="", compare=False)  # observed: running, stopped, ...
    shim_group: str = field(default="", compare=False)  # observed: its shared shim's group

    @property
    def key(self) -> str:
        return self.container_id

    def deps(self) -> tuple[str, ...]:
        return (netns_id(self.netns),)

    def after(self) -> tuple[str, ...]:
        return (_id("files", self.ni), _id("nft", f"{self.netns}/inet ni"),
                _id("sysctls", self.netns), DEVICE_NFT_ID, acl_id(self.netns))

    def describe(self) -> str:
        return f"task {self.container_id}"

    def changes(self, old: Any) -> list[Change]:
        out = []
        if old.limits != self.limits:
            out.append(Change("resource limits", "limits changed"))
        if old.running != self.running:
            was = old.status or "stopped"
            out.append(Change("task", f"start (was {was})" if self.running else "stop"))
        for name, why in (("image", "new image"),
                          ("generation", "settings the task reads at start"),
                          ("seccomp", "another seccomp mode")):
            if getattr(old, name) != getattr(self, name):
                out.append(Change("task", why))
        return out


@dataclass(frozen=True)
class Plug(Item):
    """An app's veth: `host_if` on the NI's br0, `ifname` (with `mac`) in the app's netns.
    A switch NI on a segment has no bridge (bridge ""): its port table cross-connects."""

    KIND = "plug"
    RANK = 11
    RECREATE_ON = ("app_netns", "app_inode", "ifname", "mac")
    ni: str
    netns: str  # the NI's
    bridge: str
    host_if: str
    app_netns: str  # path
    ifname: str
    mac: str
    mtu: int
    app_inode: int = 0  # the app netns's identity: a new one needs a new plug

    @property
    def key(self) -> str:
        return f"{self.ni}/{self.host_if}"

    def deps(self) -> tuple[str, ...]:
        on = _id("bridge", f"{self.netns}/{self.bridge}") if self.bridge else netns_id(self.netns)
        return (on, appns_id(self.app_netns))

    def after(self) -> tuple[str, ...]:
        # its port is registered in table bridge edge before the veth joins br0 (else
        # the edge drops its first frames), and unregistered after it left
        return (edgeport_id(self.netns, self.host_if),)

    @property
    def inside(self) -> str | None:
        return netns_id(self.netns)

    def describe(self) -> str:
        return f"plug {self.host_if} <-> {self.app_netns} {self.ifname} ({self.mac})"

    def changes(self, old: Any) -> list[Change]:
        return [Change("MTU", f"mtu {old.mtu} -> {self.mtu}")] if old.mtu != self.mtu else []


def interface_id(name: str) -> str:
    return _id("interface", name)


@dataclass(frozen=True)
class DeviceLink(Item):
    """A link of the device netns to be taken into an NI (a VM's tap), as a fact: present
    while it exists, in the device netns or already taken. Not ours: ordering only."""

    KIND = "interface"
    RANK = 0
    EXTERNAL = True
    name: str

    @property
    def key(self) -> str:
        return self.name

    def describe(self) -> str:
        return f"interface {self.name}"


@dataclass(frozen=True)
class TakenLink(Item):
    """A device interface (a VM's tap) taken into the NI's bridge as `host_if`.

    Its delete gives it back to the device netns with its name, MAC, MTU and up
    state (`orig_*`), so it is never implied by its netns's delete: a netns that
    goes takes its taps with it, and the VM would lose its tap.
    """

    KIND = "tap"
    RANK = 11
    RECREATE_ON = ("interface", "mac", "host_if")
    ni: str
    netns: str  # the NI's
    bridge: str
    host_if: str
    interface: str  # its name in the device netns
    mac: str
    mtu: int
    orig_mtu: int
    orig_up: bool

    @property
    def key(self) -> str:
        return f"{self.ni}/{self.host_if}"

    def deps(self) -> tuple[str, ...]:
        return (_id("bridge", f"{self.netns}/{self.bridge}"), interface_id(self.interface))

    def describe(self) -> str:
        return f"tap {self.interface} as {self.host_if} on {self.bridge} in {self.netns}"

    def changes(self, old: Any) -> list[Change]:
        return [Change("MTU", f"mtu {old.mtu} -> {self.mtu}")] if old.mtu != self.mtu else []


@dataclass(frozen=True)
class AppAddress(Item):
    """A CNI attachment's lease as static configuration inside the app's netns (address,
    default route, MTU), and held forever by the NI's dnsmasq.

    Creating it configures the interface, then asks dnsmasq again for the address
    (its pinned dhcp-hosts line is in the NI's files, written before): the ACK
    makes the lease infinite. `pinned` is read from dnsmasq's lease file.
    """

    KIND = "appaddr"
    RANK = 12
    RECREATE_ON = ("app_netns", "ifname", "mac")
    ni: str
    host_if: str  # its plug's bridge port
    app_netns: str  # path
    ifname: str
    mac: str
    address: IPv4Interface
    gateway: IPv4Address | None  # None: no default route (an air-gapped NI)
    mtu: int
    hostname: str = ""
    lease_file: str = ""  # dnsmasq's lease file of the NI
    pinned: bool = True  # dnsmasq's lease file holds the lease forever

    @property
    def key(self) -> str:
        return f"{self.ni}/{self.host_if}"

    def deps(self) -> tuple[str, ...]:
        return (_id("plug", self.key),)

    def after(self) -> tuple[str, ...]:  # dnsmasq runs and has read the pin
        return (_id("files", self.ni), _id("task", names.container_id(self.ni)))

    @property
    def inside(self) -> str | None:
        return _id("plug", self.key)  # its interface goes with the plug

    def describe(self) -> str:
        via = f" via {self.gateway}" if self.gateway else ""
        return f"address {self.address}{via} on {self.app_netns} {self.ifname}"

    def changes(self, old: Any) -> list[Change]:
        out = []
        if old.address != self.address:
            out.append(Change("apps", f"address {old.address} -> {self.address}"))
        if old.gateway != self.gateway:
            out.append(Change("apps", f"default route via {old.gateway or '(none)'} -> "
                                      f"{self.gateway or '(none)'}"))
        if old.mtu != self.mtu:
            out.append(Change("MTU", f"mtu {old.mtu} -> {self.mtu}"))
        if old.pinned != self.pinned or old.hostname != self.hostname:
            out.append(Change("apps", f"lease of {self.address.ip} pinned again"))
        return out
