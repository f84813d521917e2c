"""Address rules, transit pool, capacity, IKE ports and secretsDir: each refusal says why."""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path

import pytest

from runner.cli.main import main
from runner.model.config import parse_config
from runner.model.errors import ConfigError, Located, ManifestError, Problem
from runner.model.manifest import parse_documents, set_problems
from runner.model.types import SupervisorConfig, Uplink

CONFIG = SupervisorConfig(uplinks=(Uplink("eth0", "eth0"), Uplink("eth1", "eth1")),
                          secrets_dir="/etc/nirunner/secrets")


def ni(name: str = "a", subnet: str = "10.1.0.0/24", extra: str = "",
       uplink: str | None = "eth0", kind: str = "local") -> str:
    up = f"  uplink: {uplink}\n" if uplink else ""
    return (f"apiVersion: nirunner/v1\nkind: NetworkInstance\nmetadata: {{name: {name}}}\n"
            f"spec:\n  type: {kind}\n{up}  subnet: {subnet}\n{extra}")


VPN = ("  vpn:\n    remote: 203.0.113.10\n"
       "    auth: {psk: {secretFile: /etc/nirunner/secrets/v.psk}}\n"
       "    localId: edge\n    remoteId: hq\n    remoteSubnets: [10.99.1.0/24]\n")


def problems(text: str, config: SupervisorConfig | None = CONFIG) -> list[Problem]:
    try:
        return set_problems(parse_documents(text, "site.yaml"), config)
    except ManifestError as e:
        return e.problems


def says(text: str, path: str, fragment: str, config: SupervisorConfig | None = CONFIG) -> None:
    found = problems(text, config)
    assert any(p.path == path and fragment in p.message and p.source == "site.yaml"
               for p in found), "\n".join(str(p) for p in found)


@pytest.mark.parametrize(("subnet", "why"), [
    ("224.0.0.0/24", "224.0.0.0/24 is multicast (224.0.0.0/4): for groups, not hosts"),
    ("239.1.1.0/24", "239.1.1.0/24 is multicast (224.0.0.0/4)"),
    ("127.0.0.0/8", "127.0.0.0/8 is loopback (127.0.0.0/8), which never leaves the host"),
    ("127.1.0.0/24", "127.1.0.0/24 is loopback"),
    ("0.0.0.0/8", "0.0.0.0/8 is in 0.0.0.0/8 ('this network'), which is never routed"),
    ("240.0.0.0/24", "240.0.0.0/24 is reserved (class E, 240.0.0.0/4): hosts do not route it"),
    ("255.255.255.0/30", "255.255.255.0/30 is reserved (class E"),
    ("169.254.7.0/24", "169.254.7.0/24 is link-local (169.254.0.0/16), which routers do not "
                       "forward"),
    ("0.0.0.0/8", "never routed"),
    ("169.0.0.0/8", "169.0.0.0/8 overlaps 169.254.0.0/16 (link-local)"),
])
def test_subnets_that_are_no_networks_of_hosts(subnet: str, why: str) -> None:
    found = problems(ni(subnet=subnet), None)
    assert [(p.path, p.line) for p in found] == [("spec.subnet", 7)]
    assert why in found[0].message


@pytest.mark.parametrize(("field", "value", "path", "why"), [
    ("dns: {upstream: [10.1.0.1]}", "", "spec.dns.upstream[0]",
     "10.1.0.1 is spec.gateway, the NI itself, which would forward to itself"),
    ("dns: {upstream: [10.1.0.255]}", "", "spec.dns.upstream[0]",
     "10.1.0.255 is the broadcast address of spec.subnet 10.1.0.0/24"),
    ("dns: {upstream: [10.1.0.0]}", "", "spec.dns.upstream[0]", "is the network address"),
    ("dns: {upstream: [240.0.0.1]}", "", "spec.dns.upstream[0]", "240.0.0.1 is reserved"),
    ("dns: {upstream: [127.0.0.53]}", "", "spec.dns.upstream[0]", "127.0.0.53 is loopback"),
    ("dns: {upstream: [255.255.255.255]}", "", "spec.dns.upstream[0]",
     "is the limited broadcast address"),
    ("dns: {upstream: [224.0.0.251]}", "", "spec.dns.upstream[0]", "is multicast"),
    ("dns: {upstream: [0.0.0.0]}", "", "spec.dns.upstream[0]", "0.0.0.0 is in 0.0.0.0/8"),
    ("ntp: [127.0.0.1]", "", "spec.ntp[0]", "127.0.0.1 is loopback"),
    ("ntp: [10.1.0.1]", "", "spec.ntp[0]", "the NI itself, which serves no NTP"),
    ("dns: {static: [{name: h, addresses: [127.0.0.1]}]}", "",
     "spec.dns.static[0].addresses[0]", "127.0.0.1 is loopback"),
])
def test_servers_and_static_addresses(field: str, value: str, path: str, why: str) -> None:
    says(ni(extra=f"  {field}\n"), path, why, None)


def test_link_local_dns_and_ntp_are_fine_and_apps_may_serve_dns() -> None:
    text = ni(extra="  dns: {upstream: [169.254.169.253, 10.1.0.53]}\n  ntp: [169.254.169.123]\n")
    assert problems(text) == []


def test_vpn_peer_rules() -> None:
    says(ni(kind="vpn", extra=VPN.replace("203.0.113.10", "10.1.0.9")), "spec.vpn.remote",
         "10.1.0.9 is inside spec.subnet 10.1.0.0/24", None)
    says(ni(kind="vpn", extra=VPN.replace("203.0.113.10", "169.254.1.1")), "spec.vpn.remote",
         "169.254.1.1 is link-local", None)


def test_addresses_in_the_transit_pool_only_with_a_config() -> None:
    pool = "the supervisor's transitPool 169.254.100.0/22"
    text = ni(subnet="169.254.100.0/24")
    assert "is link-local" in problems(text, None)[0].message  # caught alone too
    small = SupervisorConfig(uplinks=CONFIG.uplinks, transit_pool=IPv4Network("100.64.0.0/22"))
    text = ni(subnet="100.64.1.0/24", extra="  dns: {upstream: [100.64.0.9]}\n"
                                            "  ntp: [100.64.3.1]\n")
    assert problems(text, None) == []
    found = problems(text, small)
    assert [(p.path, p.line) for p in found] == [
        ("spec.subnet", 7), ("spec.dns.upstream[0]", 8), ("spec.ntp[0]", 9)]
    assert found[0].message == ("100.64.1.0/24 overlaps the supervisor's transitPool "
                                "100.64.0.0/22 (the links between the device and its NIs)")
    assert found[2].message.startswith("100.64.3.1 is inside the supervisor's transitPool")
    vpn = ni(kind="vpn", extra=VPN.replace("10.99.1.0/24", "100.64.0.0/23")
             .replace("203.0.113.10", "100.64.3.3"))
    paths = [p.path for p in problems(vpn, small)]
    assert sorted(paths) == ["spec.vpn.remote", "spec.vpn.remoteSubnets[0]"]
    assert pool in problems(ni(subnet="10.1.0.0/24", extra="  dns: {upstream: "
                                                           "[169.254.100.1]}\n"))[0].message


def test_more_nis_with_an_uplink_than_transit_slots() -> None:
    docs = "---\n".join(ni(f"n{i}", extra="") for i in range(257))
    docs += "---\n" + ni("air", uplink=None)  # air-gapped NIs need no slot
    found = problems(docs)
    assert [(p.ni, p.path) for p in found] == [("n256", "spec.uplink")]
    assert found[0].message == (
        "257 NIs have an uplink, but the supervisor's transitPool 169.254.100.0/22 has 256 "
        "/30 slots, one for each: enlarge transitPool or remove NIs")
    assert problems("---\n".join(ni(f"n{i}") for i in range(256))) == []
    assert problems(docs, None) == []  # the pool is the config's


def test_the_first_new_ni_that_does_not_fit_gets_the_problem() -> None:
    config = SupervisorConfig(uplinks=CONFIG.uplinks, transit_pool=IPv4Network("10.250.0.0/29"))
    kept = [Located(loc.ni) for loc in parse_documents(ni("k1") + "---\n" + ni("k2"))]
    new = parse_documents(ni("z"), "new.yaml")
    (p,) = set_problems([*new, *kept], config)
    assert (p.source, p.ni) == ("new.yaml", "z")


def test_udp_ike_ports_on_a_vpn_uplink() -> None:
    pm = ("  portMaps: [{{name: p, protocol: {proto}, uplinkPort: {port}, target: 10.1.0.9, "
          "targetPort: 500}}]\n")
    vpn = ni("v", "10.50.0.0/24", VPN, kind="vpn")
    for port in (500, 4500):
        says(vpn + "---\n" + ni(extra=pm.format(proto="udp", port=port)),
             "spec.portMaps[0].uplinkPort",
             f"udp {port} would take the VPN peer's IKE away from its tunnel (IKE and NAT-T "
             f"use UDP 500 and 4500, and VPN NI 'v' uses uplink eth0)", None)
    assert problems(vpn + "---\n" + ni(extra=pm.format(proto="tcp", port=500))) == []
    assert problems(vpn + "---\n" + ni(extra=pm.format(proto="udp", port=501))) == []
    other = ni(uplink="eth1", extra=pm.format(proto="udp", port=500))
    assert problems(vpn + "---\n" + other) == []
    # the port map was applied before, the VPN NI is new: reported on the VPN NI
    kept = Located(parse_documents(ni(extra=pm.format(proto="udp", port=4500)))[0].ni)
    (p,) = set_problems([*parse_documents(vpn, "vpn.yaml"), kept], CONFIG)
    assert (p.source, p.ni, p.path) == ("vpn.yaml", "v", "spec.uplink")
    assert "NI 'a' maps udp 4500 there, so its app would get the peer's IKE" in p.message


def test_a_clash_with_an_applied_ni_is_reported_on_the_new_one() -> None:
    pm = ("  portMaps: [{name: p, protocol: tcp, uplinkPort: 80, target: 10.1.0.9, "
          "targetPort: 80}]\n")
    kept = Located(parse_documents(ni("old", extra=pm))[0].ni)
    (p,) = set_problems([*parse_documents(ni("new", extra=pm), "new.yaml"), kept], CONFIG)
    assert (p.source, p.ni, p.path) == ("new.yaml", "new", "spec.portMaps[0].uplinkPort")


@pytest.mark.parametrize(("auth", "path"), [
    ("{psk: {secretFile: /etc/shadow}}", "spec.vpn.auth.psk.secretFile"),
    ("{psk: {secretFile: /etc/nirunner/secrets/../../shadow}}", "spec.vpn.auth.psk.secretFile"),
    ("{psk: {secretFile: /etc/nirunner/secrets}}", "spec.vpn.auth.psk.secretFile"),
    ("{psk: {secretFile: /proc/self/environ}}", "spec.vpn.auth.psk.secretFile"),
    ("{cert: {certFile: /etc/nirunner/secrets/c.pem, keyFile: /root/k.pem, "
     "caFile: /etc/nirunner/secrets/ca.pem}}", "spec.vpn.auth.cert.keyFile"),
])
def test_credentials_outside_secrets_dir(auth: str, path: str) -> None:
    text = ni(kind="vpn", extra=VPN.replace("{psk: {secretFile: /etc/nirunner/secrets/v.psk}}",
                                            auth))
    found = problems(text)
    assert [p.path for p in found] == [path]
    assert found[0].message.endswith("is outside the supervisor's secretsDir "
                                     "/etc/nirunner/secrets: keep VPN credentials there")
    assert problems(text, None) == []


def test_secrets_dir_in_the_config() -> None:
    assert parse_config("").secrets_dir == "/etc/nirunner/secrets"
    assert parse_config("secretsDir: /srv/keys/\n").secrets_dir == "/srv/keys"
    assert parse_config("secretsDir: /\n").secrets_dir == "/"
    for bad in ("keys", "/srv/../etc", "/srv//keys", "/srv/./keys", '"/a\\tb"'):
        with pytest.raises(ConfigError, match=r"secretsDir .* is not valid: must be an "
                                              r"absolute path"):
            parse_config(f"secretsDir: {bad}\n", "c.yaml")


@pytest.mark.parametrize(("pool", "why"), [
    ("240.0.0.0/22", "240.0.0.0/22 is reserved (class E"),
    ("224.1.0.0/22", "is multicast"),
    ("169.254.100.0/30", "is too small"),
])
def test_transit_pool_rules(pool: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why.replace("(", r"\(")):
        parse_config(f"transitPool: {pool}\n")


def test_validate_cli_refuses_a_subnet_in_the_pool_only_with_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "site.yaml").write_text(ni(subnet="100.64.0.0/24"))
    (tmp_path / "c.yaml").write_text("transitPool: 100.64.0.0/22\nuplinks: [{name: eth0, "
                                     "interface: eth0}]\n")
    assert main(["validate", "-f", str(tmp_path / "site.yaml")]) == 0
    assert main(["validate", "-f", str(tmp_path / "site.yaml"),
                 "--config", str(tmp_path / "c.yaml")]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'site.yaml'}: a: spec.subnet 100.64.0.0/24 overlaps the supervisor's " \
           "transitPool 100.64.0.0/22" in err and "(line 7)" in err and "Traceback" not in err


def test_problems_of_applied_nis_alone_do_not_block_a_new_apply() -> None:
    outside = ni("old", kind="vpn", extra=VPN.replace("/etc/nirunner/secrets/v.psk", "/root/v"))
    (kept,) = [Located(loc.ni) for loc in parse_documents(outside)]
    assert [p.path for p in set_problems([kept], CONFIG)] == ["spec.vpn.auth.psk.secretFile"]
    assert set_problems([*parse_documents(ni("new", "10.2.0.0/24"), "new.yaml"), kept],
                        CONFIG) == []
