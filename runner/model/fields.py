"""The field checks of one NI manifest: one YAML document -> a NetworkInstance.

Every name that ends up in dnsmasq config or nftables rules (NI, reservation,
static host, port map, domain) must match a strict pattern, so no value can
inject configuration. Addresses follow runner.model.addresses. The VPN section
is in runner.model.vpn_fields; checks across NIs in runner.model.sets.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from ipaddress import IPv4Address, IPv4Network

from runner.model.checker import DURATION_UNITS, SIZE_UNITS, Checker
from runner.model.config import UPLINK_NAME, UPLINK_NAME_RULE
from runner.model.errors import did_you_mean, show
from runner.model.switch_fields import switch_section
from runner.model.types import (
    Dhcp,
    DhcpRange,
    Dns,
    NetworkInstance,
    NIType,
    PortMap,
    Protocol,
    Reservation,
    Resources,
    StaticHost,
)
from runner.model.vpn_fields import vpn_rules, vpn_section

API_VERSION = "nirunner/v1"
KIND = "NetworkInstance"
NAME_MAX = 32
DEFAULT_LEASE = 3600
MIN_LEASE, MAX_LEASE = 120, 365 * 86400
MIN_MEMORY, MAX_MEMORY = 16 << 20, 1 << 62
MAX_CPU = 64.0

LABEL = re.compile(r"[a-z](?:[a-z0-9-]*[a-z0-9])?")
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
_DOTTED = re.compile(r"[0-9.]+")
LEASE_FORM = "a duration like 90s, 10m, 1h, 2d or 3600"
_SIZE_FORM = "a size like 64Mi, 1Gi, 512M or 67108864"

_TOP = ("apiVersion", "kind", "metadata", "spec")
_SPEC = ("type", "uplink", "subnet", "gateway", "mtu", "dhcp", "dns", "ntp", "portMaps",
         "resources", "vpn", "apps", "flowLog", "vlan")
_DHCP = ("range", "leaseTime", "reservations")
_RESERVATION = ("name", "mac", "ip")
_DNS = ("domain", "upstream", "static")
_STATIC = ("name", "addresses")
_PORT_MAP = ("name", "protocol", "uplinkPort", "target", "targetPort")
_RESOURCES = ("memory", "cpu", "pids")


def network_instance(c: Checker) -> NetworkInstance | None:
    """The NI of the checker's document, or None (with its problems recorded)."""
    if isinstance(c.root, dict) and "apiVersion" not in c.root and "kind" not in c.root:
        c.error("", f"the document is not a manifest: it has no apiVersion and no kind "
                    f"(expected {API_VERSION} {KIND})")
        return None
    top = c.mapping(c.root, "", _TOP, required=_TOP)
    if top is None:
        return None
    meta = c.mapping(top.get("metadata"), "metadata", ("name",), required=("name",))
    name = label(c, meta.get("name"), "metadata.name", NAME_MAX) if meta else None
    c.ni = name
    for key, expected in (("apiVersion", API_VERSION), ("kind", KIND)):
        value = c.string(top.get(key), key)
        if value is not None and value != expected:
            c.error(key, f"must be {expected!r}, not {show(value)}")
    return _spec(c, top.get("spec"), name)


def _spec(c: Checker, value: object, name: str | None) -> NetworkInstance | None:
    s = c.mapping(value, "spec", _SPEC, required=("type",))
    if s is None:
        return None
    ni_type = _ni_type(c, s.get("type"))
    uplink = c.matching(s.get("uplink"), "spec.uplink", UPLINK_NAME, UPLINK_NAME_RULE, 32)
    vlan = switch_section(c, s, ni_type)
    if ni_type is NIType.SWITCH:  # on the uplink's segment: no subnet, DHCP, DNS of ours
        resources = _resources(c, s.get("resources"))
        vpn_rules(c, s, ni_type, None, None)
        if not c.ok or name is None or resources is None:
            return None
        return NetworkInstance(name=name, type=ni_type, subnet=None, gateway=None, dhcp=None,
                               uplink=uplink, resources=resources, vlan=vlan)
    if s.get("subnet") is None:
        c.error("spec.subnet", "is required")
    subnet = c.network(s.get("subnet"), "spec.subnet", "10.1.0.0/24", 8, 30)
    gateway = _gateway(c, s.get("gateway"), subnet)
    mtu = c.integer(s.get("mtu"), "spec.mtu", 576, 9000)
    dhcp = _dhcp(c, s.get("dhcp"), subnet, gateway)
    # the apps' checks use this module's (MACs, addresses): imported when both exist
    from runner.model.app_fields import apps_section, flow_log_section

    apps = apps_section(c, s.get("apps"), subnet, gateway, dhcp.range if dhcp else None,
                        dhcp.reservations if dhcp else ())
    hosts = {n: "reservation" for n in _reservation_names(s.get("dhcp"))}
    hosts |= {n: "app" for n in _app_names(s.get("apps"))}
    dns = _dns(c, s.get("dns"), hosts, subnet, gateway)
    ntp = tuple(_servers(c, s.get("ntp"), "spec.ntp", subnet, gateway))
    dynamic = {a.name for a in apps if a.ip is None}
    port_maps = _port_maps(c, s.get("portMaps"), subnet, gateway, hosts, dynamic)
    resources = _resources(c, s.get("resources"))
    vpn = vpn_section(c, s.get("vpn"), subnet)
    vpn_rules(c, s, ni_type, vpn, dns)
    flow_log = flow_log_section(c, s.get("flowLog"))
    if (not c.ok or name is None or ni_type is None or subnet is None or gateway is None
            or dhcp is None or dns is None or resources is None):
        return None
    return NetworkInstance(
        name=name, type=ni_type, subnet=subnet, gateway=gateway, dhcp=dhcp, uplink=uplink,
        mtu=mtu, dns=dns, ntp=ntp, port_maps=port_maps, resources=resources, vpn=vpn,
        apps=apps, flow_log=flow_log,
    )


def _ni_type(c: Checker, value: object) -> NIType | None:
    text = c.string(value, "spec.type")
    if text is None:
        return None
    if text not in tuple(NIType):
        choices = [t.value for t in NIType]
        hint = did_you_mean(text, choices)
        c.error("spec.type", f"{show(text)} is not one of {', '.join(choices)}{hint}")
        return None
    return NIType(text)


def label(c: Checker, value: object, path: str, max_len: int = 63) -> str | None:
    rule = f"{_LABEL_RULE}, at most {max_len} characters"
    return c.matching(value, path, LABEL, rule, max_len)


def _dns_name(c: Checker, value: object, path: str) -> str | None:
    return c.matching(value, path, _DNS_NAME, _DNS_RULE, 253)


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
    lease = c.quantity(d.get("leaseTime"), "spec.dhcp.leaseTime", DURATION_UNITS, LEASE_FORM,
                       MIN_LEASE, MAX_LEASE, "range 2m..365d")
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
        name = label(c, m.get("name"), f"{path}.name")
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
    return _names(dhcp.get("reservations") if isinstance(dhcp, dict) else None)


def _app_names(apps: object) -> list[str]:
    """The well-formed names of spec.apps (as _reservation_names)."""
    return _names(apps)


def _names(items: object) -> list[str]:
    if not isinstance(items, list):
        return []
    names = (item.get("name") for item in items if isinstance(item, dict))
    return [n for n in names if isinstance(n, str) and LABEL.fullmatch(n)]


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


def _dns(c: Checker, value: object, hosts: Mapping[str, str], subnet: IPv4Network | None,
         gateway: IPv4Address | None) -> Dns | None:
    d = {} if value is None else c.mapping(value, "spec.dns", _DNS)
    if d is None:
        return None
    domain = _dns_name(c, d.get("domain"), "spec.dns.domain")
    upstream = d.get("upstream")
    servers = None if upstream is None else tuple(
        _servers(c, upstream, "spec.dns.upstream", subnet, gateway))
    static = _static(c, d.get("static"), domain, hosts)
    return Dns(domain, servers, static)


def _servers(c: Checker, value: object, path: str, subnet: IPv4Network | None,
             gateway: IPv4Address | None) -> list[IPv4Address]:
    """DNS or NTP servers: hosts (link-local allowed: clouds serve both there), not the
    NI itself, nor the subnet's network or broadcast address."""
    out: list[IPv4Address] = []
    for here, item in c.items(value, path):
        ip = c.host(item, here, link_local=True)
        if ip is None:
            continue
        if ip == gateway:
            why = "would forward to itself" if path == "spec.dns.upstream" else "serves no NTP"
            c.error(here, f"{ip} is spec.gateway, the NI itself, which {why}")
        elif subnet is not None and ip in subnet and _not_a_host(ip, subnet):
            c.error(here, str(_not_a_host(ip, subnet)))
        else:
            out.append(ip)
    return out


def _static(c: Checker, value: object, domain: str | None,
            hosts: Mapping[str, str]) -> tuple[StaticHost, ...]:
    """`hosts`: the names of reservations and apps -> "reservation" or "app"."""
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
        addresses = [ip for here, a in c.items(m.get("addresses"), f"{path}.addresses")
                     if (ip := c.host(a, here, link_local=True)) is not None]
        if m.get("addresses") == []:
            c.error(f"{path}.addresses", "must list at least one address")
        if name is not None and name in hostnames:
            owner = hostnames[name]
            c.error(f"{path}.name", f"{name!r} is already the hostname of {hosts[owner]} "
                                    f"{owner!r}")
        elif name is not None and _unique(c, seen, name, f"{path}.name") and addresses:
            out.append(StaticHost(name, tuple(addresses)))
    return tuple(out)


# --- port maps, resources ---------------------------------------------------------------


def _port_maps(c: Checker, value: object, subnet: IPv4Network | None,
               gateway: IPv4Address | None, hosts: Collection[str],
               dynamic: Collection[str]) -> tuple[PortMap, ...]:
    """`hosts`: names of reservations and apps; `dynamic`: apps without a fixed IP."""
    names: dict[object, str] = {}
    out: list[PortMap] = []
    for path, item in c.items(value, "spec.portMaps"):
        m = c.mapping(item, path, _PORT_MAP, required=_PORT_MAP)
        if m is None:
            continue
        name = label(c, m.get("name"), f"{path}.name")
        if name is not None and not _unique(c, names, name, f"{path}.name"):
            name = None
        protocol = _protocol(c, m.get("protocol"), f"{path}.protocol")
        uplink_port = c.integer(m.get("uplinkPort"), f"{path}.uplinkPort", 1, 65535)
        target = _target(c, m.get("target"), f"{path}.target", subnet, gateway, hosts)
        if target in dynamic:
            c.error(f"{path}.target", f"app {target!r} has no fixed IP (spec.apps[].ip): a "
                                      f"port map needs one")
            target = None
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
            gateway: IPv4Address | None, hosts: Collection[str]) -> str | None:
    """An app or reservation name, or an app's IPv4 address inside the subnet."""
    text = c.string(value, path)
    if text is None:
        return None
    if _DOTTED.fullmatch(text):
        ip = _host(c, text, path, subnet, gateway)
        return str(ip) if ip else None
    if text in hosts:
        return text
    hint = did_you_mean(text, hosts) if LABEL.fullmatch(text) else ""
    c.error(path, f"{show(text)} is neither an app, a reservation nor an IPv4 address{hint}")
    return None


def _resources(c: Checker, value: object) -> Resources | None:
    r = {} if value is None else c.mapping(value, "spec.resources", _RESOURCES)
    if r is None:
        return None
    default = Resources()
    memory = c.quantity(r.get("memory"), "spec.resources.memory", SIZE_UNITS, _SIZE_FORM,
                        MIN_MEMORY, MAX_MEMORY, "range: at least 16Mi")
    cpu = c.number(r.get("cpu"), "spec.resources.cpu")
    if cpu is not None and not 0 < cpu <= MAX_CPU:
        c.error("spec.resources.cpu", f"{cpu:g} is out of range (0, {MAX_CPU:g}]")
        cpu = None
    pids = c.integer(r.get("pids"), "spec.resources.pids", 16, 65536)
    return Resources(
        memory=default.memory if memory is None else memory,
        cpu=default.cpu if cpu is None else cpu,
        pids=default.pids if pids is None else pids,
    )
