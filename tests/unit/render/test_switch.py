from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from runner.net import names
from runner.plan.switch import Binding, SwitchApp, SwitchSpec, plan_switch
from runner.render import switch
from runner.render.errors import RenderError
from tests.unit.plan.sample import CONFIG, FACTS
from tests.unit.render.test_nft import NFT, needs_nft

APPS = (SwitchApp("plant/plc", "02:00:00:00:0e:10"),)
ON_SEGMENT = plan_switch(SwitchSpec("plant", "eth1"), APPS, CONFIG, FACTS)
AIR_GAPPED = plan_switch(SwitchSpec("island", None), APPS, CONFIG, FACTS)
TABLES = {f"switch/{sw.name}.nft": (sw, switch.port_table(sw, sw.ports[0]))
          for sw in (ON_SEGMENT, AIR_GAPPED)}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_port_table_matches_golden(name: str, golden: Callable[[str, str], None]) -> None:
    golden(name, TABLES[name][1])


def test_on_a_segment_the_app_and_its_macvlan_are_cross_connected() -> None:
    port = ON_SEGMENT.ports[0]
    text = TABLES["switch/plant.nft"][1]
    assert text.splitlines()[1:4] == [f"table netdev {port.app_if} {{}}",
                                      f"delete table netdev {port.app_if}",
                                      f"table netdev {port.app_if} {{"]
    assert f'fwd to "{port.port_if}";' in text and f'fwd to "{port.app_if}";' in text
    assert "ether saddr != 02:00:00:00:0e:10 drop" in text
    assert "udp sport 67 drop" in text  # no forged leases from apps
    assert "@th,288,48 0x02000000" "0e10 update @leases" in text  # its own ACKs only


def test_air_gapped_port_table_is_in_the_bridge_family_without_fwd() -> None:
    text = TABLES["switch/island.nft"][1]
    assert "table bridge ap" in text and "fwd" not in text
    assert f'iifname "{AIR_GAPPED.ports[0].app_if}" ether saddr != 02:00:00:00:0e:10 drop' in text


def test_a_bad_mac_cannot_be_rendered() -> None:
    sw = plan_switch(SwitchSpec("plant", "eth1"), (SwitchApp("plant/x", "02:00:00"),),
                     CONFIG, FACTS)
    with pytest.raises(RenderError, match="not a MAC address"):
        switch.port_table(sw, sw.ports[0])


# `nft -j list sets` in a switch NI, as nft 1.0.6 prints it (raw-payload keys are integers)
LISTED = {"nftables": [
    {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
    {"set": {"family": "netdev", "name": "leases", "table": "ap8d781498",
             "type": ["integer", "integer"], "flags": ["timeout"], "timeout": 86400,
             "elem": [{"elem": {"val": {"concat": [2199023259152, 3405803890]},
                                "timeout": 86400, "expires": 86390}}]}},
    {"set": {"family": "netdev", "name": "seen", "table": "ap8d781498",
             "type": ["ether_addr", "ipv4_addr"], "flags": ["timeout"], "timeout": 600,
             "elem": [{"elem": {"val": {"concat": ["02:00:00:00:0e:10", "203.0.113.114"]},
                                "timeout": 600, "expires": 599}}]}},
    {"set": {"family": "netdev", "name": "other", "table": "x", "type": "ipv4_addr"}},
]}


def test_learned_bindings_are_read_back_per_port() -> None:
    got = switch.parse_learned(json.dumps(LISTED))
    ip = IPv4Address("203.0.113.114")
    assert got == {"ap8d781498": [Binding("02:00:00:00:0e:10", ip, "dhcp", 86_390_000),
                                  Binding("02:00:00:00:0e:10", ip, "seen", 599_000)]}


def test_unreadable_sets_are_an_error() -> None:
    with pytest.raises(RenderError, match="not JSON"):
        switch.parse_learned("nft: error")
    bad = {"nftables": [{"set": {"name": "seen", "table": "t", "elem": [
        {"elem": {"val": {"concat": ["02:00:00:00:0e:10"]}}}]}}]}
    with pytest.raises(RenderError, match="nft set element"):
        switch.parse_learned(json.dumps(bad))


@needs_nft
@pytest.mark.parametrize("name", sorted(TABLES))
def test_nft_accepts_port_table_with_its_devices(name: str, tmp_path: Path) -> None:
    """Twice, in a throwaway netns with the port's devices (netdev chains need them)."""
    assert NFT is not None
    sw, text = TABLES[name]
    port = sw.ports[0]
    path = tmp_path / "port.nft"
    path.write_text(text)
    peer = port.port_if or "br0"
    setup = f"ip link add {port.app_if} type veth peer name {peer}"
    nft_bin = NFT[-1]
    script = f"{setup} && {nft_bin} -f {path} && {nft_bin} -f {path} && {nft_bin} list tables"
    done = subprocess.run([*NFT[:-1], "sh", "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    family = "netdev" if port.port_if else "bridge"
    assert done.stdout.split("\n")[:-1] == [f"table {family} {port.app_if}"]


def _device_with_a_shim() -> str:
    from runner.model.types import NetworkInstance, NIType
    from runner.plan.site import build
    from tests.unit.plan.sample import NIS

    plant = NetworkInstance("plant", NIType.SWITCH, None, None, None, uplink="eth1")
    return build(CONFIG, FACTS, [*NIS, plant], {}).device.nft


def test_device_ruleset_with_a_shim_matches_golden(golden: Callable[[str, str], None]) -> None:
    text = _device_with_a_shim()
    golden("switch/device.nft", text)
    lines = [line.strip() for line in text.splitlines()]
    shim = names.shim_if("eth1")
    # its apps reach eth1's address, and nothing else local of the device
    accept = lines.index("iifname . ip daddr @shim_local accept")
    drop = next(i for i, line in enumerate(lines) if line.startswith("iifname @uplink_ifs fib"))
    assert accept < drop and f'"{shim}" . 203.0.113.2' in text


@needs_nft
def test_nft_accepts_the_device_ruleset_with_a_shim(tmp_path: Path) -> None:
    assert NFT is not None
    path = tmp_path / "device.nft"
    path.write_text(_device_with_a_shim())
    done = subprocess.run([*NFT, "-c", "-f", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_seed_puts_a_ports_own_leases_back_with_what_was_left() -> None:
    port = ON_SEGMENT.ports[0]
    mine = Binding("02:00:00:00:0e:10", IPv4Address("203.0.113.114"), "dhcp", 3_481_500)
    seen = Binding("02:00:00:00:0e:10", IPv4Address("203.0.113.115"), "seen", 60_000)
    other = Binding("02:00:00:00:0e:99", IPv4Address("203.0.113.116"), "dhcp", 60_000)
    assert switch.seed(port, [mine, seen, other]) == (
        f"add element netdev {port.app_if} leases "
        "{ 0x020000000e10 . 0xcb007172 expires 3481s }\n")
    assert switch.seed(port, [seen, other]) == ""
