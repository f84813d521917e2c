"""The field checks of spec.apps (declared apps and their ACLs) and spec.flowLog.

An app is `{name, mac, ip?, acls?}`; an ACL rule `{<action>: <direction>, ...}`
with one action of allow, drop and limit, and at most one of `remote` and
`host`. The values built here are runner.net.appedge's, which check names once
more where they reach nft and dnsmasq.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network

from runner.model.checker import SIZE_UNITS, Checker
from runner.model.errors import describe, did_you_mean, join, show
from runner.model.fields import _host, _mac, label
from runner.model.types import App, DhcpRange, FlowLog, Reservation
from runner.net.appedge import AclProtocol, AclRule, Action, Direction, Limit, Per, RateUnit
from runner.net.errors import NetValueError

MAX_APPS = 1000  # per NI
MAX_RULES = 1000  # per app; rule ids (16 bits of a conntrack mark) are per NI
MAX_RULE_IDS = 60000
MIN_LOG, MAX_LOG = 64 << 10, 1 << 30
MAX_KEEP = 20

_APP = ("name", "mac", "ip", "acls")
_ACTIONS = tuple(a.value for a in Action)
_RULE = (*_ACTIONS, "remote", "host", "protocol", "ports", "rate", "burst")
_FLOW_LOG = ("maxSize", "keep")
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")
_PORTS = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")
_PACKET_RATE = re.compile(r"([0-9]{1,12})(?:/(s|second|min|minute|h|hour))?")
_BYTE_RATE = re.compile(r"([0-9]{1,12})(B|[KMG]i?B|[kKMG]?bit)(?:/s)?")
_PER = {None: Per.SECOND, "s": Per.SECOND, "second": Per.SECOND, "min": Per.MINUTE,
        "minute": Per.MINUTE, "h": Per.HOUR, "hour": Per.HOUR}
_BYTE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KiB": 1 << 10,
               "MiB": 1 << 20, "GiB": 1 << 30}
_BIT_UNITS = {"bit": 1, "kbit": 10**3, "Kbit": 10**3, "Mbit": 10**6, "Gbit": 10**9}
_PER_TEXT = {Per.SECOND: "s", Per.MINUTE: "min", Per.HOUR: "h"}
RATE_FORM = "packets: 1000/s, 60/min; bytes: 10Mbit, 2MB"


def apps_section(c: Checker, value: object, subnet: IPv4Network | None,
                 gateway: IPv4Address | None, rng: DhcpRange | None,
                 reservations: Sequence[Reservation]) -> tuple[App, ...]:
    items = c.items(value, "spec.apps")
    if len(items) > MAX_APPS:
        c.error("spec.apps", f"has {len(items)} apps; at most {MAX_APPS}")
        return ()
    names: dict[str, str] = {r.name: f"a reservation (spec.dhcp.reservations[{i}])"
                             for i, r in enumerate(reservations)}
    macs = {r.mac: f"reservation {r.name}" for r in reservations}
    ips = {r.ip: f"reservation {r.name}" for r in reservations}
    out: list[App] = []
    for path, item in items:
        m = c.mapping(item, path, _APP, required=("name", "mac"))
        if m is None:
            continue
        name = label(c, m.get("name"), f"{path}.name")
        if name is not None and name in names:
            where = names[name]
            fix = "declare it once, in spec.apps" if "reservation" in where else \
                "app names are unique"
            c.error(f"{path}.name", f"{name} is also {where}; {fix}")
            name = None
        mac = _mac(c, m.get("mac"), f"{path}.mac")
        if mac is not None and mac in macs:
            c.error(f"{path}.mac", f"{mac} is already the MAC of {macs[mac]}")
            mac = None
        ip = _fixed_ip(c, m.get("ip"), f"{path}.ip", subnet, gateway, rng, ips)
        acls = None if m.get("acls") is None else rules(c, m.get("acls"), f"{path}.acls")
        if name is None or mac is None or (m.get("ip") is not None and ip is None):
            continue
        names[name] = f"an app ({path})"
        macs[mac] = f"app {name}"
        if ip is not None:
            ips[ip] = f"app {name}"
        out.append(App(name, mac, ip, acls))
    ids = sum(len(a.acls or ()) for a in out)
    if ids > MAX_RULE_IDS:
        c.error("spec.apps", f"has {ids} ACL rules in all; at most {MAX_RULE_IDS} per NI")
    return tuple(out)


def _fixed_ip(c: Checker, value: object, path: str, subnet: IPv4Network | None,
              gateway: IPv4Address | None, rng: DhcpRange | None,
              taken: Mapping[IPv4Address, str]) -> IPv4Address | None:
    ip = _host(c, value, path, subnet, gateway)
    if ip is None:
        return None
    if ip in taken:
        c.error(path, f"{ip} is already the address of {taken[ip]}")
        return None
    if rng is not None and rng.start <= ip <= rng.end:
        c.error(path, f"{ip} is inside spec.dhcp.range ({rng.start}-{rng.end}); a fixed IP "
                      f"must be outside it")
        return None
    return ip


def rules(c: Checker, value: object, path: str) -> tuple[AclRule, ...] | None:
    """An app's ordered ACL rules; None when the list itself is bad."""
    items = c.items(value, path)
    if not isinstance(value, list):
        return None
    if len(items) > MAX_RULES:
        c.error(path, f"has {len(items)} rules; at most {MAX_RULES} per app")
        return None
    out = [r for here, item in items if (r := _rule(c, item, here)) is not None]
    return tuple(out) if len(out) == len(items) else None


def _rule(c: Checker, value: object, path: str) -> AclRule | None:
    m = c.mapping(value, path, _RULE)
    if m is None:
        return None
    ok = True
    given = [a for a in _ACTIONS if a in m]
    if len(given) != 1:
        c.error(path, f"needs one action: allow, drop or limit (found: "
                      f"{', '.join(given) or 'none'})")
        return None
    action = Action(given[0])
    direction = _direction(c, m.get(action.value), join(path, action.value))
    if m.get("remote") is not None and m.get("host") is not None:
        c.error(path, "has remote and host: they exclude each other")
        ok = False
    remote = _remote(c, m.get("remote"), f"{path}.remote")
    host = _host_name(c, m.get("host"), f"{path}.host")
    protocol = _protocol(c, m.get("protocol"), f"{path}.protocol")
    ports = _ports(c, m.get("ports"), f"{path}.ports", protocol, m.get("protocol"))
    limit = _limit(c, m, path, action)
    bad = [(m.get(k) is not None and v is None) for k, v in
           (("remote", remote), ("host", host), ("protocol", protocol), ("ports", ports))]
    if not ok or direction is None or any(bad) or (action is Action.LIMIT and limit is None):
        return None
    try:
        return AclRule(direction, action, remote, host, protocol, ports, limit)
    except NetValueError as e:  # a combination the checks above let through
        c.error(path, str(e))
        return None


def _direction(c: Checker, value: object, path: str) -> Direction | None:
    text = c.string(value, path)
    if text is None:
        if value is None:
            c.error(path, "needs a direction: egress or ingress")
        return None
    if text not in (Direction.EGRESS, Direction.INGRESS):
        c.error(path, f"{show(text)} is not a direction; use egress or ingress"
                      f"{did_you_mean(text, [d.value for d in Direction])}")
        return None
    return Direction(text)


def _remote(c: Checker, value: object, path: str) -> IPv4Network | None:
    """An address or a CIDR ("192.0.2.10" is 192.0.2.10/32)."""
    if isinstance(value, str) and "/" not in value:
        ip = c.ipv4(value, path)
        return None if ip is None else IPv4Network(f"{ip}/32")
    return c.cidr(value, path, "192.0.2.0/24")


def _host_name(c: Checker, value: object, path: str) -> str | None:
    text = c.string(value, path)
    if text is None:
        return None
    if text.startswith("*."):
        c.error(path, f"{show(text)} is not a DNS name; write {text[2:]}, which matches it "
                      f"and every name under it")
    elif not _HOST.fullmatch(text):
        c.error(path, f"{show(text)} is not a DNS name: lowercase labels of letters, digits "
                      f"and '-' joined by dots (it matches that name and every name under it)")
    else:
        return text
    return None


def _protocol(c: Checker, value: object, path: str) -> AclProtocol | None:
    text = c.string(value, path)
    if text is None:
        return None
    choices = [p.value for p in AclProtocol]
    if text not in choices:
        c.error(path, f"{show(text)} is not one of {', '.join(choices)}"
                      f"{did_you_mean(text, choices)}")
        return None
    return AclProtocol(text)


def _ports(c: Checker, value: object, path: str, protocol: AclProtocol | None,
           protocol_given: object) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        c.error(path, f"must be a port or range like \"80\" or \"5000-5010\", not "
                      f"{describe(value)}")
        return None
    m = _PORTS.fullmatch(value)
    lo = int(m[1]) if m else 0
    hi = int(m[2]) if m and m[2] else lo
    if m is None or not 1 <= lo <= hi <= 65535:
        c.error(path, f"{show(value)} is not a port or range within 1-65535")
        return None
    if protocol not in (AclProtocol.TCP, AclProtocol.UDP):
        if protocol is not None or protocol_given is None:
            c.error(path, "need protocol tcp or udp")
        return None
    return lo, hi


def _limit(c: Checker, m: Mapping[str, object], path: str, action: Action) -> Limit | None:
    rate, burst = m.get("rate"), m.get("burst")
    if action is not Action.LIMIT:
        for key, v in (("rate", rate), ("burst", burst)):
            if v is not None:
                c.error(f"{path}.{key}", "is only for a limit rule")
        return None
    if rate is None:
        c.error(f"{path}.rate", f"is required by a limit rule ({RATE_FORM})")
        return None
    parsed = parse_rate(rate)
    if isinstance(parsed, str):
        c.error(f"{path}.rate", parsed)
        return None
    amount, unit, per = parsed
    size = 0
    if burst is not None:
        got = parse_burst(burst, unit)
        if isinstance(got, str):
            c.error(f"{path}.burst", got)
            return None
        size = got
    return Limit(amount, unit, per, size)


def parse_rate(value: object) -> tuple[int, RateUnit, Per] | str:
    """(amount, unit, per) of a rate, or why it is not one."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return f"must be a rate ({RATE_FORM}), not {describe(value)}"
    if m := _PACKET_RATE.fullmatch(value):
        amount, per = int(m[1]), _PER[m[2]]
        return (amount, RateUnit.PACKETS, per) if amount > 0 else f"{show(value)} is zero"
    if m := _BYTE_RATE.fullmatch(value):
        number, unit = int(m[1]), m[2]
        if unit in _BYTE_UNITS:
            amount = number * _BYTE_UNITS[unit]
        else:
            bits = number * _BIT_UNITS[unit]
            if bits % 8:
                return f"{show(value)} is not a whole number of bytes a second"
            amount = bits // 8
        if not 0 < amount < 1 << 40:
            return f"{show(value)} is out of range"
        return amount, RateUnit.BYTES, Per.SECOND
    return f"{show(value)} is not a rate ({RATE_FORM})"


def parse_burst(value: object, unit: RateUnit) -> int | str:
    """A burst in the rate's unit: packets (an integer), or bytes (an integer or a size)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 < value < 1 << 32:
            return f"{show(value)} is out of range 1..{(1 << 32) - 1}"
        return value
    if isinstance(value, str) and unit is RateUnit.BYTES:
        m = re.fullmatch(r"([0-9]{1,12})(B|[KMG]i?B?|[KMG]i)?", value)
        if m:
            suffix = (m[2] or "").removesuffix("B")
            size = int(m[1]) * SIZE_UNITS[suffix]
            if 0 < size < 1 << 32:
                return size
        return f"{show(value)} is not a size like 128KiB or 65536"
    what = "packets: an integer" if unit is RateUnit.PACKETS else "bytes: 128KiB or 65536"
    return f"must be a burst in the rate's unit ({what}), not {describe(value)}"


def flow_log_section(c: Checker, value: object) -> FlowLog:
    path = "spec.flowLog"
    if value is None:
        return FlowLog()
    if isinstance(value, bool):
        return FlowLog(enabled=value)
    m = c.mapping(value, path, _FLOW_LOG)
    if m is None:
        return FlowLog()
    size = c.quantity(m.get("maxSize"), f"{path}.maxSize", SIZE_UNITS,
                      "a size like 4Mi, 64Ki or 1048576", MIN_LOG, MAX_LOG, "range 64Ki..1Gi")
    keep = c.integer(m.get("keep"), f"{path}.keep", 0, MAX_KEEP)
    default = FlowLog()
    return FlowLog(True, default.max_size if size is None else size,
                   default.keep if keep is None else keep)


def rate_text(limit: Limit) -> str:
    """A limit's rate as a manifest writes it (parse_rate reads it back)."""
    if limit.unit is RateUnit.BYTES:
        return f"{limit.rate}B"
    return f"{limit.rate}/{_PER_TEXT[limit.per]}"
