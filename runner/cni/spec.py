"""The CNI protocol as pure values: parse a runtime's request, build results and errors.

Follows the CNI spec 1.1.0 (and 1.0.0, 0.4.0 for older runtimes): the
parameters come in environment variables, the network config as JSON on stdin;
a result or an error goes as JSON to stdout with exit code 0 or 1.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.cni.api import DEFAULT_SOCKET, Attachment, AttachmentKey, PortMapping
from runner.net import names
from runner.net.errors import NetValueError

SUPPORTED_VERSIONS = ("0.4.0", "1.0.0", "1.1.0")
LATEST = SUPPORTED_VERSIONS[-1]
COMMANDS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")
VALID_ATTACHMENTS = "cni.dev/valid-attachments"

# which variables each command needs (the spec's "required environment parameters")
_REQUIRED = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "GC": (),
    "STATUS": (),
    "VERSION": (),
}
# the spec's container id and network name: an alphanumeric, then [A-Za-z0-9_.-]
_CNI_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_IPV4 = re.compile(r"(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}")


class Code(enum.IntEnum):
    """Error codes: the spec's well-known ones (below 100) and the plugin's own."""

    INCOMPATIBLE_VERSION = 1
    UNSUPPORTED_FIELD = 2
    UNKNOWN_CONTAINER = 3
    INVALID_ENVIRONMENT = 4
    IO_FAILURE = 5
    DECODING_FAILURE = 6
    INVALID_CONFIG = 7
    TRY_AGAIN_LATER = 11
    NOT_AVAILABLE = 50
    LIMITED_CONNECTIVITY = 51
    # nirunner's own
    DRIFT = 100  # CHECK: the attachment differs from what ADD made
    PORT_CONFLICT = 101
    EXISTS = 102  # the interface or the attachment exists already
    NO_LEASE = 103  # the NI's DHCP server gave no address
    SUPERVISOR_TOO_OLD = 104  # the supervisor's API lacks the call
    INTERNAL = 999


class CniError(Exception):
    def __init__(self, code: Code, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details

    def to_json(self, version: str = LATEST) -> str:
        doc: dict[str, Any] = {"cniVersion": version, "code": int(self.code), "msg": self.msg}
        if self.details:
            doc["details"] = self.details
        return json.dumps(doc)


@dataclass(frozen=True)
class Invocation:
    """The CNI_* environment of one call."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: tuple[tuple[str, str], ...] = ()  # CNI_ARGS, in order
    path: tuple[str, ...] = ()

    def arg(self, key: str) -> str:
        return next((v for k, v in self.args if k == key), "")


@dataclass(frozen=True)
class NetConf:
    """The plugin's network config as the runtime passed it (runtimeConfig included)."""

    cni_version: str
    name: str
    ni: str
    socket: str = DEFAULT_SOCKET
    app: str = ""
    mac: str = ""
    port_mappings: tuple[PortMapping, ...] = ()
    aliases: tuple[str, ...] = ()
    prev_result: Mapping[str, Any] | None = None
    valid_attachments: tuple[AttachmentKey, ...] | None = None  # GC only

    def key(self, inv: Invocation) -> AttachmentKey:
        return AttachmentKey(self.name, inv.container_id, inv.ifname)


# -- versions --------------------------------------------------------------------------


def _semver(v: str) -> tuple[int, int, int]:
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", v)
    if m is None:
        raise CniError(Code.DECODING_FAILURE, f"cniVersion {v!r} is not a version like 1.1.0")
    return int(m[1]), int(m[2]), int(m[3])


def at_least(version: str, minimum: str) -> bool:
    return _semver(version) >= _semver(minimum)


def version_result(stdin: bytes) -> str:
    """VERSION: the versions this plugin speaks; cniVersion echoes the request's."""
    version = LATEST
    try:
        doc = json.loads(stdin or b"{}")
        if isinstance(doc, dict) and isinstance(doc.get("cniVersion"), str):
            _semver(doc["cniVersion"])
            version = doc["cniVersion"]
    except (ValueError, CniError):
        pass  # VERSION answers whatever it was given
    return json.dumps({"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)})


# -- the request -----------------------------------------------------------------------


def parse_env(env: Mapping[str, str]) -> Invocation:
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise CniError(Code.INVALID_ENVIRONMENT, "required env variables [CNI_COMMAND] missing")
    if command not in COMMANDS:
        raise CniError(Code.INVALID_ENVIRONMENT, f"CNI_COMMAND {command!r} is not one of "
                       + ", ".join(COMMANDS))
    missing = [v for v in _REQUIRED[command] if not env.get(v)]
    if missing:
        raise CniError(Code.INVALID_ENVIRONMENT,
                       f"required env variables [{','.join(missing)}] missing for {command}")
    # only the variables the command uses are checked: libcni sends VERSION with
    # CNI_NETNS=dummy and CNI_IFNAME=dummy, for one
    uses = {"ADD", "CHECK", "DEL"}
    container_id = env.get("CNI_CONTAINERID", "") if command in uses else ""
    if container_id and not _CNI_NAME.fullmatch(container_id):
        raise CniError(Code.INVALID_ENVIRONMENT, "CNI_CONTAINERID has invalid characters",
                       container_id)
    ifname = env.get("CNI_IFNAME", "") if command in uses else ""
    if ifname:
        try:
            names.check_ifname(ifname)
        except NetValueError as e:
            raise CniError(Code.INVALID_ENVIRONMENT, f"CNI_IFNAME: {e}") from None
    netns = env.get("CNI_NETNS", "") if command in uses else ""
    if netns and not netns.startswith("/"):
        raise CniError(Code.INVALID_ENVIRONMENT, f"CNI_NETNS {netns!r} is not an absolute path")
    return Invocation(command=command, container_id=container_id, netns=netns, ifname=ifname,
                      args=_parse_args(env.get("CNI_ARGS", "")),
                      path=tuple(p for p in env.get("CNI_PATH", "").split(":") if p))


def _parse_args(raw: str) -> tuple[tuple[str, str], ...]:
    out = []
    for part in raw.split(";"):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise CniError(Code.INVALID_ENVIRONMENT,
                           f"CNI_ARGS: {part!r} is not KEY=VALUE (pairs separated by ';')")
        out.append((key, value))
    return tuple(out)


def config_version(stdin: bytes) -> str:
    """The request's cniVersion if it can be read (for error results), else the latest."""
    try:
        v = json.loads(stdin).get("cniVersion")
        _semver(v)
        return str(v)
    except (ValueError, AttributeError, TypeError, CniError):
        return LATEST


def parse_config(stdin: bytes, command: str) -> NetConf:
    try:
        doc = json.loads(stdin)
    except ValueError as e:
        raise CniError(Code.DECODING_FAILURE, f"network config on stdin is not JSON: {e}") \
            from None
    if not isinstance(doc, dict):
        raise CniError(Code.DECODING_FAILURE, "network config on stdin is not a JSON object")
    version = _field(doc, "cniVersion", str, required=True)
    _semver(version)
    if version not in SUPPORTED_VERSIONS:
        raise CniError(Code.INCOMPATIBLE_VERSION, f"cniVersion {version} is not supported",
                       "this plugin speaks " + ", ".join(SUPPORTED_VERSIONS))
    if command in ("GC", "STATUS") and not at_least(version, "1.1.0"):
        raise CniError(Code.INCOMPATIBLE_VERSION,
                       f"config version {version} does not allow {command} (needs 1.1.0)")
    name = _field(doc, "name", str, required=True)
    if not _CNI_NAME.fullmatch(name):
        raise CniError(Code.INVALID_CONFIG, f"name {name!r}: invalid network name")
    _field(doc, "type", str, required=True)
    if "ipam" in doc:
        raise CniError(Code.UNSUPPORTED_FIELD, f"ipam: {json.dumps(doc['ipam'])}: the NI's "
                       "own DHCP server gives the addresses; remove the ipam section")
    ni = _field(doc, "ni", str, required=True)
    try:
        names.check_ni_name(ni)
    except NetValueError as e:
        raise CniError(Code.INVALID_CONFIG, f"ni: {e}") from None
    socket = _field(doc, "socket", str) or DEFAULT_SOCKET
    if not socket.startswith("/"):
        raise CniError(Code.INVALID_CONFIG, f"socket {socket!r} is not an absolute path")
    app = _field(doc, "app", str)
    if app and not _HOSTNAME.fullmatch(app):
        raise CniError(Code.INVALID_CONFIG, f"app {app!r} is not a DNS label")
    rc = _field(doc, "runtimeConfig", dict) or {}
    mac = _mac(rc.get("mac"), "runtimeConfig.mac") or _mac(doc.get("mac"), "mac")
    prev = _field(doc, "prevResult", dict) or None
    return NetConf(
        cni_version=version, name=name, ni=ni, socket=socket, app=app, mac=mac,
        port_mappings=_port_mappings(rc.get("portMappings")),
        aliases=_aliases(rc.get("aliases"), name),
        prev_result=prev,
        valid_attachments=_valid_attachments(doc) if command == "GC" else None,
    )


def _field(doc: Mapping[str, Any], key: str, kind: type, required: bool = False) -> Any:
    if key not in doc or doc[key] is None:
        if required:
            raise CniError(Code.INVALID_CONFIG, f"network config has no {key!r}")
        return kind()
    value = doc[key]
    if not isinstance(value, kind):
        raise CniError(Code.INVALID_CONFIG, f"{key} must be a JSON {_json_kind(kind)}",
                       json.dumps(value))
    return value


def _json_kind(kind: type) -> str:
    return {str: "string", dict: "object", list: "array", int: "number"}.get(kind, kind.__name__)


def _mac(value: Any, where: str) -> str:
    if value in (None, ""):
        return ""
    mac = value.lower() if isinstance(value, str) else ""
    if not _MAC.fullmatch(mac) or int(mac[:2], 16) & 1:
        raise CniError(Code.INVALID_CONFIG, f"{where} {value!r} is not a unicast MAC address")
    return mac


def _port_mappings(raw: Any) -> tuple[PortMapping, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise CniError(Code.INVALID_CONFIG, "runtimeConfig.portMappings must be a JSON array")
    out = []
    for i, pm in enumerate(raw):
        where = f"runtimeConfig.portMappings[{i}]"
        if not isinstance(pm, dict):
            raise CniError(Code.INVALID_CONFIG, f"{where} must be a JSON object")
        ports = []
        for key in ("hostPort", "containerPort"):
            port = pm.get(key)
            if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
                raise CniError(Code.INVALID_CONFIG, f"{where}.{key} must be a port 1-65535",
                               json.dumps(port))
            ports.append(port)
        proto = pm.get("protocol") or "tcp"
        if not isinstance(proto, str) or proto.lower() not in ("tcp", "udp"):
            raise CniError(Code.INVALID_CONFIG, f"{where}.protocol must be tcp or udp",
                           json.dumps(proto))
        host_ip = pm.get("hostIP") or ""
        if host_ip == "0.0.0.0":
            host_ip = ""
        if not isinstance(host_ip, str) or (host_ip and not _IPV4.fullmatch(host_ip)):
            raise CniError(Code.INVALID_CONFIG, f"{where}.hostIP must be an IPv4 address",
                           json.dumps(host_ip))
        out.append(PortMapping(ports[0], ports[1], proto.lower(), host_ip))
    return tuple(out)


def _aliases(raw: Any, network: str) -> tuple[str, ...]:
    """The `aliases` capability: a list (the conventions doc) or, as podman 4.3 sends
    it, an object of lists by network name."""
    if isinstance(raw, dict):
        raw = raw.get(network)
    return tuple(a for a in raw if isinstance(a, str)) if isinstance(raw, list) else ()


def _valid_attachments(doc: Mapping[str, Any]) -> tuple[AttachmentKey, ...]:
    # without the list a GC would remove every attachment: refuse instead
    raw = doc.get(VALID_ATTACHMENTS)
    if not isinstance(raw, list):
        raise CniError(Code.INVALID_CONFIG, f"GC needs {VALID_ATTACHMENTS} (a JSON array)")
    out = []
    for i, a in enumerate(raw):
        if not (isinstance(a, dict) and isinstance(a.get("containerID"), str)
                and isinstance(a.get("ifname"), str)):
            raise CniError(Code.INVALID_CONFIG, f"{VALID_ATTACHMENTS}[{i}] must be an object "
                           "with string containerID and ifname", json.dumps(a))
        out.append(AttachmentKey(str(doc["name"]), a["containerID"], a["ifname"]))
    return tuple(out)


def hostname(conf: NetConf, inv: Invocation) -> str:
    """The name the container announces in DHCP (so the NI's DNS resolves it), if any:
    the declared app, else the pod (podman: container) name, else an alias, the
    first that is a DNS label."""
    for candidate in (conf.app, inv.arg("K8S_POD_NAME"), *conf.aliases):
        if candidate and _HOSTNAME.fullmatch(candidate.lower()):
            return candidate.lower()
    return ""


# -- results ---------------------------------------------------------------------------


def add_result(att: Attachment, version: str, prev: Mapping[str, Any] | None = None) -> str:
    """The ADD result; a previous plugin's result (prevResult) is kept, ours appended."""
    v110 = at_least(version, "1.1.0")
    interfaces = list((prev or {}).get("interfaces") or [])
    iface: dict[str, Any] = {"name": att.key.ifname, "mac": att.mac, "sandbox": att.netns}
    if v110:
        iface["mtu"] = att.mtu
    index = len(interfaces)
    interfaces.append(iface)
    ip: dict[str, Any] = {"address": att.address, "interface": index}
    if att.gateway:
        ip["gateway"] = att.gateway
    if not at_least(version, "1.0.0"):
        ip["version"] = "4"
    routes = list((prev or {}).get("routes") or [])
    for r in att.routes:
        routes.append({"dst": r.dst, **({"gw": r.gw} if r.gw else {})})
    dns: dict[str, Any] = {}
    if att.dns.nameservers:
        dns["nameservers"] = list(att.dns.nameservers)
    if att.dns.domain:
        dns["domain"] = att.dns.domain
    if att.dns.search:
        dns["search"] = list(att.dns.search)
    doc: dict[str, Any] = {
        "cniVersion": version,
        "interfaces": interfaces,
        "ips": [*((prev or {}).get("ips") or []), ip],
        "routes": routes,
        "dns": dns or dict((prev or {}).get("dns") or {}),
    }
    return json.dumps(doc)


def prev_result_drift(prev: Mapping[str, Any] | None, att: Attachment) -> list[str]:
    """CHECK: what the runtime's stored result (prevResult) says against the attachment."""
    if not prev:
        return ["no prevResult: the runtime must pass the result of ADD to CHECK"]
    ifaces = prev.get("interfaces") or []
    idx = next((i for i, x in enumerate(ifaces) if isinstance(x, dict)
                and x.get("name") == att.key.ifname and x.get("sandbox") == att.netns), None)
    if idx is None:
        return [f"prevResult has no interface {att.key.ifname} in {att.netns}"]
    problems = []
    if str(ifaces[idx].get("mac", "")).lower() != att.mac:
        problems.append(f"{att.key.ifname}: MAC {att.mac}, prevResult says "
                        f"{ifaces[idx].get('mac')}")
    addrs = {x.get("address") for x in prev.get("ips") or []
             if isinstance(x, dict) and x.get("interface") == idx}
    if att.address not in addrs:
        problems.append(f"{att.key.ifname}: address {att.address}, prevResult says "
                        f"{', '.join(sorted(str(a) for a in addrs)) or 'none'}")
    return problems
