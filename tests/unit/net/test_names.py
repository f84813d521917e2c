from __future__ import annotations

import pytest

from runner.net import names
from runner.net.errors import NetValueError

LONGEST_NI = "a" * names.NI_NAME_MAX


def test_netns_and_container_names() -> None:
    assert names.netns("factory") == "nr-factory"
    assert names.container_id("factory") == "ni-factory"
    assert names.netns(LONGEST_NI) == "nr-" + LONGEST_NI  # netns names are not IFNAMSIZ-bound


@pytest.mark.parametrize("bad", ["", "Factory", "a_b", "-a", "a" * 33, "a/b"])
def test_bad_ni_names_are_refused(bad: str) -> None:
    with pytest.raises(NetValueError):
        names.netns(bad)


def test_interface_names_fit_ifnamsiz() -> None:
    for name in (names.transit_device_if(0), names.transit_device_if(names.MAX_SLOTS - 1),
                 names.NI_TRANSIT_IF, names.BRIDGE_IF, names.app_if(LONGEST_NI + "/" + "x" * 64),
                 names.app_peer_if("anything")):
        assert 1 <= len(names.check_ifname(name)) <= names.IFNAMSIZ


def test_transit_names_round_trip() -> None:
    assert names.transit_device_if(7) == "nr7"
    assert names.transit_slot("nr7") == 7
    for other in ("nr", "nr07", "nr-x", "eth0", "nr-alpha", f"nr{names.MAX_SLOTS}"):
        assert names.transit_slot(other) is None
    with pytest.raises(NetValueError):
        names.transit_device_if(names.MAX_SLOTS)


def test_app_if_is_stable_and_distinct() -> None:
    a = names.app_if("alpha/web")
    assert a == names.app_if("alpha/web") and a.startswith("ap") and len(a) == 10
    assert a != names.app_if("beta/web")
    assert names.app_peer_if("alpha/web") == a + "p"


@pytest.mark.parametrize("bad", ["", "x" * 16, "a b", "a/b", "a:b", 'a"b', ".", ".."])
def test_check_ifname_refuses(bad: str) -> None:
    with pytest.raises(NetValueError):
        names.check_ifname(bad)


def test_bridge_mac_is_stable_locally_administered_unicast() -> None:
    mac = names.bridge_mac("alpha")
    assert mac == names.bridge_mac("alpha")
    octets = [int(o, 16) for o in mac.split(":")]
    assert len(octets) == 6
    assert octets[0] & 0x02 and not octets[0] & 0x01
    assert mac != names.bridge_mac("beta")


def test_tables_and_priorities() -> None:
    assert names.uplink_table(0) == 1000 and names.uplink_table(1) == 1001
    assert names.transit_rule_priority(0) == 1000
    assert names.transit_rule_priority(names.MAX_SLOTS - 1) < names.LOCAL_RULE_PRIORITY


def test_switch_names_fit_and_pair_with_the_app() -> None:
    port = names.switch_port_if("plant/plc")
    assert port.startswith("mv") and port[2:] == names.app_if("plant/plc")[2:]
    shim = names.shim_if("eth1")
    assert shim.startswith("nrs") and len(shim) == 11 and shim != names.shim_if("eth0")
    assert names.transit_slot(shim) is None  # never taken for a transit link
    mac = [int(o, 16) for o in names.shim_mac("eth1").split(":")]
    assert mac[0] & 0x02 and not mac[0] & 0x01 and names.shim_mac("eth1") != names.shim_mac("eth0")


def test_vlan_names_are_conventional_when_they_fit() -> None:
    assert names.vlan_if("eth1", 100) == "eth1.100"
    assert names.vlan_if("enp0s31f6", 4094) == "enp0s31f6.4094"
    long = names.vlan_if("enp0s31f6u2", 4094)
    assert long.startswith("nrv") and long.endswith(".4094") and len(long) <= names.IFNAMSIZ
    assert long != names.vlan_if("enp0s31f6u3", 4094)
    for bad in (0, 4095):
        with pytest.raises(NetValueError, match="out of range 1-4094"):
            names.vlan_if("eth1", bad)
