"""The supervisor's own config file (YAML) -> SupervisorConfig.

    containerd: {address: /run/containerd/containerd.sock, namespace: nirunner}
    stateDir: /var/lib/nirunner
    apiSocket: /run/nirunner/nirunner.sock
    transitPool: 169.254.100.0/22
    image: nirunner/ni:0.1.0
    ipsecBackend: auto        # VPN NIs: kernel ESP if the kernel has it, else libipsec
    taskSeccomp: true         # NI tasks under the seccomp allow-list; false | log to debug
    shimGroupSize: 10         # NI tasks sharing one runc shim process; 1: a shim each
    secretsDir: /etc/nirunner/secrets   # VPN credential files must be below it
    metrics:                  # optional: a Prometheus endpoint (off by default)
      listen: 127.0.0.1:9464  # or a Unix socket path; nothing else (see README)
      cacheSeconds: 5         # the expensive reads are this old at most (1..60)
    uplinks:
      - {name: eth0, interface: eth0}
    source:                   # optional: desired state from a fleet's etcd (see README)
      etcd:
        endpoints: [https://10.0.0.1:2379, https://10.0.0.2:2379]
        device: edge-17
        prefix: /nirunner
        tls: {ca: /etc/nirunner/etcd/ca.pem, cert: ..., key: ...}
        statusTTL: 10         # seconds

Every key is optional; absent keys take SupervisorConfig's defaults. The file is
read like manifests (runner.model.reader: size, UTF-8, control characters).
"""

from __future__ import annotations

import re
from ipaddress import IPv4Network

from runner.model.checker import Checker
from runner.model.errors import ConfigError, Problem, show
from runner.model.reader import Text, check_text, read_file
from runner.model.types import (
    EtcdSource,
    EtcdTls,
    IpsecBackend,
    MetricsConfig,
    SupervisorConfig,
    TaskSeccomp,
    Uplink,
)
from runner.model.yamldoc import Document, read_documents

UPLINK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # at most 32 characters
UPLINK_NAME_RULE = "use 1-32 letters, digits, '_', '.' and '-', starting with a letter or digit"
# Linux takes 1-15 characters other than '/', ':' and whitespace; we also keep out
# quotes, ';' and the like, since interface names reach nftables and dnsmasq text.
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_IFNAME_RULE = "a Linux interface name here has 1-15 letters, digits, '_', '.' or '-'"
_NAMESPACE = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")
_NAMESPACE_RULE = "use letters and digits, separated by single '.', '_' or '-' (at most 76)"
_PATH = re.compile(r"/[^\x00-\x1f\x7f]*")
_PATH_RULE = "must be an absolute path without control characters"
_DIR = re.compile(r"/(?:[^\x00-\x1f\x7f/]+/?)*")
_DIR_RULE = ("must be an absolute path without control characters, '//', '.' or '..' "
             "components")
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*")
_IMAGE_RULE = "an image reference such as 'nirunner/ni:0.1.0'"
_FIELDS = ("containerd", "stateDir", "apiSocket", "transitPool", "image", "resolvConf",
           "ipsecBackend", "secretsDir", "uplinks", "source", "taskSeccomp", "metrics",
           "shimGroupSize")
# Fleet names reach etcd keys: a device id is a DNS label, a prefix a plain path.
DEVICE_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
DEVICE_ID_RULE = "1-63 of a-z, 0-9 and '-', not starting or ending with '-' (a DNS label)"
ETCD_PREFIX = re.compile(r"(?:/(?!\.\.?(?:/|$))[A-Za-z0-9_.-]+)+")
ETCD_PREFIX_RULE = "like /nirunner: '/' and parts of letters, digits, '_', '.', '-' (no '..')"
_ENDPOINT = re.compile(r"(https?)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})")
_ENDPOINT_RULE = "an etcd client URL like https://10.0.0.1:2379"
_ETCD_FIELDS = ("endpoints", "device", "prefix", "tls", "statusTTL")


def load_config(path: str) -> SupervisorConfig:
    """Read and validate the config file at `path`; ConfigError lists every problem."""
    found = read_file(path)
    if isinstance(found, Problem):
        raise ConfigError([found])
    return _parse(found)


def parse_config(text: str, source: str | None = None) -> SupervisorConfig:
    """Validate config text; an empty text gives the defaults."""
    found = check_text(text, source)
    if isinstance(found, Problem):
        raise ConfigError([found])
    return _parse(found)


def _parse(found: Text) -> SupervisorConfig:
    source = found.source
    docs, fatal = read_documents(found.text)
    if fatal:
        raise ConfigError([Problem(source, None, "", msg, line) for msg, line in fatal])
    if len(docs) > 1:
        line = docs[1].lines.get("")
        raise ConfigError([Problem(source, None, "", "holds more than one YAML document", line)])
    checker = Checker(source, docs[0] if docs else Document(value={}))
    config = _config(checker)
    if config is None or not checker.ok:
        raise ConfigError(checker.problems())
    return config


def _config(c: Checker) -> SupervisorConfig | None:
    top = c.mapping(c.root, "", _FIELDS)
    if top is None:
        return None
    default = SupervisorConfig()
    address, namespace = _containerd(c, top.get("containerd"))
    return SupervisorConfig(
        containerd_address=address or default.containerd_address,
        containerd_namespace=namespace or default.containerd_namespace,
        state_dir=c.matching(top.get("stateDir"), "stateDir", _PATH, _PATH_RULE, 1024)
        or default.state_dir,
        api_socket=c.matching(top.get("apiSocket"), "apiSocket", _PATH, _PATH_RULE, 107)
        or default.api_socket,
        transit_pool=_transit_pool(c, top.get("transitPool")) or default.transit_pool,
        image=c.matching(top.get("image"), "image", _IMAGE, _IMAGE_RULE, 255) or default.image,
        resolv_conf=c.matching(top.get("resolvConf"), "resolvConf", _PATH, _PATH_RULE, 1024)
        or default.resolv_conf,
        ipsec_backend=_ipsec_backend(c, top.get("ipsecBackend")) or default.ipsec_backend,
        secrets_dir=_directory(c, top.get("secretsDir"), "secretsDir") or default.secrets_dir,
        uplinks=_uplinks(c, top.get("uplinks")),
        source=_source(c, top.get("source")),
        task_seccomp=_task_seccomp(c, top.get("taskSeccomp")) or default.task_seccomp,
        metrics=_metrics(c, top.get("metrics")),
        shim_group_size=c.integer(top.get("shimGroupSize"), "shimGroupSize", 1, 100)
        or default.shim_group_size,
    )


def _containerd(c: Checker, value: object) -> tuple[str | None, str | None]:
    m = c.mapping(value, "containerd", ("address", "namespace"))
    if m is None:
        return None, None
    address = c.matching(m.get("address"), "containerd.address", _PATH, _PATH_RULE, 107)
    namespace = c.matching(
        m.get("namespace"), "containerd.namespace", _NAMESPACE, _NAMESPACE_RULE, 76
    )
    return address, namespace


def _directory(c: Checker, value: object, path: str) -> str | None:
    """An absolute directory path, without a trailing '/' (except for '/' itself)."""
    text = c.matching(value, path, _DIR, _DIR_RULE, 1024)
    if text is None:
        return None
    if any(part in (".", "..") for part in text.split("/")):
        c.error(path, f"{show(text)} is not valid: {_DIR_RULE}")
        return None
    return text.rstrip("/") or "/"


_LOOPBACK_PORT = re.compile(r"127\.0\.0\.1:([0-9]{1,5})")
_UNIX_PATH_MAX = 107  # sun_path


def _metrics(c: Checker, value: object) -> MetricsConfig | None:
    m = c.mapping(value, "metrics", ("listen", "cacheSeconds"), ("listen",))
    if m is None:
        return None
    path = "metrics.listen"
    listen = c.string(m.get("listen"), path)
    cache = c.integer(m.get("cacheSeconds"), "metrics.cacheSeconds", 1, 60)
    if listen is None:
        return None
    if listen.startswith("/"):
        if not _PATH.fullmatch(listen) or len(listen) > _UNIX_PATH_MAX:
            c.error(path, f"{show(listen)} is not a usable Unix socket path "
                          f"(absolute, no control characters, at most {_UNIX_PATH_MAX})")
            return None
    else:
        port = _LOOPBACK_PORT.fullmatch(listen)
        if port is None:
            c.error(path, f"{show(listen)} is refused: metrics are served only on "
                          "127.0.0.1:PORT or a Unix socket path, never on an address other "
                          "hosts can reach (they tell about every NI, and have no "
                          "authentication)")
            return None
        if not 1 <= int(port.group(1)) <= 65535:
            c.error(path, f"{show(listen)} has a port out of range 1..65535")
            return None
    default = MetricsConfig("")
    return MetricsConfig(listen, cache or default.cache_seconds)


def _ipsec_backend(c: Checker, value: object) -> IpsecBackend | None:
    text = c.string(value, "ipsecBackend")
    if text is None:
        return None
    choices = [b.value for b in IpsecBackend]
    if text not in choices:
        c.error("ipsecBackend", f"{show(text)} is not one of {', '.join(choices)}")
        return None
    return IpsecBackend(text)


def _task_seccomp(c: Checker, value: object) -> TaskSeccomp | None:
    # YAML booleans for on/off; "log" is the debugging mode between them
    if value is None:
        return None
    if value is True:
        return TaskSeccomp.ENFORCE
    if value is False:
        return TaskSeccomp.OFF
    if value == TaskSeccomp.LOG.value:
        return TaskSeccomp.LOG
    c.error("taskSeccomp", f"{show(value)} is not one of true, false, log")
    return None


def _transit_pool(c: Checker, value: object) -> IPv4Network | None:
    # link-local is the default; the pool needs room for at least one /30 ... and a /29
    # keeps the first slot's neighbours apart from the network and broadcast addresses
    pool = c.network(value, "transitPool", "169.254.100.0/22", 0, 32, link_local=True)
    if pool is not None and pool.prefixlen > 29:
        c.error("transitPool", f"{pool} is too small: it needs a prefix of /29 or shorter "
                               f"(a /30 per NI)")
        return None
    return pool


def _uplinks(c: Checker, value: object) -> tuple[Uplink, ...]:
    uplinks: list[Uplink] = []
    names: dict[str, str] = {}
    interfaces: dict[str, str] = {}
    for path, item in c.items(value, "uplinks"):
        m = c.mapping(item, path, ("name", "interface"), ("name", "interface"))
        if m is None:
            continue
        name = c.matching(m.get("name"), f"{path}.name", UPLINK_NAME, UPLINK_NAME_RULE, 32)
        ifname = c.matching(m.get("interface"), f"{path}.interface", _IFNAME, _IFNAME_RULE, 15)
        if ifname in (".", ".."):
            ifname = None
            c.error(f"{path}.interface", "cannot be '.' or '..'")
        fresh = [_unique(c, seen, v, f"{path}.{k}")
                 for k, v, seen in (("name", name, names), ("interface", ifname, interfaces))
                 if v is not None]
        if name is not None and ifname is not None and all(fresh):
            uplinks.append(Uplink(name, ifname))
    return tuple(uplinks)


def _unique(c: Checker, seen: dict[str, str], value: str, path: str) -> bool:
    if value in seen:
        c.error(path, f"{value!r} is already used by {seen[value]}")
        return False
    seen[value] = path
    return True


def _source(c: Checker, value: object) -> EtcdSource | None:
    m = c.mapping(value, "source", ("etcd",), ("etcd",))
    if m is None:
        return None
    path = "source.etcd"
    e = c.mapping(m.get("etcd"), path, _ETCD_FIELDS, ("endpoints", "device"))
    if e is None:
        return None
    endpoints = _endpoints(c, e.get("endpoints"), f"{path}.endpoints")
    device = c.matching(e.get("device"), f"{path}.device", DEVICE_ID, DEVICE_ID_RULE, 63)
    prefix = c.matching(e.get("prefix"), f"{path}.prefix", ETCD_PREFIX, ETCD_PREFIX_RULE, 128)
    tls = _etcd_tls(c, e.get("tls"), f"{path}.tls")
    ttl = c.integer(e.get("statusTTL"), f"{path}.statusTTL", 5, 600)
    if endpoints and any(u.startswith("https:") for u in endpoints) and tls is None \
            and e.get("tls") is None:
        c.error(f"{path}.tls", "is required for https endpoints (ca, cert, key)")
    if endpoints and tls is not None and any(u.startswith("http:") for u in endpoints):
        c.error(f"{path}.endpoints", "use https:// endpoints with tls (not http://)")
    if not endpoints or device is None:
        return None
    default = EtcdSource((), "")
    return EtcdSource(endpoints=endpoints, device=device, prefix=prefix or default.prefix,
                      tls=tls, status_ttl=ttl or default.status_ttl)


def _endpoints(c: Checker, value: object, path: str) -> tuple[str, ...]:
    out: list[str] = []
    items = c.items(value, path)
    if value is not None and not items and isinstance(value, list):
        c.error(path, "must list at least one endpoint")
    for p, item in items:
        url = c.matching(item, p, _ENDPOINT, _ENDPOINT_RULE, 270)
        if url is None:
            continue
        match = _ENDPOINT.fullmatch(url)
        assert match is not None
        if not 1 <= int(match.group(3)) <= 65535:
            c.error(p, f"{show(url)} has a port out of range 1..65535")
        elif url in out:
            c.error(p, f"{show(url)} is listed twice")
        else:
            out.append(url)
    return tuple(out)


def _etcd_tls(c: Checker, value: object, path: str) -> EtcdTls | None:
    m = c.mapping(value, path, ("ca", "cert", "key"), ("ca", "cert", "key"))
    if m is None:
        return None
    ca, cert, key = (c.matching(m.get(k), f"{path}.{k}", _PATH, _PATH_RULE, 1024)
                     for k in ("ca", "cert", "key"))
    if ca is None or cert is None or key is None:
        return None
    return EtcdTls(ca, cert, key)
