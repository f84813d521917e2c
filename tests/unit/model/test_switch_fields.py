"""Switch NI manifests: type switch, uplink, vlan; the fields of our own L3 refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from runner.model.dump import to_manifest
from runner.model.errors import ManifestError
from runner.model.manifest import load_documents, load_paths, validate_set
from runner.model.types import NIType, Resources, SupervisorConfig, Uplink

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "switch" / "plant.yaml"
CONFIG = SupervisorConfig(uplinks=(Uplink("eth0", "eth0"), Uplink("eth1", "eth1")))


def doc(spec: str, name: str = "plant") -> str:
    return (f"apiVersion: nirunner/v1\nkind: NetworkInstance\nmetadata:\n  name: {name}\n"
            f"spec:\n{spec}")


def problems(text: str) -> list[tuple[str, str, int | None]]:
    with pytest.raises(ManifestError) as e:
        load_documents(text, "site.yaml")
    return [(p.path, p.message, p.line) for p in e.value.problems]


def test_switch_ni_on_an_uplink_and_a_vlan() -> None:
    (ni,) = load_documents(doc("  type: switch\n  uplink: eth1\n  vlan: 100\n"
                               "  resources: {memory: 32Mi}\n"))
    assert (ni.type, ni.uplink, ni.vlan) == (NIType.SWITCH, "eth1", 100)
    assert (ni.subnet, ni.gateway, ni.dhcp, ni.port_maps) == (None, None, None, ())
    assert ni.resources == Resources(memory=32 << 20)
    validate_set([ni], CONFIG)


def test_air_gapped_switch_ni() -> None:
    (ni,) = load_documents(doc("  type: switch\n"))
    assert (ni.uplink, ni.vlan) == (None, None)


def test_round_trip_and_example() -> None:
    for ni in [*load_paths([str(EXAMPLE)]),
               *load_documents(doc("  type: switch\n  uplink: eth1\n  vlan: 4094\n"))]:
        dumped = to_manifest(ni)
        assert not {"subnet", "gateway", "dhcp"} & set(dumped["spec"])
        assert load_documents(yaml.safe_dump(dumped)) == [ni]


@pytest.mark.parametrize(("spec", "path", "message", "line"), [
    ("  type: switch\n  uplink: eth1\n  subnet: 10.1.0.0/24\n", "spec.subnet",
     "is not allowed for type switch (apps take addresses from the uplink's segment)", 8),
    ("  type: switch\n  uplink: eth1\n  gateway: 10.1.0.1\n", "spec.gateway",
     "is not allowed for type switch (the segment's router is the apps' gateway)", 8),
    ("  type: switch\n  uplink: eth1\n  dhcp: {leaseTime: 1h}\n", "spec.dhcp",
     "is not allowed for type switch (the segment's DHCP server serves its apps)", 8),
    ("  type: switch\n  uplink: eth1\n  dns: {domain: x.lan}\n", "spec.dns",
     "is not allowed for type switch (apps use the segment's DNS)", 8),
    ("  type: switch\n  uplink: eth1\n  ntp: [192.0.2.1]\n", "spec.ntp",
     "is not allowed for type switch (the segment's DHCP server names the apps' NTP servers)",
     8),
    ("  type: switch\n  uplink: eth1\n  portMaps: []\n", "spec.portMaps",
     "is not allowed for type switch (apps are reachable on the segment directly)", 8),
    ("  type: switch\n  uplink: eth1\n  mtu: 1400\n", "spec.mtu",
     "is not allowed for type switch (the segment's MTU is the uplink's)", 8),
    ("  type: switch\n  uplink: eth1\n  vlan: 0\n", "spec.vlan",
     "0 is not a VLAN id (1-4094)", 8),
    ("  type: switch\n  uplink: eth1\n  vlan: 4095\n", "spec.vlan",
     "4095 is not a VLAN id (1-4094)", 8),
    ("  type: switch\n  uplink: eth1\n  vlan: ten\n", "spec.vlan",
     "must be an integer VLAN id (1-4094), not a string ('ten')", 8),
    ("  type: switch\n  vlan: 100\n", "spec.vlan",
     "needs spec.uplink (an air-gapped switch NI has no segment to tag)", 7),
    ("  type: local\n  subnet: 10.1.0.0/24\n  vlan: 100\n", "spec.vlan",
     "is only for spec.type switch (this NI is local)", 8),
    ("  type: switch\n  uplink: eth1\n  vpn: {remote: 192.0.2.1}\n", "spec.vpn",
     "is only for spec.type vpn", 8),
    ("  type: switch\n  uplink: eth1\n  vlans: 100\n", "spec.vlans",
     "is not a known field (did you mean 'vlan'?)", 8),
])
def test_refused(spec: str, path: str, message: str, line: int) -> None:
    assert (path, message, line) in problems(doc(spec))


def test_every_problem_at_once() -> None:
    found = problems(doc("  type: switch\n  vlan: 0\n  subnet: 10.1.0.0/24\n  mtu: 9000\n"))
    assert [p for p, _, _ in found] == ["spec.vlan", "spec.subnet", "spec.mtu"]


def test_local_still_needs_a_subnet() -> None:
    assert ("spec.subnet", "is required", None) in [
        (p, m, None) for p, m, _ in problems(doc("  type: local\n"))]


def test_switch_uplink_checked_against_the_config() -> None:
    (ni,) = load_documents(doc("  type: switch\n  uplink: eth7\n"))
    with pytest.raises(ManifestError, match="'eth7' is not an uplink of the supervisor config"):
        validate_set([ni], CONFIG)
