"""VPN NI manifests: the spec.vpn section, its rules, and the supervisor's ipsecBackend."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
import yaml

from runner.model.config import load_config, parse_config
from runner.model.dump import to_manifest
from runner.model.errors import ConfigError, ManifestError, Problem
from runner.model.manifest import load_and_validate, load_documents, parse_documents, validate_set
from runner.model.types import (
    CertAuth,
    IpsecBackend,
    NIType,
    PskAuth,
    SupervisorConfig,
    Uplink,
)

EXAMPLES = Path(__file__).parents[3] / "examples"
CONFIG = SupervisorConfig(uplinks=(Uplink("eth0", "eth0"), Uplink("eth1", "eth1")))

# Line numbers in the table below refer to this text (line 1 = apiVersion).
SITE_A = """\
apiVersion: nirunner/v1
kind: NetworkInstance
metadata:
  name: site-a
spec:
  type: vpn
  uplink: eth0
  subnet: 10.50.0.0/24
  dns:
    upstream: [10.99.1.53]
  vpn:
    remote: 203.0.113.10
    auth:
      psk:
        secretFile: /etc/nirunner/secrets/site-a.psk
    localId: factory@edge
    remoteId: hq
    remoteSubnets: [10.99.1.0/24, 10.99.2.0/24]
    ike:
      proposals: [aes256-sha256-modp2048]
    esp:
      proposals: [aes256gcm16]
    dpd: 30s
"""


def edit(old: str, new: str, text: str = SITE_A) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def problems(text: str, config: SupervisorConfig = CONFIG) -> list[Problem]:
    try:
        validate_set(parse_documents(text, "vpn.yaml"), config)
    except ManifestError as e:
        return e.problems
    return []


def test_vpn_manifest() -> None:
    (ni,) = load_documents(SITE_A)
    assert ni.type is NIType.VPN and ni.uplink == "eth0"
    v = ni.vpn
    assert v is not None
    assert v.remote == IPv4Address("203.0.113.10")
    assert v.auth == PskAuth("/etc/nirunner/secrets/site-a.psk")
    assert (v.local_id, v.remote_id) == ("factory@edge", "hq")
    assert v.remote_subnets == (IPv4Network("10.99.1.0/24"), IPv4Network("10.99.2.0/24"))
    assert v.ike_proposals == ("aes256-sha256-modp2048",)
    assert v.esp_proposals == ("aes256gcm16",)
    assert v.dpd == 30
    validate_set([ni], CONFIG)


def test_vpn_defaults_and_cert_auth() -> None:
    text = """\
apiVersion: nirunner/v1
kind: NetworkInstance
metadata: {name: site-b}
spec:
  type: vpn
  uplink: eth1
  subnet: 192.168.50.0/24
  vpn:
    remote: 198.18.2.2
    auth: {cert: {certFile: /c/edge.pem, keyFile: /c/edge.key, caFile: /c/ca.pem}}
    localId: "CN=edge, O=Factory"
    remoteId: "%any"
    remoteSubnets: [10.0.0.0/8]
"""
    (ni,) = load_documents(text)
    assert ni.vpn is not None
    assert ni.vpn.auth == CertAuth("/c/edge.pem", "/c/edge.key", "/c/ca.pem")
    assert ni.vpn.ike_proposals == ni.vpn.esp_proposals == ("default",)
    assert ni.vpn.dpd == 30
    assert ni.vpn.local_id == "CN=edge, O=Factory"
    assert ni.dns.upstream is None


def test_vpn_round_trip() -> None:
    (ni,) = load_documents(SITE_A)
    dumped = to_manifest(ni)
    assert dumped["spec"]["vpn"]["auth"] == {
        "psk": {"secretFile": "/etc/nirunner/secrets/site-a.psk"}}
    assert load_documents(yaml.safe_dump(dumped)) == [ni]
    (off,) = load_documents(edit("dpd: 30s", "dpd: 0"))
    assert to_manifest(off)["spec"]["vpn"]["dpd"] == "0s"
    assert load_documents(yaml.safe_dump(to_manifest(off))) == [off]


BAD = [
    # id, manifest text, field path, message fragment, line
    ("vpn-on-local", edit("type: vpn", "type: local"),
     "spec.vpn", "is only for spec.type vpn", 11),
    ("no-uplink", edit("  uplink: eth0\n", ""),
     "spec.uplink", "is required for spec.type vpn", 0),
    ("port-maps", edit("  dns:\n", "  portMaps: [{name: w, protocol: tcp, uplinkPort: 80, "
                       "target: 10.50.0.9, targetPort: 80}]\n  dns:\n"),
     "spec.portMaps", "not allowed on a VPN NI", 9),
    ("no-remote", edit("    remote: 203.0.113.10\n", ""),
     "spec.vpn.remote", "is required", 11),
    ("remote-not-ip", edit("remote: 203.0.113.10", "remote: hq.example.com"),
     "spec.vpn.remote", "is not an IPv4 address", 12),
    ("remote-multicast", edit("remote: 203.0.113.10", "remote: 224.0.0.1"),
     "spec.vpn.remote", "224.0.0.1 is multicast (224.0.0.0/4)", 12),
    ("both-auths", edit("    auth:\n", "    auth:\n      cert: {certFile: /a, keyFile: /b, "
                        "caFile: /c}\n"),
     "spec.vpn.auth", "must have exactly one of psk or cert", 13),
    ("no-auth", edit("    auth:\n      psk:\n        secretFile: /etc/nirunner/secrets/"
                     "site-a.psk\n", "    auth: {}\n"),
     "spec.vpn.auth", "must have exactly one of psk or cert", 13),
    ("relative-secret", edit("secretFile: /etc/nirunner", "secretFile: etc/nirunner"),
     "spec.vpn.auth.psk.secretFile", "must be an absolute path", 15),
    ("unknown-auth-field", edit("secretFile:", "secret:"),
     "spec.vpn.auth.psk.secret", "is not a known field (did you mean 'secretFile'?)", 15),
    ("cert-missing-key", edit("      psk:\n        secretFile: /etc/nirunner/secrets/"
                              "site-a.psk\n", "      cert: {certFile: /a, caFile: /c}\n"),
     "spec.vpn.auth.cert.keyFile", "is required", 14),
    ("id-injection", edit("localId: factory@edge", 'localId: "a\\"\\n}"'),
     "spec.vpn.localId", "is not valid", 16),
    ("id-brace", edit("remoteId: hq", "remoteId: 'hq } x'"),
     "spec.vpn.remoteId", "is not valid", 17),
    ("id-leading-space", edit("remoteId: hq", "remoteId: ' hq'"),
     "spec.vpn.remoteId", "is not valid", 17),
    ("no-remote-subnets", edit("[10.99.1.0/24, 10.99.2.0/24]", "[]"),
     "spec.vpn.remoteSubnets", "must list at least one subnet", 18),
    ("remote-subnet-host-bits", edit("10.99.2.0/24]", "10.99.2.1/24]"),
     "spec.vpn.remoteSubnets[1]", "has host bits set; did you mean 10.99.2.0/24?", 18),
    ("remote-subnet-overlaps-own", edit("10.99.2.0/24]", "10.50.0.0/16]"),
     "spec.vpn.remoteSubnets[1]", "overlaps spec.subnet 10.50.0.0/24", 18),
    ("remote-subnet-holds-peer", edit("10.99.2.0/24]", "203.0.113.0/24]"),
     "spec.vpn.remoteSubnets[1]", "contains spec.vpn.remote 203.0.113.10", 18),
    ("remote-subnet-twice", edit("10.99.2.0/24]", "10.99.1.0/24]"),
     "spec.vpn.remoteSubnets[1]", "is listed twice", 18),
    ("remote-subnet-link-local", edit("10.99.2.0/24]", "169.254.0.0/16]"),
     "spec.vpn.remoteSubnets[1]", "169.254.0.0/16 is link-local", 18),
    ("bad-proposal", edit("aes256gcm16", "aes256gcm16; rm"),
     "spec.vpn.esp.proposals[0]", "is not valid", 22),
    ("empty-proposals", edit("[aes256-sha256-modp2048]", "[]"),
     "spec.vpn.ike.proposals", "must list at least one proposal", 20),
    ("dpd-too-long", edit("dpd: 30s", "dpd: 2h"),
     "spec.vpn.dpd", "2h is out of range 0s..1h", 23),
    ("dns-upstream-in-clear", edit("upstream: [10.99.1.53]", "upstream: [192.0.2.53]"),
     "spec.dns.upstream[0]", "is not in spec.vpn.remoteSubnets", 10),
    ("unknown-vpn-field", edit("    dpd: 30s\n", "    dpd: 30s\n    psk: x\n"),
     "spec.vpn.psk", "is not a known field", 24),
]


@pytest.mark.parametrize(
    ("text", "path", "fragment", "line"),
    [case[1:] for case in BAD],
    ids=[case[0] for case in BAD],
)
def test_bad_vpn_manifest(text: str, path: str, fragment: str, line: int) -> None:
    found = problems(text)
    assert any(
        p.path == path and fragment in p.message and (p.line == line or not line)
        for p in found
    ), "\n".join(f"{p.path!r} {p.message!r} line {p.line}" for p in found)


def test_ipsec_backend_config() -> None:
    assert parse_config("").ipsec_backend is IpsecBackend.AUTO
    assert parse_config("ipsecBackend: libipsec\n").ipsec_backend is IpsecBackend.LIBIPSEC
    assert parse_config("ipsecBackend: kernel\n").ipsec_backend is IpsecBackend.KERNEL
    with pytest.raises(ConfigError, match="ipsecBackend 'xfrm' is not one of auto, kernel"):
        parse_config("ipsecBackend: xfrm\n")


def test_vpn_example_validates() -> None:
    config = load_config(str(EXAMPLES / "config" / "supervisor.yaml"))
    (ni,) = load_and_validate([str(EXAMPLES / "vpn")], config)
    assert ni.type is NIType.VPN and ni.vpn is not None
    assert isinstance(ni.vpn.auth, PskAuth)
