"""spec.apps (declared apps, ACLs) and spec.flowLog: values, problems with lines, round trips."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
import yaml

from runner.model.dump import to_manifest
from runner.model.errors import ManifestError
from runner.model.manifest import load_documents
from runner.model.types import App, FlowLog
from runner.net.appedge import AclProtocol, AclRule, Action, Direction, Limit, Per, RateUnit

HEAD = """\
apiVersion: nirunner/v1
kind: NetworkInstance
metadata: {name: f}
spec:
  type: local
  uplink: eth0
  subnet: 10.1.0.0/24
  dhcp:
    range: {start: 10.1.0.100, end: 10.1.0.199}
    reservations:
      - {name: historian, mac: "02:00:00:00:00:20", ip: 10.1.0.20}
"""  # the apps start on line 12

GOOD = HEAD + """\
  apps:
    - name: plc
      mac: "02:00:00:00:00:10"
      ip: 10.1.0.10
      acls:
        - {allow: egress, host: www.example.test, protocol: tcp, ports: "80"}
        - {drop: egress, remote: 192.0.2.0/24}
        - {limit: egress, remote: 198.51.100.0/24, protocol: udp, ports: "5000-5010",
           rate: 10Mbit, burst: 128KiB}
        - {drop: ingress, remote: 203.0.113.7, protocol: tcp, ports: 80}
        - {limit: ingress, protocol: icmp, rate: 60/min, burst: 5}
    - {name: hmi, mac: "02:00:00:00:00:11", acls: []}
    - {name: scope, mac: "02-00-00-00-00-12"}
  portMaps:
    - {name: plc-web, protocol: tcp, uplinkPort: 8080, target: plc, targetPort: 80}
  flowLog: {maxSize: 1Mi, keep: 2}
"""


def test_apps_and_their_rules() -> None:
    (ni,) = load_documents(GOOD)
    plc, hmi, scope = ni.apps
    tcp, udp = AclProtocol.TCP, AclProtocol.UDP
    eg, ing = Direction.EGRESS, Direction.INGRESS
    assert plc.acls == (
        AclRule(eg, Action.ALLOW, host="www.example.test", protocol=tcp, ports=(80, 80)),
        AclRule(eg, Action.DROP, remote=IPv4Network("192.0.2.0/24")),
        AclRule(eg, Action.LIMIT, remote=IPv4Network("198.51.100.0/24"), protocol=udp,
                ports=(5000, 5010), limit=Limit(1_250_000, RateUnit.BYTES, burst=128 << 10)),
        AclRule(ing, Action.DROP, remote=IPv4Network("203.0.113.7/32"), protocol=tcp,
                ports=(80, 80)),
        AclRule(ing, Action.LIMIT, protocol=AclProtocol.ICMP,
                limit=Limit(60, RateUnit.PACKETS, Per.MINUTE, 5)),
    )
    assert plc.ip == IPv4Address("10.1.0.10")
    assert hmi == App("hmi", "02:00:00:00:00:11", None, ())  # present, empty: default-deny
    assert scope == App("scope", "02:00:00:00:00:12")  # no acls: as today
    assert ni.flow_log == FlowLog(True, 1 << 20, 2)
    assert [a.name for a in ni.declared()] == ["historian", "plc", "hmi", "scope"]
    assert ni.target_ip(ni.port_maps[0]) == IPv4Address("10.1.0.10")


def test_round_trip() -> None:
    (ni,) = load_documents(GOOD)
    assert load_documents(yaml.safe_dump(to_manifest(ni))) == [ni]
    off = load_documents(HEAD + "  flowLog: false\n")[0]
    assert off.flow_log == FlowLog(enabled=False)
    assert load_documents(yaml.safe_dump(to_manifest(off))) == [off]
    plain = load_documents(HEAD)[0]
    assert "flowLog" not in to_manifest(plain)["spec"] and "apps" not in to_manifest(plain)["spec"]


@pytest.mark.parametrize("rate, value", [
    ("1000", Limit(1000)), (1000, Limit(1000)), ("1000/s", Limit(1000)),
    ("60/min", Limit(60, per=Per.MINUTE)), ("5/hour", Limit(5, per=Per.HOUR)),
    ("10Mbit", Limit(1_250_000, RateUnit.BYTES)), ("8kbit/s", Limit(1000, RateUnit.BYTES)),
    ("2MB", Limit(2_000_000, RateUnit.BYTES)), ("1MiB", Limit(1 << 20, RateUnit.BYTES)),
])
def test_rates(rate: object, value: Limit) -> None:
    text = HEAD + f"  apps: [{{name: a, mac: '02:00:00:00:00:01', acls: [{{limit: egress, " \
                  f"rate: {rate!r}}}]}}]\n".replace("'", '"')
    (ni,) = load_documents(text.replace(f'rate: "{rate}"', f"rate: {rate}")
                           if isinstance(rate, int) else text)
    (rule,) = ni.apps[0].acls or ()
    assert rule.limit == value
    assert load_documents(yaml.safe_dump(to_manifest(ni))) == [ni]


# (the apps section from line 12, the field path, the message, the line)
BAD = [
    ("  apps: [{name: historian, mac: '02:00:00:00:00:10'}]",
     "spec.apps[0].name", "historian is also a reservation (spec.dhcp.reservations[0]); "
     "declare it once, in spec.apps", 12),
    ("  apps:\n    - {name: a, mac: '02:00:00:00:00:10'}\n    - {name: a, mac: "
     "'02:00:00:00:00:11'}", "spec.apps[1].name", "a is also an app (spec.apps[0]); app names "
     "are unique", 14),
    ("  apps: [{name: a, mac: '02:00:00:00:00:20'}]",
     "spec.apps[0].mac", "02:00:00:00:00:20 is already the MAC of reservation historian", 12),
    ("  apps: [{name: a, mac: '02:00:00:00:00:10', ip: 10.1.0.150}]",
     "spec.apps[0].ip", "10.1.0.150 is inside spec.dhcp.range (10.1.0.100-10.1.0.199); a "
     "fixed IP must be outside it", 12),
    ("  apps: [{name: a, mac: '02:00:00:00:00:10', ip: 10.1.0.20}]",
     "spec.apps[0].ip", "10.1.0.20 is already the address of reservation historian", 12),
    ("  apps: [{name: a, mac: '02:00:00:00:00:10', ip: 10.2.0.5}]",
     "spec.apps[0].ip", "10.2.0.5 is outside spec.subnet 10.1.0.0/24", 12),
    ("  apps:\n    - name: a\n      mac: '02:00:00:00:00:10'\n      acls:\n"
     "        - {allow: egress, drop: egress}",
     "spec.apps[0].acls[0]", "needs one action: allow, drop or limit (found: allow, drop)", 16),
    ("  apps: [{name: a, mac: '02:00:00:00:00:10', acls: [{}]}]",
     "spec.apps[0].acls[0]", "needs one action: allow, drop or limit (found: none)", 12),
    ("  apps: [{name: a, mac: '02:00:00:00:00:10', acls: [{allow: out}]}]",
     "spec.apps[0].acls[0].allow", "'out' is not a direction; use egress or ingress", 12),
    ("  apps: [{name: a, mac: '02:00:00:00:00:10', acls: [{allow: egress, remote: 1.2.3.0/24, "
     "host: a.b}]}]",
     "spec.apps[0].acls[0]", "has remote and host: they exclude each other", 12),
    ("  apps: [{name: a, mac: '02:00:00:00:00:10', acls: [{allow: egress, "
     "host: '*.example.com'}]}]",
     "spec.apps[0].acls[0].host", "'*.example.com' is not a DNS name; write example.com, "
     "which matches it and every name under it", 12),
    ("  apps: [{name: a, mac: '02:00:00:00:00:10', acls: [{allow: egress, host: 'Ex_ample'}]}]",
     "spec.apps[0].acls[0].host", "'Ex_ample' is not a DNS name: lowercase labels of "
     "letters, digits and '-' joined by dots (it matches that name and every name under it)",
     12),
    ("  apps: [{name: a, mac: '02:00:00:00:00:10', acls: [{allow: egress, ports: '80'}]}]",
     "spec.apps[0].acls[0].ports", "need protocol tcp or udp", 12),
    ("  apps: [{name: a, mac: '02:00:00:00:00:10', acls: [{allow: egress, protocol: tcp, "
     "ports: '70000'}]}]",
     "spec.apps[0].acls[0].ports", "'70000' is not a port or range within 1-65535", 12),
    ("  apps: [{name: a, mac: '02:00:00:00:00:10', acls: [{allow: egress, protocol: sctp}]}]",
     "spec.apps[0].acls[0].protocol", "'sctp' is not one of tcp, udp, icmp", 12),
    ("  apps: [{name: a, mac: '02:00:00:00:00:10', acls: [{limit: egress}]}]",
     "spec.apps[0].acls[0].rate", "is required by a limit rule (packets: 1000/s, 60/min; "
     "bytes: 10Mbit, 2MB)", 12),
    ("  apps: [{name: a, mac: '02:00:00:00:00:10', acls: [{drop: egress, rate: 10/s}]}]",
     "spec.apps[0].acls[0].rate", "is only for a limit rule", 12),
    ("  apps: [{name: a, mac: '02:00:00:00:00:10', acls: [{limit: egress, rate: 3bit}]}]",
     "spec.apps[0].acls[0].rate", "'3bit' is not a whole number of bytes a second", 12),
    ("  apps: [{name: a, mac: '02:00:00:00:00:10', acls: [{limit: egress, rate: fast}]}]",
     "spec.apps[0].acls[0].rate", "'fast' is not a rate (packets: 1000/s, 60/min; bytes: "
     "10Mbit, 2MB)", 12),
    ("  apps: [{name: a, mac: '02:00:00:00:00:10', acls: [{limit: egress, rate: 10/s, "
     "burst: 1KiB}]}]",
     "spec.apps[0].acls[0].burst", "must be a burst in the rate's unit (packets: an "
     "integer), not a string ('1KiB')", 12),
    ("  apps: [{name: a, mac: '02:00:00:00:00:10', acls: {allow: egress}}]",
     "spec.apps[0].acls", "must be a list, not a mapping", 12),
    ("  apps: [{name: a, mac: '02:00:00:00:00:10'}]\n  portMaps: [{name: w, protocol: tcp, "
     "uplinkPort: 80, target: a, targetPort: 80}]",
     "spec.portMaps[0].target", "app 'a' has no fixed IP (spec.apps[].ip): a port map needs "
     "one", 13),
    ("  apps: [{name: plc, mac: '02:00:00:00:00:10', ip: 10.1.0.10}]\n  portMaps: [{name: w, "
     "protocol: tcp, uplinkPort: 80, target: plcc, targetPort: 80}]",
     "spec.portMaps[0].target", "'plcc' is neither an app, a reservation nor an IPv4 address "
     "(did you mean 'plc'?)", 13),
    ("  apps: [{name: plc, mac: '02:00:00:00:00:10', ip: 10.1.0.10}]\n  dns: {static: "
     "[{name: plc, addresses: [10.1.0.99]}]}",
     "spec.dns.static[0].name", "'plc' is already the hostname of app 'plc'", 13),
    ("  flowLog: {maxSize: 100}", "spec.flowLog.maxSize", "100 is out of range 64Ki..1Gi", 12),
    ("  flowLog: {keep: 50}", "spec.flowLog.keep", "50 is out of range 0..20", 12),
    ("  flowLog: yes please", "spec.flowLog", "must be a mapping, not a string ('yes please')",
     12),
]


@pytest.mark.parametrize("section, path, message, line", BAD)
def test_problems(section: str, path: str, message: str, line: int) -> None:
    with pytest.raises(ManifestError) as e:
        load_documents(HEAD + section + "\n", "site.yaml")
    found = [(p.path, p.message, p.line) for p in e.value.problems]
    assert (path, message, line) in found, found
    assert all(p.source == "site.yaml" and p.ni == "f" for p in e.value.problems)
