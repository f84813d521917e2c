from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from runner.errors import NirunnerError
from runner.model.config import load_config
from runner.model.errors import ManifestError, Problem
from runner.model.manifest import (
    default_range,
    load_and_validate,
    load_documents,
    load_paths,
    parse_documents,
    validate_set,
)
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
    SupervisorConfig,
    Uplink,
)

EXAMPLES = Path(__file__).parents[3] / "examples"
CONFIG = SupervisorConfig(uplinks=(Uplink("eth0", "eth0"), Uplink("eth1", "eth1")))

# Line numbers in the table below refer to this text (line 1 = apiVersion).
FACTORY = """\
apiVersion: nirunner/v1
kind: NetworkInstance
metadata:
  name: factory
spec:
  type: local
  uplink: eth0
  subnet: 10.1.0.0/24
  gateway: 10.1.0.1
  mtu: 1500
  dhcp:
    range:
      start: 10.1.0.100
      end: 10.1.0.199
    leaseTime: 1h
    reservations:
      - name: plc
        mac: "02:00:00:00:00:10"
        ip: 10.1.0.10
      - name: hmi
        mac: "02:00:00:00:00:11"
        ip: 10.1.0.11
  dns:
    domain: factory.lan
    upstream: [203.0.113.53]
    static:
      - name: historian
        addresses: [10.1.0.20]
  ntp: [203.0.113.123]
  portMaps:
    - name: plc-web
      protocol: tcp
      uplinkPort: 8080
      target: plc
      targetPort: 80
  resources:
    memory: 64Mi
    cpu: 0.25
    pids: 128
"""

# Appended after FACTORY and a "---" line: its first line is line 41.
LAB = """\
apiVersion: nirunner/v1
kind: NetworkInstance
metadata:
  name: lab
spec:
  type: local
  uplink: eth0
  subnet: 10.1.0.0/24
  portMaps:
    - {name: web, protocol: tcp, uplinkPort: 8080, target: 10.1.0.50, targetPort: 80}
"""


def problems(text: str) -> list[Problem]:
    """Every problem of a file's text: per manifest, then across the set."""
    try:
        validate_set(parse_documents(text, "site.yaml"), CONFIG)
    except ManifestError as e:
        return e.problems
    return []


def edit(old: str, new: str, text: str = FACTORY) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def two(second: str) -> str:
    return FACTORY + "---\n" + second


BAD = [
    # id, manifest text, field path, message fragment, line
    ("bad-cidr", edit("subnet: 10.1.0.0/24", "subnet: 10.1.0/24"),
     "spec.subnet", "'10.1.0/24' is not an IPv4 CIDR", 8),
    ("host-bits", edit("subnet: 10.1.0.0/24", "subnet: 10.1.0.5/24"),
     "spec.subnet", "10.1.0.5/24 has host bits set; did you mean 10.1.0.0/24?", 8),
    ("prefix-too-long", edit("subnet: 10.1.0.0/24", "subnet: 10.1.0.0/31"),
     "spec.subnet", "use /8 to /30", 8),
    ("gateway-outside", edit("gateway: 10.1.0.1", "gateway: 10.2.0.1"),
     "spec.gateway", "10.2.0.1 is outside spec.subnet 10.1.0.0/24", 9),
    ("gateway-broadcast", edit("gateway: 10.1.0.1", "gateway: 10.1.0.255"),
     "spec.gateway", "is the broadcast address of spec.subnet", 9),
    ("range-outside", edit("start: 10.1.0.100", "start: 10.2.0.5"),
     "spec.dhcp.range.start", "10.2.0.5 is outside spec.subnet 10.1.0.0/24", 13),
    ("range-reversed", edit("start: 10.1.0.100", "start: 10.1.0.250"),
     "spec.dhcp.range", "start 10.1.0.250 is after end 10.1.0.199", 12),
    ("gateway-in-range", edit("gateway: 10.1.0.1", "gateway: 10.1.0.150"),
     "spec.dhcp.range", "10.1.0.100-10.1.0.199 contains spec.gateway 10.1.0.150", 12),
    ("range-missing-end", edit("      end: 10.1.0.199\n", ""),
     "spec.dhcp.range.end", "is required", 12),
    ("lease-too-short", edit("leaseTime: 1h", "leaseTime: 30s"),
     "spec.dhcp.leaseTime", "out of range 2m..365d", 15),
    ("lease-bad", edit("leaseTime: 1h", "leaseTime: 1 hour"),
     "spec.dhcp.leaseTime", "'1 hour' is not a duration", 15),
    ("reservation-ip-twice", edit("ip: 10.1.0.11", "ip: 10.1.0.10"),
     "spec.dhcp.reservations[1].ip", "'10.1.0.10' is already used by spec.dhcp.reservations[0]",
     22),
    ("reservation-mac-twice", edit('"02:00:00:00:00:11"', '"02:00:00:00:00:10"'),
     "spec.dhcp.reservations[1].mac", "is already used by spec.dhcp.reservations[0]", 21),
    ("reservation-mac-twice-other-case", edit('"02:00:00:00:00:11"', '"02-00-00-00-00-10"'),
     "spec.dhcp.reservations[1].mac", "'02:00:00:00:00:10' is already used", 21),
    ("reservation-name-twice", edit("- name: hmi", "- name: plc"),
     "spec.dhcp.reservations[1].name", "'plc' is already used", 20),
    ("reservation-outside", edit("ip: 10.1.0.10", "ip: 10.9.0.10"),
     "spec.dhcp.reservations[0].ip", "10.9.0.10 is outside spec.subnet 10.1.0.0/24", 19),
    ("reservation-is-gateway", edit("ip: 10.1.0.10", "ip: 10.1.0.1"),
     "spec.dhcp.reservations[0].ip", "10.1.0.1 is spec.gateway", 19),
    ("reservation-network-address", edit("ip: 10.1.0.10", "ip: 10.1.0.0"),
     "spec.dhcp.reservations[0].ip", "is the network address", 19),
    ("mac-multicast", edit('"02:00:00:00:00:10"', '"01:00:5e:00:00:10"'),
     "spec.dhcp.reservations[0].mac", "multicast MAC", 18),
    ("mac-bad", edit('"02:00:00:00:00:10"', '"02:00:00:00:10"'),
     "spec.dhcp.reservations[0].mac", "is not a MAC address", 18),
    ("unknown-uplink", edit("uplink: eth0", "uplink: eth9"),
     "spec.uplink", "'eth9' is not an uplink of the supervisor config (it has: eth0, eth1)", 7),
    ("port-clash-across-nis", two(LAB),
     "spec.portMaps[0].uplinkPort",
     "tcp 8080 on uplink eth0 is already mapped by NI 'factory' (spec.portMaps[0] in "
     "site.yaml:31)", 50),
    ("port-map-air-gapped", edit("  uplink: eth0\n", ""),
     "spec.portMaps", "an air-gapped NI (no uplink) cannot have port maps", 29),
    ("bad-port", edit("uplinkPort: 8080", "uplinkPort: 70000"),
     "spec.portMaps[0].uplinkPort", "70000 is out of range 1..65535", 33),
    ("port-as-string", edit("targetPort: 80", 'targetPort: "80"'),
     "spec.portMaps[0].targetPort", "must be an integer, not a string ('80')", 35),
    ("bad-protocol", edit("protocol: tcp", "protocol: sctp"),
     "spec.portMaps[0].protocol", "'sctp' is not tcp or udp", 32),
    ("unknown-target", edit("target: plc", "target: plcc"),
     "spec.portMaps[0].target",
     "'plcc' is neither an app, a reservation nor an IPv4 address (did you mean 'plc'?)", 34),
    ("target-outside-subnet", edit("target: plc", "target: 10.2.0.9"),
     "spec.portMaps[0].target", "10.2.0.9 is outside spec.subnet", 34),
    ("target-is-gateway", edit("target: plc", "target: 10.1.0.1"),
     "spec.portMaps[0].target", "10.1.0.1 is spec.gateway", 34),
    ("inject-ni-name", edit("name: factory", "name: a;b"),
     "metadata.name", "'a;b' is not valid: use lowercase letters", 4),
    ("inject-newline-reservation", edit("- name: plc", '- name: "x\\nserver=1.2.3.4"'),
     "spec.dhcp.reservations[0].name", "'x\\nserver=1.2.3.4' is not valid", 17),
    ("inject-space-hostname", edit("- name: historian", '- name: "my historian"'),
     "spec.dns.static[0].name", "'my historian' is not valid", 27),
    ("inject-semicolon-domain", edit("domain: factory.lan", 'domain: "factory.lan;x"'),
     "spec.dns.domain", "'factory.lan;x' is not valid", 24),
    ("inject-hash-port-map", edit("- name: plc-web", '- name: "web#1"'),
     "spec.portMaps[0].name", "'web#1' is not valid", 31),
    ("inject-braces-static", edit("- name: historian", '- name: "{x}"'),
     "spec.dns.static[0].name", "'{x}' is not valid", 27),
    ("inject-quote-reservation", edit("- name: plc", """- name: "pl'c\""""),
     "spec.dhcp.reservations[0].name", '"pl\'c" is not valid', 17),
    ("uppercase-ni-name", edit("name: factory", "name: Factory"),
     "metadata.name", "'Factory' is not valid", 4),
    ("ni-name-too-long", edit("name: factory", "name: " + "f" * 33),
     "metadata.name", "at most 32 characters", 4),
    ("static-name-twice",
     edit("  ntp:", "      - {name: historian, addresses: [10.1.0.21]}\n  ntp:"),
     "spec.dns.static[1].name", "'historian' is already used by spec.dns.static[0]", 29),
    ("static-name-is-reservation", edit("- name: historian", "- name: plc.factory.lan"),
     "spec.dns.static[0].name", "is already the hostname of reservation 'plc'", 27),
    ("upstream-loopback", edit("[203.0.113.53]", "[127.0.0.1]"),
     "spec.dns.upstream[0]", "127.0.0.1 is loopback", 25),
    ("ntp-not-ipv4", edit("ntp: [203.0.113.123]", "ntp: [pool.ntp.org]"),
     "spec.ntp[0]", "'pool.ntp.org' is not an IPv4 address", 29),
    ("unknown-field", edit("  subnet: 10.1.0.0/24", "  subnet: 10.1.0.0/24\n  subnt: x"),
     "spec.subnt", "is not a known field (did you mean 'subnet'?)", 9),
    ("unknown-field-case", edit("leaseTime: 1h", "leasetime: 1h"),
     "spec.dhcp.leasetime", "(did you mean 'leaseTime'?)", 15),
    ("duplicate-key", edit("  mtu: 1500\n", "  mtu: 1500\n  mtu: 1400\n"),
     "spec.mtu", "is given twice", 11),
    ("missing-subnet", edit("  subnet: 10.1.0.0/24\n", ""),
     "spec.subnet", "is required", 5),
    ("wrong-type-int-name", edit("name: factory", "name: 123"),
     "metadata.name", "must be a string, not an integer (123)", 4),
    ("wrong-type-bool-name", edit("name: factory", "name: yes"),
     "metadata.name", "must be a string, not a boolean (True)", 4),
    ("wrong-type-mapping", edit("  dns:\n", "  dns: [1]\n  dnsx:\n"),
     "spec.dns", "must be a mapping, not a list", 23),
    ("wrong-type-list", edit("ntp: [203.0.113.123]", "ntp: 203.0.113.123"),
     "spec.ntp", "must be a list, not a string ('203.0.113.123')", 29),
    ("mtu-range", edit("mtu: 1500", "mtu: 100"),
     "spec.mtu", "100 is out of range 576..9000", 10),
    ("bad-memory", edit("memory: 64Mi", "memory: 64MB"),
     "spec.resources.memory", "'64MB' is not a size like 64Mi", 37),
    ("memory-too-small", edit("memory: 64Mi", "memory: 8Mi"),
     "spec.resources.memory", "8Mi is out of range: at least 16Mi", 37),
    ("cpu-zero", edit("cpu: 0.25", "cpu: 0"),
     "spec.resources.cpu", "0 is out of range (0, 64]", 38),
    ("cpu-string", edit("cpu: 0.25", "cpu: 250m"),
     "spec.resources.cpu", "must be a number, not a string ('250m')", 38),
    ("pids-range", edit("pids: 128", "pids: 8"),
     "spec.resources.pids", "8 is out of range 16..65536", 39),
    ("duplicate-ni-name", two(edit("name: lab", "name: factory", LAB.replace("8080", "8081"))),
     "metadata.name", "'factory' is already used in site.yaml:4", 44),
    ("type-switch-with-a-subnet", edit("type: local", "type: switch"),
     "spec.subnet", "is not allowed for type switch (apps take addresses from the uplink's "
     "segment)", 8),
    ("vlan-on-local", edit("mtu: 1500", "mtu: 1500\n  vlan: 100"),
     "spec.vlan", "is only for spec.type switch (this NI is local)", 11),
    ("type-vpn-without-vpn", edit("type: local", "type: vpn"),
     "spec.vpn", "is required for spec.type vpn", 5),
    ("type-unknown", edit("type: local", "type: lokal"),
     "spec.type", "'lokal' is not one of local, vpn, switch (did you mean 'local'?)", 6),
    ("wrong-api-version", edit("apiVersion: nirunner/v1", "apiVersion: nirunner/v2"),
     "apiVersion", "must be 'nirunner/v1', not 'nirunner/v2'", 1),
    ("wrong-kind", edit("kind: NetworkInstance", "kind: Pod"),
     "kind", "must be 'NetworkInstance', not 'Pod'", 2),
    ("not-a-mapping", "- a\n- b\n", "", "the document must be a mapping, not a list", 1),
    ("yaml-syntax", edit("mtu: 1500", "mtu: [1500"), "", "invalid YAML", 11),
    ("unsupported-tag", edit("mtu: 1500", "mtu: !custom 1500"),
     "", "document uses an unsupported tag '!custom'", 10),
]


@pytest.mark.parametrize(
    ("text", "path", "fragment", "line"),
    [case[1:] for case in BAD],
    ids=[case[0] for case in BAD],
)
def test_bad_manifest(text: str, path: str, fragment: str, line: int) -> None:
    found = problems(text)
    assert any(
        p.path == path and fragment in p.message and p.line == line for p in found
    ), "\n".join(f"{p.path!r} {p.message!r} line {p.line}" for p in found)
    assert all(p.source == "site.yaml" for p in found)


def test_the_table_is_big_enough() -> None:
    assert len(BAD) >= 20


def test_error_format_one_problem_per_line() -> None:
    with pytest.raises(ManifestError) as err:
        load_documents(edit("start: 10.1.0.100", "start: 10.2.0.5"), "site.yaml")
    assert str(err.value) == (
        "site.yaml: factory: spec.dhcp.range.start 10.2.0.5 is outside spec.subnet "
        "10.1.0.0/24 (line 13)"
    )
    assert isinstance(err.value, NirunnerError)
    problem = err.value.problems[0]
    assert (problem.source, problem.ni, problem.path, problem.line) == (
        "site.yaml", "factory", "spec.dhcp.range.start", 13)


def test_error_format_without_file_or_name() -> None:
    p = Problem(None, None, "metadata.name", "is required", 3)
    assert str(p) == "metadata.name is required (line 3)"
    assert str(Problem("a.yaml", None, "", "invalid YAML: oops")) == "a.yaml: invalid YAML: oops"


def test_all_problems_of_a_manifest_are_reported_together() -> None:
    text = edit("gateway: 10.1.0.1", "gateway: 10.2.0.1")
    text = edit("ip: 10.1.0.11", "ip: 10.1.0.10", text)
    text = edit("uplinkPort: 8080", "uplinkPort: 0", text)
    text = edit("memory: 64Mi", "memory: lots", text)
    with pytest.raises(ManifestError) as err:
        load_documents(text, "site.yaml")
    paths = [p.path for p in err.value.problems]
    assert paths == [
        "spec.gateway",
        "spec.dhcp.reservations[1].ip",
        "spec.portMaps[0].uplinkPort",
        "spec.resources.memory",
    ]
    lines = str(err.value).splitlines()
    assert len(lines) == 4 and all(line.startswith("site.yaml: factory: ") for line in lines)


def test_problems_of_several_documents_and_the_set_are_reported_together() -> None:
    text = two(edit("subnet: 10.1.0.0/24", "subnet: 10.1.0.1/24", LAB)) + "---\n" + LAB
    found = problems(text)
    assert [(p.ni, p.path) for p in found] == [("lab", "spec.subnet")]
    with pytest.raises(ManifestError) as err:
        validate_set(parse_documents(two(LAB), "site.yaml")
                     + parse_documents(LAB.replace("8080", "8081"), "other.yaml"), CONFIG)
    assert [(p.source, p.ni, p.path) for p in err.value.problems] == [
        ("site.yaml", "lab", "spec.portMaps[0].uplinkPort"),
        ("other.yaml", "lab", "metadata.name"),
    ]


def test_injection_values_are_quoted_safely() -> None:
    text = edit("- name: plc", '- name: "x\\nserver=1.2.3.4"')
    with pytest.raises(ManifestError) as err:
        load_documents(text, "site.yaml")
    assert "server=1.2.3.4" in str(err.value)
    for line in str(err.value).splitlines():
        assert line.startswith("site.yaml: factory: ")


def test_full_example() -> None:
    (ni,) = load_documents(FACTORY, "site.yaml")
    assert ni == NetworkInstance(
        name="factory",
        type=NIType.LOCAL,
        uplink="eth0",
        subnet=IPv4Network("10.1.0.0/24"),
        gateway=IPv4Address("10.1.0.1"),
        mtu=1500,
        dhcp=Dhcp(
            range=DhcpRange(IPv4Address("10.1.0.100"), IPv4Address("10.1.0.199")),
            lease_time=3600,
            reservations=(
                Reservation("plc", "02:00:00:00:00:10", IPv4Address("10.1.0.10")),
                Reservation("hmi", "02:00:00:00:00:11", IPv4Address("10.1.0.11")),
            ),
        ),
        dns=Dns(
            domain="factory.lan",
            upstream=(IPv4Address("203.0.113.53"),),
            static=(StaticHost("historian", (IPv4Address("10.1.0.20"),)),),
        ),
        ntp=(IPv4Address("203.0.113.123"),),
        port_maps=(PortMap("plc-web", Protocol.TCP, 8080, "plc", 80),),
        resources=Resources(memory=64 << 20, cpu=0.25, pids=128),
    )
    assert ni.target_ip(ni.port_maps[0]) == IPv4Address("10.1.0.10")


MINIMAL = """\
apiVersion: nirunner/v1
kind: NetworkInstance
metadata: {name: air}
spec: {type: local, subnet: 192.168.7.0/24}
"""


def test_minimal_manifest_gets_defaults() -> None:
    (ni,) = load_documents(MINIMAL)
    assert ni.uplink is None
    assert ni.gateway == IPv4Address("192.168.7.1")
    assert ni.mtu is None
    assert ni.dhcp == Dhcp(
        DhcpRange(IPv4Address("192.168.7.128"), IPv4Address("192.168.7.254")), 3600, ()
    )
    assert ni.dns == Dns(domain=None, upstream=None, static=())
    assert ni.ntp == () and ni.port_maps == ()
    assert ni.resources == Resources()


def test_empty_sections_mean_defaults() -> None:
    text = MINIMAL + "  dhcp:\n  dns:\n  resources:\n"
    text = text.replace("spec: {type: local, subnet: 192.168.7.0/24}",
                        "spec:\n  type: local\n  subnet: 192.168.7.0/24")
    (ni,) = load_documents(text)
    assert ni.dhcp.lease_time == 3600 and ni.dns == Dns() and ni.resources == Resources()


@pytest.mark.parametrize(
    ("subnet", "gateway", "start", "end"),
    [
        ("10.1.0.0/24", "10.1.0.1", "10.1.0.128", "10.1.0.254"),
        ("10.1.0.0/24", "10.1.0.254", "10.1.0.128", "10.1.0.253"),
        ("10.1.0.0/24", "10.1.0.200", "10.1.0.128", "10.1.0.199"),
        ("10.1.0.0/24", "10.1.0.130", "10.1.0.131", "10.1.0.254"),
        ("10.1.0.0/30", "10.1.0.1", "10.1.0.2", "10.1.0.2"),
        ("10.1.0.0/30", "10.1.0.2", "10.1.0.1", "10.1.0.1"),
    ],
)
def test_default_range_is_the_upper_half_without_the_gateway(
    subnet: str, gateway: str, start: str, end: str
) -> None:
    rng = default_range(IPv4Network(subnet), IPv4Address(gateway))
    assert (str(rng.start), str(rng.end)) == (start, end)


def test_values_in_other_forms() -> None:
    text = edit('"02:00:00:00:00:10"', "12:34:56:00:00:10")  # YAML 1.1 base-60 integer
    text = edit('"02:00:00:00:00:11"', '"02-00-00-00-00-AB"', text)
    text = edit("leaseTime: 1h", "leaseTime: 600", text)
    text = edit("memory: 64Mi", "memory: 100M", text)
    text = edit("cpu: 0.25", "cpu: 2", text)
    (ni,) = load_documents(text)
    assert [r.mac for r in ni.dhcp.reservations] == ["12:34:56:00:00:10", "02:00:00:00:00:ab"]
    assert ni.dhcp.lease_time == 600
    assert ni.resources.memory == 100_000_000 and ni.resources.cpu == 2.0


def test_reservation_may_be_outside_the_range_and_target_may_be_an_ip() -> None:
    text = edit("target: plc", "target: 10.1.0.42")
    (ni,) = load_documents(text)
    assert ni.dhcp.reservations[0].ip not in (ni.dhcp.range.start, ni.dhcp.range.end)
    assert ni.target_ip(ni.port_maps[0]) == IPv4Address("10.1.0.42")


def test_multi_document_file_skips_empty_documents() -> None:
    text = "---\n# nothing here\n---\n" + FACTORY + "---\n---\n" + LAB.replace("8080", "8081")
    nis = load_documents(text, "site.yaml")
    assert [ni.name for ni in nis] == ["factory", "lab"]
    assert load_documents("") == [] and load_documents("# just a comment\n") == []


def test_directory_load_is_sorted_and_takes_yaml_and_yml(tmp_path: Path) -> None:
    (tmp_path / "b.yml").write_text(LAB.replace("8080", "8081"))
    (tmp_path / "a.yaml").write_text(FACTORY)
    (tmp_path / "notes.txt").write_text("not yaml: [")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("not: [valid")
    nis = load_paths([str(tmp_path)])
    assert [ni.name for ni in nis] == ["factory", "lab"]
    assert [ni.name for ni in load_and_validate([str(tmp_path)], CONFIG)] == ["factory", "lab"]


def test_load_paths_reports_every_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(edit("name: factory", "name: a;b"))
    missing = str(tmp_path / "missing.yaml")
    with pytest.raises(ManifestError) as err:
        load_paths([missing, str(bad)])
    assert [(p.source, p.path) for p in err.value.problems] == [
        (missing, ""),
        (str(bad), "metadata.name"),
    ]
    assert str(err.value).splitlines()[0] == (
        f"{missing}: cannot be read: no such file or directory"
    )


def test_load_and_validate_reports_manifest_and_set_problems_together(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(FACTORY)
    (tmp_path / "b.yaml").write_text(LAB)
    (tmp_path / "c.yaml").write_text(MINIMAL.replace("subnet: 192.168.7.0/24", "subnet: x"))
    with pytest.raises(ManifestError) as err:
        load_and_validate([str(tmp_path)], CONFIG)
    found = [(Path(p.source or "").name, p.ni, p.path, p.line) for p in err.value.problems]
    assert found == [
        ("c.yaml", "air", "spec.subnet", 4),
        ("b.yaml", "lab", "spec.portMaps[0].uplinkPort", 10),
    ]
    assert f"(spec.portMaps[0] in {tmp_path / 'a.yaml'}:31)" in str(err.value)


def test_validate_set_on_plain_values_has_no_lines() -> None:
    (factory,) = load_documents(FACTORY)
    with pytest.raises(ManifestError) as err:
        validate_set([factory, factory], SupervisorConfig())
    assert [str(p) for p in err.value.problems] == [
        "factory: metadata.name 'factory' is already used by another NI",
        "factory: spec.portMaps[0].uplinkPort tcp 8080 on uplink eth0 is already mapped by "
        "NI 'factory' (spec.portMaps[0])",
        "factory: spec.uplink 'eth0' is not an uplink of the supervisor config (it has: none)",
        "factory: spec.uplink 'eth0' is not an uplink of the supervisor config (it has: none)",
    ]


def test_same_port_on_another_uplink_or_protocol_is_fine() -> None:
    other = LAB.replace("uplink: eth0", "uplink: eth1")
    udp = LAB.replace("name: lab", "name: lab2").replace("protocol: tcp", "protocol: udp")
    assert problems(two(other) + "---\n" + udp) == []


def test_non_manifest_document_gives_one_clear_problem() -> None:
    found = problems("containerd: {namespace: x}\nuplinks: []\n")
    assert [(p.path, p.line) for p in found] == [("", 1)]
    assert "not a manifest: it has no apiVersion and no kind" in found[0].message


def test_alias_bomb_and_recursion_are_problems_not_crashes() -> None:
    bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 6):
        bomb += f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n"
    assert "more than" in problems(bomb)[0].message
    assert "nested more than 32 levels deep" in problems("a: &x [*x]\n")[0].message
    assert "nested more than 32 levels deep" in problems("[" * 5000 + "]" * 5000)[0].message


def test_examples_parse() -> None:
    config = load_config(str(EXAMPLES / "config" / "supervisor.yaml"))
    nis = load_and_validate([str(EXAMPLES)], config)  # the whole folder, as a user would
    factory, lab = nis
    assert (factory.name, lab.name) == ("factory", "lab")
    assert factory.subnet == lab.subnet == IPv4Network("10.1.0.0/24")
    assert factory.uplink == lab.uplink == "eth0"
    assert factory.port_maps[0].uplink_port != lab.port_maps[0].uplink_port
    assert factory.dhcp.reservations and factory.dns.static and factory.port_maps
