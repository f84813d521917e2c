"""NI manifests (YAML, `kind: NetworkInstance`) -> validated NetworkInstance values.

Reading is in two steps. Each manifest is checked on its own (syntax, types,
addresses, names) by `load_documents` / `load_paths`; `validate_set` then checks
a set of NIs against each other and the supervisor config (names, uplinks, port
clashes). `load_and_validate` does both. Problems are collected, never raised
one by one: a single ManifestError lists them all with file, NI, field path and line.

Every name that ends up in dnsmasq config or nftables rules (NI, reservation,
static host, port map, domain) must match a strict pattern, so no value can
inject configuration.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from runner.model.config import UPLINK_NAME, UPLINK_NAME_RULE
from runner.model.errors import (
    Checker,
    ManifestError,
    Problem,
    describe,
    did_you_mean,
    line_of,
    read_documents,
    show,
)
from runner.model.types import (
    CertAuth,
    Dhcp,
    DhcpRange,
    Dns,
    NetworkInstance,
    NIType,
    PortMap,
    Protocol,
    PskAuth,
    Reservation,
    Resources,
    StaticHost,
    SupervisorConfig,
    Vpn,
)

API_VERSION = "nirunner/v1"
KIND = "NetworkInstance"
NAME_MAX = 32
MAX_BYTES = 1 << 20
DEFAULT_LEASE = 3600
MIN_LEASE, MAX_LEASE = 120, 365 * 86400
MIN_MEMORY = 16 << 20
MAX_CPU = 64.0

_LABEL = re.compile(r"[a-z](?:[a-z0-9-]*[a-z0-9])?")
_LABEL_RULE = (
    "use lowercase letters, digits and '-', start with a letter, end with a letter or digit"
)
_DNS_NAME = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?"
)
_DNS_RULE = (
    "use dot-separated labels of lowercase letters, digits and '-' (at most 63 each, "
    "253 in all), the last one starting with a letter"
)
_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}|[0-9a-f]{2}(?:-[0-9a-f]{2}){5}", re.I)
_CIDR = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}/[0-9]{1,2}")
_DOTTED = re.compile(r"[0-9.]+")
_DURATION = re.compile(r"([0-9]{1,9})([smhd])")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_MEMORY = re.compile(r"([0-9]{1,15})(Ki|Mi|Gi|K|M|G)?")
_MEMORY_UNITS = {None: 1, "K": 10**3, "M": 10**6, "G": 10**9, "Ki": 1 << 10, "Mi": 1 << 20,
                 "Gi": 1 << 30}
# IKE identities end up (quoted) in swanctl.conf: no quotes, backslashes, braces, '#'
_IKE_ID = re.compile(r"[A-Za-z0-9@._:=,+/*%-](?:[A-Za-z0-9@._:=,+/*% -]*[A-Za-z0-9@._:=,+/*%-])?")
_IKE_ID_RULE = ("use letters, digits, spaces and @ . _ : = , + / * % -, not starting or "
                "ending with a space, at most 255 characters")
_PROPOSAL = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_PROPOSAL_RULE = "a strongSwan proposal like aes256-sha256-modp2048, aes256gcm16 or default"
_FILE = re.compile(r"/[^\x00-\x1f\x7f]*")
_FILE_RULE = "must be an absolute path without control characters"
MAX_DPD = 3600

_TOP = ("apiVersion", "kind", "metadata", "spec")
_SPEC = ("type", "uplink", "subnet", "gateway", "mtu", "dhcp", "dns", "ntp", "portMaps",
         "resources", "vpn")
_DHCP = ("range", "leaseTime", "reservations")
_RESERVATION = ("name", "mac", "ip")
_DNS = ("domain", "upstream", "static")
_STATIC = ("name", "addresses")
_PORT_MAP = ("name", "protocol", "uplinkPort", "target", "targetPort")
_RESOURCES = ("memory", "cpu", "pids")
_VPN = ("remote", "auth", "localId", "remoteId", "remoteSubnets", "ike", "esp", "dpd")
_VPN_REQUIRED = ("remote", "auth", "localId", "remoteId", "remoteSubnets")
_AUTH = ("psk", "cert")
_PSK = ("secretFile",)
_CERT = ("certFile", "keyFile", "caFile")


@dataclass(frozen=True)
class Located:
    """A parsed NI with where it came from, so set checks can point at lines too."""

    ni: NetworkInstance
    source: str | None = None
    lines: Mapping[str, int] = field(default_factory=dict, compare=False)

    def line(self, path: str) -> int | None:
        return line_of(self.lines, path)


# --- public API -------------------------------------------------------------------------


def load_documents(text: str, source: str | None = None) -> list[NetworkInstance]:
    """The NIs of a YAML text (one NI per document; empty documents are skipped)."""
    return [loc.ni for loc in parse_documents(text, source)]


def load_paths(paths: Sequence[str]) -> list[NetworkInstance]:
    """The NIs of files and directories (a directory: its *.yaml and *.yml, sorted)."""
    return [loc.ni for loc in parse_paths(paths)]


def load_and_validate(paths: Sequence[str], config: SupervisorConfig) -> list[NetworkInstance]:
    """load_paths + validate_set, with the problems of both in one ManifestError."""
    located, problems = _parse_paths(paths)
    problems += set_problems(located, config)
    if problems:
        raise ManifestError(problems)
    return [loc.ni for loc in located]


def validate_set(nis: Iterable[NetworkInstance | Located], config: SupervisorConfig) -> None:
    """Checks across NIs: unique names, known uplinks, port maps only with an uplink,
    no two port maps on the same uplink + protocol + uplinkPort."""
    problems = set_problems(nis, config)
    if problems:
        raise ManifestError(problems)


def parse_documents(text: str, source: str | None = None) -> list[Located]:
    """Like load_documents, keeping each NI's source and field lines."""
    located, problems = _parse_text(text, source)
    if problems:
        raise ManifestError(problems)
    return located


def parse_paths(paths: Sequence[str]) -> list[Located]:
    """Like load_paths, keeping each NI's source and field lines."""
    located, problems = _parse_paths(paths)
    if problems:
        raise ManifestError(problems)
    return located


# --- files and documents ----------------------------------------------------------------


def _parse_paths(paths: Sequence[str]) -> tuple[list[Located], list[Problem]]:
    located: list[Located] = []
    problems: list[Problem] = []
    for name in _expand(paths, problems):
        text = _read(name, problems)
        if text is not None:
            found, bad = _parse_text(text, name)
            located += found
            problems += bad
    return located, problems


def _expand(paths: Sequence[str], problems: list[Problem]) -> list[str]:
    files: list[str] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = [p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()]
            files += sorted(str(p) for p in found)
        elif path.exists():
            files.append(name)
        else:
            problems.append(Problem(name, None, "", "cannot be read: no such file or directory"))
    return files


def _read(name: str, problems: list[Problem]) -> str | None:
    try:
        with open(name, "rb") as f:
            data = f.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            problems.append(Problem(name, None, "", f"is larger than {MAX_BYTES} bytes"))
            return None
        return data.decode("utf-8")
    except OSError as e:
        problems.append(Problem(name, None, "", f"cannot be read: {e.strerror}"))
    except UnicodeDecodeError:
        problems.append(Problem(name, None, "", "cannot be read: it is not UTF-8"))
    return None


def _parse_text(text: str, source: str | None) -> tuple[list[Located], list[Problem]]:
    docs, fatal = read_documents(text)
    problems = [Problem(source, None, "", msg, line) for msg, line in fatal]
    located: list[Located] = []
    for doc in docs:
        checker = Checker(source, doc)
        ni = _network_instance(checker)
        if ni is not None and checker.ok:
            located.append(Located(ni, source, doc.lines))
        problems += checker.problems()
    problems.sort(key=lambda p: (p.line is None, p.line or 0))
    return located, problems


# --- one manifest -----------------------------------------------------------------------


def _network_instance(c: Checker) -> NetworkInstance | None:
    if isinstance(c.root, dict) and "apiVersion" not in c.root and "kind" not in c.root:
        c.error("", f"the document is not a manifest: it has no apiVersion and no kind "
                    f"(expected {API_VERSION} {KIND})")
        return None
    top = c.mapping(c.root, "", _TOP, required=_TOP)
    if top is None:
        return None
    meta = c.mapping(top.get("metadata"), "metadata", ("name",), required=("name",))
    name = _label(c, meta.get("name"), "metadata.name", NAME_MAX) if meta else None
    c.ni = name
    for key, expected in (("apiVersion", API_VERSION), ("kind", KIND)):
        value = c.string(top.get(key), key)
        if value is not None and value != expected:
            c.error(key, f"must be {expected!r}, not {show(value)}")
    return _spec(c, top.get("spec"), name)


def _spec(c: Checker, value: object, name: str | None) -> NetworkInstance | None:
    s = c.mapping(value, "spec", _SPEC, required=("type", "subnet"))
    if s is None:
        return None
    ni_type = _ni_type(c, s.get("type"))
    uplink = c.matching(s.get("uplink"), "spec.uplink", UPLINK_NAME, UPLINK_NAME_RULE, 32)
    subnet = _subnet(c, s.get("subnet"))
    gateway = _gateway(c, s.get("gateway"), subnet)
    mtu = c.integer(s.get("mtu"), "spec.mtu", 576, 9000)
    dhcp = _dhcp(c, s.get("dhcp"), subnet, gateway)
    hosts = _reservation_names(s.get("dhcp"))
    dns = _dns(c, s.get("dns"), hosts)
    ntp = tuple(_addresses(c, s.get("ntp"), "spec.ntp"))
    port_maps = _port_maps(c, s.get("portMaps"), subnet, gateway, hosts)
    resources = _resources(c, s.get("resources"))
    vpn = _vpn(c, s.get("vpn"), subnet)
    _vpn_rules(c, s, ni_type, vpn, dns)
    if (not c.ok or name is None or ni_type is None or subnet is None or gateway is None
            or dhcp is None or dns is None or resources is None):
        return None
    return NetworkInstance(
        name=name, type=ni_type, subnet=subnet, gateway=gateway, dhcp=dhcp, uplink=uplink,
        mtu=mtu, dns=dns, ntp=ntp, port_maps=port_maps, resources=resources, vpn=vpn,
    )


def _ni_type(c: Checker, value: object) -> NIType | None:
    text = c.string(value, "spec.type")
    if text is None:
        return None
    if text == NIType.SWITCH:
        c.error("spec.type", f"{text!r} is not supported yet (only 'local' and 'vpn' are)")
    elif text not in (NIType.LOCAL, NIType.VPN):
        choices = [t.value for t in NIType]
        hint = did_you_mean(text, choices)
        c.error("spec.type", f"{show(text)} is not one of {', '.join(choices)}{hint}")
    else:
        return NIType(text)
    return None


def _label(c: Checker, value: object, path: str, max_len: int = 63) -> str | None:
    rule = f"{_LABEL_RULE}, at most {max_len} characters"
    return c.matching(value, path, _LABEL, rule, max_len)


def _dns_name(c: Checker, value: object, path: str) -> str | None:
    return c.matching(value, path, _DNS_NAME, _DNS_RULE, 253)


def _subnet(c: Checker, value: object) -> IPv4Network | None:
    text = c.string(value, "spec.subnet")
    if text is None:
        return None
    try:
        if not _CIDR.fullmatch(text):
            raise ValueError(text)
        net = IPv4Network(text, strict=False)
    except ValueError:
        c.error("spec.subnet", f"{show(text)} is not an IPv4 CIDR like 10.1.0.0/24")
        return None
    if not 8 <= net.prefixlen <= 30:
        c.error("spec.subnet", f"{text} has prefix /{net.prefixlen}; use /8 to /30")
    elif str(net) != text:
        c.error("spec.subnet", f"{text} has host bits set; did you mean {net}?")
    else:
        return net
    return None


def _not_a_host(ip: IPv4Address, subnet: IPv4Network) -> str | None:
    """Why `ip` cannot be an address of an interface in `subnet`, or None."""
    if ip not in subnet:
        return f"{ip} is outside spec.subnet {subnet}"
    if ip == subnet.network_address:
        return f"{ip} is the network address of spec.subnet {subnet}"
    if ip == subnet.broadcast_address:
        return f"{ip} is the broadcast address of spec.subnet {subnet}"
    return None


def _host(c: Checker, value: object, path: str, subnet: IPv4Network | None,
          gateway: IPv4Address | None = None) -> IPv4Address | None:
    """An address of an app in the subnet: a host address that is not the gateway."""
    ip = c.ipv4(value, path)
    if ip is None or subnet is None:
        return ip
    why = _not_a_host(ip, subnet)
    if why is None and ip == gateway:
        why = f"{ip} is spec.gateway"
    if why is not None:
        c.error(path, why)
        return None
    return ip


def _gateway(c: Checker, value: object, subnet: IPv4Network | None) -> IPv4Address | None:
    if value is None:
        return subnet.network_address + 1 if subnet else None
    return _host(c, value, "spec.gateway", subnet)


# --- DHCP ------------------------------------------------------------------------------


def _dhcp(c: Checker, value: object, subnet: IPv4Network | None,
          gateway: IPv4Address | None) -> Dhcp | None:
    d = {} if value is None else c.mapping(value, "spec.dhcp", _DHCP)
    if d is None:
        return None
    rng = _range(c, d.get("range"), subnet, gateway)
    lease = _duration(c, d.get("leaseTime"), "spec.dhcp.leaseTime")
    reservations = _reservations(c, d.get("reservations"), subnet, gateway)
    if rng is None:
        return None
    return Dhcp(rng, DEFAULT_LEASE if lease is None else lease, reservations)


def default_range(subnet: IPv4Network, gateway: IPv4Address) -> DhcpRange:
    """The upper half of the subnet's hosts, without the gateway.

    A gateway inside that half splits it; the larger part is used. A /30 whose
    gateway is its last host gets the first host.
    """
    first, last = int(subnet.network_address) + 1, int(subnet.broadcast_address) - 1
    low, high = first + (last - first + 1) // 2, last
    gw = int(gateway)
    if low <= gw <= high:
        low, high = (gw + 1, high) if high - gw >= gw - low else (low, gw - 1)
        if low > high:
            low, high = first, gw - 1
    return DhcpRange(IPv4Address(low), IPv4Address(high))


def _range(c: Checker, value: object, subnet: IPv4Network | None,
           gateway: IPv4Address | None) -> DhcpRange | None:
    path = "spec.dhcp.range"
    if value is None:
        return default_range(subnet, gateway) if subnet and gateway else None
    m = c.mapping(value, path, ("start", "end"), required=("start", "end"))
    if m is None:
        return None
    start = _host(c, m.get("start"), f"{path}.start", subnet)
    end = _host(c, m.get("end"), f"{path}.end", subnet)
    if start is None or end is None:
        return None
    if start > end:
        c.error(path, f"start {start} is after end {end}")
        return None
    if gateway is not None and start <= gateway <= end:
        c.error(path, f"{start}-{end} contains spec.gateway {gateway}")
        return None
    return DhcpRange(start, end)


def _duration(c: Checker, value: object, path: str, low: int = MIN_LEASE,
              high: int = MAX_LEASE, shown: str = "2m..365d") -> int | None:
    """Seconds from an int or '90s', '10m', '1h', '2d', in low..high (`shown` says so)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value)):
        seconds = int(m[1]) * _DURATION_UNITS[m[2]]
    elif isinstance(value, str):
        c.error(path, f"{show(value)} is not a duration like 90s, 10m, 1h, 2d or 3600")
        return None
    else:
        c.error(path, f"must be a duration like 1h or seconds, not {describe(value)}")
        return None
    if not low <= seconds <= high:
        c.error(path, f"{value} is out of range {shown}")
        return None
    return seconds


def _reservations(c: Checker, value: object, subnet: IPv4Network | None,
                  gateway: IPv4Address | None) -> tuple[Reservation, ...]:
    out: list[Reservation] = []
    names: dict[object, str] = {}
    macs: dict[object, str] = {}
    ips: dict[object, str] = {}
    for path, item in c.items(value, "spec.dhcp.reservations"):
        m = c.mapping(item, path, _RESERVATION, required=_RESERVATION)
        if m is None:
            continue
        name = _label(c, m.get("name"), f"{path}.name")
        mac = _mac(c, m.get("mac"), f"{path}.mac")
        ip = _host(c, m.get("ip"), f"{path}.ip", subnet, gateway)
        fresh = [_unique(c, seen, v, f"{path}.{k}")
                 for k, v, seen in (("name", name, names), ("mac", mac, macs), ("ip", ip, ips))
                 if v is not None]
        if name is not None and mac is not None and ip is not None and all(fresh):
            out.append(Reservation(name, mac, ip))
    return tuple(out)


def _reservation_names(dhcp: object) -> list[str]:
    """The well-formed reservation names, for port-map targets and DNS clashes.

    Read apart from _reservations so that a reservation with, say, a bad MAC does
    not also make every port map that targets it an error.
    """
    items = dhcp.get("reservations") if isinstance(dhcp, dict) else None
    if not isinstance(items, list):
        return []
    names = (item.get("name") for item in items if isinstance(item, dict))
    return [n for n in names if isinstance(n, str) and _LABEL.fullmatch(n)]


def _unique(c: Checker, seen: dict[object, str], value: object, path: str) -> bool:
    if value in seen:
        c.error(path, f"{show(str(value))} is already used by {seen[value]}")
        return False
    seen[value] = path.rsplit(".", 1)[0]
    return True


def _mac(c: Checker, value: object, path: str) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and path in c.raw:
        value = c.raw[path]  # YAML 1.1 reads 12:34:56:00:00:10 as a base-60 integer
    text = c.string(value, path)
    if text is None:
        return None
    if not _MAC.fullmatch(text):
        c.error(path, f"{show(text)} is not a MAC address like 02:00:00:00:00:10")
        return None
    mac = text.lower().replace("-", ":")
    if int(mac[:2], 16) & 1:
        c.error(path, f"{mac} is a multicast MAC address; use a unicast one")
    elif mac == "00:00:00:00:00:00":
        c.error(path, f"{mac} is not a usable MAC address")
    else:
        return mac
    return None


# --- DNS, NTP ---------------------------------------------------------------------------


def _dns(c: Checker, value: object, hosts: Sequence[str]) -> Dns | None:
    d = {} if value is None else c.mapping(value, "spec.dns", _DNS)
    if d is None:
        return None
    domain = _dns_name(c, d.get("domain"), "spec.dns.domain")
    upstream = d.get("upstream")
    servers = None if upstream is None else tuple(
        _addresses(c, upstream, "spec.dns.upstream", no_loopback=True))
    static = _static(c, d.get("static"), domain, hosts)
    return Dns(domain, servers, static)


def _addresses(c: Checker, value: object, path: str,
               no_loopback: bool = False) -> list[IPv4Address]:
    out: list[IPv4Address] = []
    for here, item in c.items(value, path):
        ip = c.unicast(item, here)
        if ip is not None and no_loopback and ip.is_loopback:
            c.error(here, f"{ip} is loopback, which inside the NI is the NI itself")
        elif ip is not None:
            out.append(ip)
    return out


def _static(c: Checker, value: object, domain: str | None,
            hosts: Sequence[str]) -> tuple[StaticHost, ...]:
    hostnames = {h: h for h in hosts}
    if domain:
        hostnames |= {f"{h}.{domain}": h for h in hosts}
    seen: dict[object, str] = {}
    out: list[StaticHost] = []
    for path, item in c.items(value, "spec.dns.static"):
        m = c.mapping(item, path, _STATIC, required=_STATIC)
        if m is None:
            continue
        name = _dns_name(c, m.get("name"), f"{path}.name")
        addresses = _addresses(c, m.get("addresses"), f"{path}.addresses")
        if m.get("addresses") == []:
            c.error(f"{path}.addresses", "must list at least one address")
        if name is not None and name in hostnames:
            c.error(f"{path}.name", f"{name!r} is already the hostname of reservation "
                                    f"{hostnames[name]!r}")
        elif name is not None and _unique(c, seen, name, f"{path}.name") and addresses:
            out.append(StaticHost(name, tuple(addresses)))
    return tuple(out)


# --- port maps, resources ---------------------------------------------------------------


def _port_maps(c: Checker, value: object, subnet: IPv4Network | None,
               gateway: IPv4Address | None,
               hosts: Sequence[str]) -> tuple[PortMap, ...]:
    names: dict[object, str] = {}
    out: list[PortMap] = []
    for path, item in c.items(value, "spec.portMaps"):
        m = c.mapping(item, path, _PORT_MAP, required=_PORT_MAP)
        if m is None:
            continue
        name = _label(c, m.get("name"), f"{path}.name")
        if name is not None and not _unique(c, names, name, f"{path}.name"):
            name = None
        protocol = _protocol(c, m.get("protocol"), f"{path}.protocol")
        uplink_port = c.integer(m.get("uplinkPort"), f"{path}.uplinkPort", 1, 65535)
        target = _target(c, m.get("target"), f"{path}.target", subnet, gateway, hosts)
        target_port = c.integer(m.get("targetPort"), f"{path}.targetPort", 1, 65535)
        if (name is not None and protocol is not None and uplink_port is not None
                and target is not None and target_port is not None):
            out.append(PortMap(name, protocol, uplink_port, target, target_port))
    return tuple(out)


def _protocol(c: Checker, value: object, path: str) -> Protocol | None:
    text = c.string(value, path)
    if text is None:
        return None
    if text not in (Protocol.TCP, Protocol.UDP):
        c.error(path, f"{show(text)} is not tcp or udp")
        return None
    return Protocol(text)


def _target(c: Checker, value: object, path: str, subnet: IPv4Network | None,
            gateway: IPv4Address | None, hosts: Sequence[str]) -> str | None:
    """A reservation name, or an app's IPv4 address inside the subnet."""
    text = c.string(value, path)
    if text is None:
        return None
    if _DOTTED.fullmatch(text):
        ip = _host(c, text, path, subnet, gateway)
        return str(ip) if ip else None
    if text in hosts:
        return text
    hint = did_you_mean(text, hosts) if _LABEL.fullmatch(text) else ""
    c.error(path, f"{show(text)} is neither a reservation name nor an IPv4 address{hint}")
    return None


def _resources(c: Checker, value: object) -> Resources | None:
    r = {} if value is None else c.mapping(value, "spec.resources", _RESOURCES)
    if r is None:
        return None
    default = Resources()
    memory = _memory(c, r.get("memory"), "spec.resources.memory")
    cpu = c.number(r.get("cpu"), "spec.resources.cpu")
    if cpu is not None and not 0 < cpu <= MAX_CPU:
        c.error("spec.resources.cpu", f"{cpu:g} is out of range (0, {MAX_CPU:g}]")
    pids = c.integer(r.get("pids"), "spec.resources.pids", 16, 65536)
    return Resources(
        memory=default.memory if memory is None else memory,
        cpu=default.cpu if cpu is None else cpu,
        pids=default.pids if pids is None else pids,
    )


def _memory(c: Checker, value: object, path: str) -> int | None:
    """Bytes from an int or '64Mi', '1Gi', '512M' (K/M/G: powers of 1000, Ki/Mi/Gi: 1024)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (m := _MEMORY.fullmatch(value)):
        size = int(m[1]) * _MEMORY_UNITS[m[2]]
    elif isinstance(value, str):
        c.error(path, f"{show(value)} is not a size like 64Mi, 1Gi, 512M or 67108864")
        return None
    else:
        c.error(path, f"must be a size like 64Mi or bytes, not {describe(value)}")
        return None
    if not MIN_MEMORY <= size < 1 << 62:
        c.error(path, f"{value} is out of range: at least 16Mi")
        return None
    return size


# --- VPN ----------------------------------------------------------------------------------


def _vpn(c: Checker, value: object, subnet: IPv4Network | None) -> Vpn | None:
    v = c.mapping(value, "spec.vpn", _VPN, required=_VPN_REQUIRED)
    if v is None:
        return None
    remote = c.unicast(v.get("remote"), "spec.vpn.remote")
    auth = _auth(c, v.get("auth"))
    local_id = c.matching(v.get("localId"), "spec.vpn.localId", _IKE_ID, _IKE_ID_RULE, 255)
    remote_id = c.matching(v.get("remoteId"), "spec.vpn.remoteId", _IKE_ID, _IKE_ID_RULE, 255)
    nets = _remote_subnets(c, v.get("remoteSubnets"), subnet, remote)
    ike = _proposals(c, v.get("ike"), "spec.vpn.ike")
    esp = _proposals(c, v.get("esp"), "spec.vpn.esp")
    dpd = _duration(c, v.get("dpd"), "spec.vpn.dpd", 0, MAX_DPD, "0s..1h")
    if remote is None or auth is None or local_id is None or remote_id is None or not nets:
        return None
    default = Vpn(remote, auth, local_id, remote_id, nets)
    return Vpn(remote, auth, local_id, remote_id, nets,
               ike_proposals=ike or default.ike_proposals,
               esp_proposals=esp or default.esp_proposals,
               dpd=default.dpd if dpd is None else dpd)


def _auth(c: Checker, value: object) -> PskAuth | CertAuth | None:
    path = "spec.vpn.auth"
    a = c.mapping(value, path, _AUTH)
    if a is None:
        return None
    given = [k for k in _AUTH if a.get(k) is not None]
    if len(given) != 1:
        c.error(path, "must have exactly one of psk or cert")
        return None
    if given == ["psk"]:
        m = c.mapping(a["psk"], f"{path}.psk", _PSK, required=_PSK)
        secret = _file(c, m.get("secretFile"), f"{path}.psk.secretFile") if m else None
        return PskAuth(secret) if secret else None
    m = c.mapping(a["cert"], f"{path}.cert", _CERT, required=_CERT)
    if m is None:
        return None
    cert, key, ca = (_file(c, m.get(k), f"{path}.cert.{k}") for k in _CERT)
    return CertAuth(cert, key, ca) if cert and key and ca else None


def _file(c: Checker, value: object, path: str) -> str | None:
    return c.matching(value, path, _FILE, _FILE_RULE, 1024)


def _cidr(c: Checker, value: object, path: str) -> IPv4Network | None:
    text = c.string(value, path)
    if text is None:
        return None
    try:
        if not _CIDR.fullmatch(text):
            raise ValueError(text)
        net = IPv4Network(text, strict=False)
    except ValueError:
        c.error(path, f"{show(text)} is not an IPv4 CIDR like 10.99.1.0/24")
        return None
    if str(net) != text:
        c.error(path, f"{text} has host bits set; did you mean {net}?")
        return None
    return net


def _remote_subnets(c: Checker, value: object, subnet: IPv4Network | None,
                    remote: IPv4Address | None) -> tuple[IPv4Network, ...]:
    path = "spec.vpn.remoteSubnets"
    if value == []:
        c.error(path, "must list at least one subnet")
    out: list[IPv4Network] = []
    for here, item in c.items(value, path):
        net = _cidr(c, item, here)
        if net is None:
            continue
        if subnet is not None and net.overlaps(subnet):
            c.error(here, f"{net} overlaps spec.subnet {subnet}")
        elif remote is not None and remote in net:
            c.error(here, f"{net} contains spec.vpn.remote {remote}: IKE to the peer would "
                          f"have to go through its own tunnel")
        elif net in out:
            c.error(here, f"{net} is listed twice")
        else:
            out.append(net)
    return tuple(out)


def _proposals(c: Checker, value: object, path: str) -> tuple[str, ...]:
    m = c.mapping(value, path, ("proposals",), required=("proposals",))
    if m is None:
        return ()
    here = f"{path}.proposals"
    if m.get("proposals") == []:
        c.error(here, "must list at least one proposal")
    out = [c.matching(item, p, _PROPOSAL, _PROPOSAL_RULE, 200)
           for p, item in c.items(m.get("proposals"), here)]
    return tuple(x for x in out if x is not None)


def _vpn_rules(c: Checker, s: dict[str, object], ni_type: NIType | None, vpn: Vpn | None,
               dns: Dns | None) -> None:
    """What only a VPN NI has, and what it must not have."""
    if ni_type is None:
        return
    if ni_type is not NIType.VPN:
        if s.get("vpn") is not None:
            c.error("spec.vpn", "is only for spec.type vpn")
        return
    if s.get("vpn") is None:
        c.error("spec.vpn", "is required for spec.type vpn")
    if s.get("uplink") is None:
        c.error("spec.uplink", "is required for spec.type vpn (the tunnel needs an uplink)")
    if s.get("portMaps"):
        c.error("spec.portMaps", "are not allowed on a VPN NI: its apps are reachable only "
                                 "through the tunnel")
    if vpn is not None and dns is not None and dns.upstream:
        for i, ip in enumerate(dns.upstream):
            if not any(ip in net for net in vpn.remote_subnets):
                c.error(f"spec.dns.upstream[{i}]", f"{ip} is not in spec.vpn.remoteSubnets: "
                        "a VPN NI sends DNS queries only through its tunnel")


# --- across NIs -------------------------------------------------------------------------


def set_problems(nis: Iterable[NetworkInstance | Located],
                 config: SupervisorConfig) -> list[Problem]:
    """The problems validate_set would raise, as a list."""
    found: list[Problem] = []
    names: dict[str, Located] = {}
    ports: dict[tuple[str, Protocol, int], tuple[Located, int]] = {}
    for loc in (x if isinstance(x, Located) else Located(x) for x in nis):
        if loc.ni.name in names:
            other = names[loc.ni.name]
            where = _where(other, "metadata.name") or " by another NI"
            found.append(_problem(loc, "metadata.name", f"{loc.ni.name!r} is already used{where}"))
        else:
            names[loc.ni.name] = loc
        found += _uplink_problems(loc, config)
        found += _port_problems(loc, ports)
        found += _vpn_problems(loc, config)
    return found


def _problem(loc: Located, path: str, message: str) -> Problem:
    return Problem(loc.source, loc.ni.name, path, message, loc.line(path))


def _where(loc: Located, path: str) -> str:
    """' in site.yaml:12' when the NI came from a file, else ''."""
    if not loc.source:
        return ""
    line = loc.line(path)
    return f" in {loc.source}" + (f":{line}" if line else "")


def _uplink_problems(loc: Located, config: SupervisorConfig) -> list[Problem]:
    ni = loc.ni
    if ni.uplink is None:
        if ni.port_maps:
            msg = "need spec.uplink: an air-gapped NI (no uplink) cannot have port maps"
            return [_problem(loc, "spec.portMaps", msg)]
        return []
    if config.uplink(ni.uplink) is not None:
        return []
    listed = ", ".join(u.name for u in config.uplinks) or "none"
    msg = f"{ni.uplink!r} is not an uplink of the supervisor config (it has: {listed})"
    return [_problem(loc, "spec.uplink", msg)]


def _port_problems(loc: Located,
                   ports: dict[tuple[str, Protocol, int], tuple[Located, int]]) -> list[Problem]:
    found: list[Problem] = []
    if loc.ni.uplink is None:
        return found
    for i, pm in enumerate(loc.ni.port_maps):
        key = (loc.ni.uplink, pm.protocol, pm.uplink_port)
        if key not in ports:
            ports[key] = (loc, i)
            continue
        other, j = ports[key]
        there = f"spec.portMaps[{j}]"
        msg = (f"{pm.protocol} {pm.uplink_port} on uplink {loc.ni.uplink} is already mapped "
               f"by NI {other.ni.name!r} ({there}{_where(other, there)})")
        found.append(_problem(loc, f"spec.portMaps[{i}].uplinkPort", msg))
    return found


def _vpn_problems(loc: Located, config: SupervisorConfig) -> list[Problem]:
    vpn = loc.ni.vpn
    if vpn is None:
        return []
    pool = config.transit_pool
    found = [_problem(loc, f"spec.vpn.remoteSubnets[{i}]",
                      f"{net} overlaps the supervisor's transitPool {pool}")
             for i, net in enumerate(vpn.remote_subnets) if net.overlaps(pool)]
    if vpn.remote in pool:
        found.append(_problem(loc, "spec.vpn.remote",
                              f"{vpn.remote} is inside the supervisor's transitPool {pool}"))
    return found
