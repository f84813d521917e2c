from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path

import pytest

from runner.model.config import load_config, parse_config
from runner.model.errors import ConfigError
from runner.model.types import SupervisorConfig, TaskSeccomp, Uplink

EXAMPLES = Path(__file__).parents[3] / "examples"

# Line numbers in the table below refer to this text.
FULL = """\
containerd:
  address: /run/containerd/containerd.sock
  namespace: nirunner
stateDir: /var/lib/nirunner
apiSocket: /run/nirunner/nirunner.sock
transitPool: 169.254.100.0/22
image: nirunner/ni:0.1.0
uplinks:
  - name: eth0
    interface: eth0
  - name: wan2
    interface: enp3s0
"""


def edit(old: str, new: str) -> str:
    assert old in FULL, old
    return FULL.replace(old, new, 1)


def test_full_config() -> None:
    config = parse_config(FULL, "nirunner.yaml")
    assert config == SupervisorConfig(
        uplinks=(Uplink("eth0", "eth0"), Uplink("wan2", "enp3s0")),
    )
    assert config.uplink("wan2") == Uplink("wan2", "enp3s0")


def test_empty_config_gives_defaults() -> None:
    assert parse_config("") == SupervisorConfig()
    assert parse_config("# nothing\n") == SupervisorConfig()


def test_some_keys_change_only_those() -> None:
    config = parse_config("transitPool: 100.64.0.0/24\ncontainerd: {namespace: edge.ni}\n")
    assert config.transit_pool == IPv4Network("100.64.0.0/24")
    assert config.containerd_namespace == "edge.ni"
    assert config.containerd_address == SupervisorConfig().containerd_address


BAD = [
    ("pool-host-bits", edit("169.254.100.0/22", "169.254.100.1/22"),
     "transitPool", "has host bits set; did you mean 169.254.100.0/22?", 6),
    ("pool-too-small", edit("169.254.100.0/22", "169.254.100.0/30"),
     "transitPool", "is too small", 6),
    ("pool-loopback", edit("169.254.100.0/22", "127.1.0.0/16"),
     "transitPool", "127.1.0.0/16 is loopback (127.0.0.0/8)", 6),
    ("pool-zero", edit("169.254.100.0/22", "0.0.0.0/8"),
     "transitPool", "0.0.0.0/8 is in 0.0.0.0/8 ('this network'), which is never routed", 6),
    ("pool-syntax", edit("169.254.100.0/22", "169.254.100.0"),
     "transitPool", "is not an IPv4 CIDR", 6),
    ("ifname-too-long", edit("interface: enp3s0", "interface: enp3s0abcdefghijk"),
     "uplinks[1].interface", "'enp3s0abcdefghijk' is not valid: a Linux interface name", 12),
    ("ifname-slash", edit("interface: enp3s0", "interface: en/p3"),
     "uplinks[1].interface", "'en/p3' is not valid", 12),
    ("ifname-colon", edit("interface: enp3s0", "interface: 'eth0:1'"),
     "uplinks[1].interface", "'eth0:1' is not valid", 12),
    ("ifname-space", edit("interface: enp3s0", "interface: 'en p3'"),
     "uplinks[1].interface", "'en p3' is not valid", 12),
    ("uplink-name-twice", edit("name: wan2", "name: eth0"),
     "uplinks[1].name", "'eth0' is already used by uplinks[0].name", 11),
    ("interface-twice", edit("interface: enp3s0", "interface: eth0"),
     "uplinks[1].interface", "'eth0' is already used by uplinks[0].interface", 12),
    ("uplink-name-bad", edit("name: wan2", "name: 'wan 2'"),
     "uplinks[1].name", "'wan 2' is not valid", 11),
    ("uplink-missing-interface", edit("    interface: enp3s0\n", ""),
     "uplinks[1].interface", "is required", 11),
    ("unknown-field", edit("stateDir:", "statedir:"),
     "statedir", "is not a known field (did you mean 'stateDir'?)", 4),
    ("wrong-type", edit("namespace: nirunner", "namespace: 42"),
     "containerd.namespace", "must be a string, not an integer (42)", 3),
    ("bad-namespace", edit("namespace: nirunner", "namespace: 'a b'"),
     "containerd.namespace", "'a b' is not valid", 3),
    ("relative-state-dir", edit("/var/lib/nirunner", "var/lib/nirunner"),
     "stateDir", "'var/lib/nirunner' is not valid: must be an absolute path", 4),
    ("uplinks-not-a-list", edit("uplinks:\n", "uplinks: eth0\nx:\n"),
     "uplinks", "must be a list", 8),
]


@pytest.mark.parametrize(
    ("text", "path", "fragment", "line"), [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
def test_bad_config(text: str, path: str, fragment: str, line: int) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "nirunner.yaml")
    found = err.value.problems
    assert any(
        p.path == path and fragment in p.message and p.line == line for p in found
    ), "\n".join(f"{p.path!r} {p.message!r} line {p.line}" for p in found)
    assert all(str(p).startswith("nirunner.yaml: ") for p in found)


def test_all_config_problems_together() -> None:
    text = FULL.replace("169.254.100.0/22", "127.0.0.0/8").replace("enp3s0", "a/b")
    with pytest.raises(ConfigError) as err:
        parse_config(text, "nirunner.yaml")
    assert [p.path for p in err.value.problems] == ["transitPool", "uplinks[1].interface"]
    assert str(err.value).splitlines()[0] == (
        "nirunner.yaml: transitPool 127.0.0.0/8 is loopback (127.0.0.0/8), which never leaves "
        "the host (line 6)"
    )


def test_more_than_one_document() -> None:
    with pytest.raises(ConfigError, match="more than one YAML document"):
        parse_config(FULL + "---\nimage: x\n")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(str(tmp_path / "nope.yaml"))


def test_example_config() -> None:
    config = load_config(str(EXAMPLES / "config" / "supervisor.yaml"))
    assert config.uplinks == (Uplink("eth0", "eth0"),)
    assert config.transit_pool == IPv4Network("169.254.100.0/22")


def test_resolv_conf_path() -> None:
    assert parse_config("resolvConf: /run/lab/resolv.conf\n").resolv_conf == "/run/lab/resolv.conf"
    assert parse_config("").resolv_conf == "/etc/resolv.conf"


SOURCE = """\
source:
  etcd:
    endpoints: [https://10.0.0.1:2379, "https://[fd00::2]:2379", https://etcd-3.lan:2379]
    device: edge-1
    prefix: /fleet/site-1
    tls: {ca: /etc/nirunner/etcd/ca.pem, cert: /etc/nirunner/etcd/dev.pem,
          key: /etc/nirunner/etcd/dev.key}
    statusTTL: 15
"""


def test_etcd_source() -> None:
    from runner.model.types import EtcdSource, EtcdTls

    assert parse_config(SOURCE).source == EtcdSource(
        ("https://10.0.0.1:2379", "https://[fd00::2]:2379", "https://etcd-3.lan:2379"),
        "edge-1", "/fleet/site-1",
        EtcdTls("/etc/nirunner/etcd/ca.pem", "/etc/nirunner/etcd/dev.pem",
                "/etc/nirunner/etcd/dev.key"), 15)
    plain = parse_config("source: {etcd: {endpoints: [http://127.0.0.1:2379], device: d}}")
    assert plain.source == EtcdSource(("http://127.0.0.1:2379",), "d")
    assert plain.source.prefix == "/nirunner" and plain.source.status_ttl == 10
    assert parse_config("").source is None


@pytest.mark.parametrize(("old", "new", "path", "message", "line"), [
    ("device: edge-1", "device: Edge_1", "source.etcd.device", "'Edge_1' is not valid", 4),
    ("device: edge-1", "device: 'a;b'", "source.etcd.device", "is not valid", 4),
    ("prefix: /fleet/site-1", "prefix: /fleet/../x", "source.etcd.prefix", "no '..'", 5),
    ("prefix: /fleet/site-1", "prefix: fleet", "source.etcd.prefix", "is not valid", 5),
    ("https://10.0.0.1:2379,", "ftp://10.0.0.1:2379,", "source.etcd.endpoints[0]",
     "is not valid: an etcd client URL", 3),
    ("https://10.0.0.1:2379,", "https://10.0.0.1:70000,", "source.etcd.endpoints[0]",
     "port out of range", 3),
    ("https://etcd-3.lan:2379", "https://10.0.0.1:2379", "source.etcd.endpoints[2]",
     "is listed twice", 3),
    ("statusTTL: 15", "statusTTL: 1", "source.etcd.statusTTL", "1 is out of range 5..600", 8),
    ("    tls: {ca: /etc/nirunner/etcd/ca.pem, cert: /etc/nirunner/etcd/dev.pem,\n"
     "          key: /etc/nirunner/etcd/dev.key}\n", "", "source.etcd.tls",
     "is required for https endpoints", 2),
    ("key: /etc/nirunner/etcd/dev.key", "keyfile: x", "source.etcd.tls.keyfile",
     "is not a known field", 7),
    ("statusTTL: 15", "statusTTL: 15\n    password: x", "source.etcd.password",
     "is not a known field", 9),
])
def test_bad_etcd_source(old: str, new: str, path: str, message: str, line: int) -> None:
    assert old in SOURCE
    with pytest.raises(ConfigError) as e:
        parse_config(SOURCE.replace(old, new, 1), "c.yaml")
    found = [p for p in e.value.problems if p.path == path]
    assert found, str(e.value)
    assert message in found[0].message and found[0].line == line, str(e.value)


@pytest.mark.parametrize(("value", "mode"), [
    ("true", TaskSeccomp.ENFORCE), ("false", TaskSeccomp.OFF), ("log", TaskSeccomp.LOG),
    ("off", TaskSeccomp.OFF)])  # YAML 1.1: off is false
def test_task_seccomp(value: str, mode: TaskSeccomp) -> None:
    assert parse_config(f"taskSeccomp: {value}\n").task_seccomp is mode
    assert parse_config("").task_seccomp is TaskSeccomp.ENFORCE


@pytest.mark.parametrize("value", ["enforce", "'false'", "yes please", "1", "[]"])
def test_task_seccomp_bad(value: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(f"image: nirunner/ni:1\ntaskSeccomp: {value}\n", "nirunner.yaml")
    [problem] = err.value.problems
    assert problem.path == "taskSeccomp" and problem.line == 2
    assert "is not one of true, false, log" in problem.message


@pytest.mark.parametrize("value,listen,port,path", [
    ("{listen: '127.0.0.1:9464'}", "127.0.0.1:9464", 9464, None),
    ("{listen: /run/nirunner/metrics.sock, cacheSeconds: 2}", "/run/nirunner/metrics.sock", 0,
     "/run/nirunner/metrics.sock"),
])
def test_metrics(value: str, listen: str, port: int, path: str | None) -> None:
    config = parse_config(FULL + f"metrics: {value}\n")
    assert config.metrics is not None
    assert (config.metrics.listen, config.metrics.port, config.metrics.unix_path) == \
        (listen, port, path)
    assert config.metrics.cache_seconds == (2 if "cacheSeconds" in value else 5)
    assert parse_config(FULL).metrics is None  # off by default


@pytest.mark.parametrize("value,message", [
    ("{listen: '0.0.0.0:9464'}", "never on an address other hosts can reach"),
    ("{listen: '198.51.100.2:9464'}", "only on 127.0.0.1:PORT or a Unix socket path"),
    ("{listen: 'localhost:9464'}", "only on 127.0.0.1:PORT"),
    ("{listen: '[::]:9464'}", "only on 127.0.0.1:PORT"),
    ("{listen: '127.0.0.1:0'}", "port out of range"),
    ("{listen: '127.0.0.1:70000'}", "port out of range"),
    ("{listen: 'metrics.sock'}", "only on 127.0.0.1:PORT or a Unix socket path"),
    ("{listen: '/" + "x" * 120 + "'}", "not a usable Unix socket path"),
    ("{listen: '127.0.0.1:9464', cacheSeconds: 0}", "metrics.cacheSeconds 0 is out of range 1..60"),
    ("{}", "metrics.listen"),
    ("{listen: '127.0.0.1:9464', port: 1}", "metrics.port"),
])
def test_metrics_refused(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(FULL + f"metrics: {value}\n", "s.yaml")
    assert message in str(e.value)
    assert "(line 13)" in str(e.value)
