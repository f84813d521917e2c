from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.net.rules import NIRules
from runner.render import nft
from runner.render.errors import RenderError
from tests.unit.plan.sample import NIS, site

PLAN = site()
RULESETS = {"device.nft": PLAN.device.nft} | {
    f"{name}/ni.nft": p.nft for name, p in PLAN.nis.items()
}


@pytest.mark.parametrize("name", sorted(RULESETS))
def test_ruleset_matches_golden(name: str, golden: Callable[[str, str], None]) -> None:
    golden(name, RULESETS[name])


@pytest.mark.parametrize("name", sorted(RULESETS))
def test_ruleset_replaces_only_its_own_table(name: str) -> None:
    table = "nirunner" if name == "device.nft" else "ni"
    lines = RULESETS[name].splitlines()
    body = [line for line in lines if not line.startswith("#")]
    assert body[:3] == [f"table inet {table} {{}}", f"delete table inet {table}",
                        f"table inet {table} {{"]
    assert [line for line in lines if line.startswith("table ")] == [
        f"table inet {table} {{}}", f"table inet {table} {{"]
    assert not any(word in line for line in lines for word in ("flush ruleset", "ip nat"))


def test_rendering_is_deterministic() -> None:
    again = site()
    assert again.device.nft == PLAN.device.nft
    assert {n: p.nft for n, p in again.nis.items()} == {n: p.nft for n, p in PLAN.nis.items()}
    assert site(nis=tuple(reversed(NIS))).device.nft == PLAN.device.nft


def test_air_gapped_ni_has_no_uplink_rules() -> None:
    text = PLAN.nis["delta"].nft
    assert "uplink0" not in text and "masquerade" not in text and "dnat" not in text
    assert 'iifname "br0" oifname "br0" accept' in text


def test_ni_input_accepts_only_dns_dhcp_ping_from_bridge() -> None:
    text = PLAN.nis["alpha"].nft
    chain = text.split("chain input {")[1].split("}\n")[0]
    assert "policy drop;" in chain
    assert "uplink0" not in chain


def test_vpn_ni_apps_do_not_leave_in_clear() -> None:
    text = nft.ni_ruleset(NIRules("v", uplink=True, forward_out=False))
    assert 'iifname "br0" oifname "uplink0"' not in text
    assert 'iifname "uplink0" oifname "br0" ct status dnat accept' in text


def test_names_are_quoted_and_unquotable_ones_rejected() -> None:
    assert nft.quote("eth0.100") == '"eth0.100"'
    with pytest.raises(RenderError):
        nft.quote('eth"0')
    assert nft.comment('a"b\nc') == 'comment "a_b_c"'


def _nft_runner() -> list[str] | None:
    """A way to run nft in a throwaway network namespace, or None."""
    if shutil.which("nft") is None and not Path("/usr/sbin/nft").exists():
        return None
    nft_bin = shutil.which("nft") or "/usr/sbin/nft"
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    prefix = [unshare, "-n"] if os.geteuid() == 0 else [unshare, "-rn"]
    probe = subprocess.run([*prefix, "true"], capture_output=True)
    return [*prefix, nft_bin] if probe.returncode == 0 else None


NFT = _nft_runner()
needs_nft = pytest.mark.skipif(NFT is None, reason="nft or an unprivileged netns is missing")


@needs_nft
@pytest.mark.parametrize("name", sorted(RULESETS))
def test_nft_accepts_ruleset_in_check_mode(name: str, tmp_path: Path) -> None:
    assert NFT is not None
    path = tmp_path / "ruleset.nft"
    path.write_text(RULESETS[name])
    done = subprocess.run([*NFT, "-c", "-f", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@needs_nft
def test_ruleset_applies_twice_in_a_private_netns(tmp_path: Path) -> None:
    """The `table {}` + `delete table` idiom replaces an existing table, too."""
    assert NFT is not None
    path = tmp_path / "device.nft"
    path.write_text(PLAN.device.nft)
    script = f'{NFT[-1]} -f {path} && {NFT[-1]} -f {path} && {NFT[-1]} list tables'
    done = subprocess.run([*NFT[:-1], "sh", "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:-1] == ["table inet nirunner"]


def test_device_table_counts_every_transit_link_and_port_map() -> None:
    rules = PLAN.device.nft_rules
    counted = nft.device_counters(rules)
    links = {f"{d} {i}" for i in rules.transit_ifs for d in ("in", "out")}
    maps = {f"port map {d.ni}/{d.name}" for d in rules.dnats}
    assert set(counted.values()) == links | maps
    text = PLAN.device.nft
    for name in counted:  # declared empty: values are carried over by the driver
        assert f"\tcounter {name} {{}}\n" in text
    for i in rules.transit_ifs:
        assert f'"{i}" : "ni_{i}_in"' in text and f'"{i}" : "ni_{i}_out"' in text
    for d in rules.dnats:
        assert f'{d.to} . {d.protocol} . {d.port} : "pm_{d.transit_if}_{d.protocol}_{d.port}"' \
            in text


def test_counting_chains_only_count() -> None:
    text = PLAN.device.nft
    for chain in ("count_from_nis", "count_to_nis", "count_port_maps"):
        body = text.split(f"chain {chain} {{")[1].split("}\n")[0]
        assert "policy accept;" in body
        assert not any(v in body for v in (" accept\n", " drop", "dnat ip to", "masquerade"))
    assert all("counter" not in p.nft for p in PLAN.nis.values())


def test_device_input_takes_from_an_uplink_only_that_uplinks_addresses() -> None:
    """A host on an uplink's segment (or a switch NI's app) reaches the device's address
    on that uplink; new connections to the transit ends or another uplink's address
    are dropped, replies of the device's own flows are not (behaviour: the switch NI
    integration test)."""
    chain = PLAN.device.nft.split("chain input {")[1].split("}\n")[0]
    rules = [line.strip() for line in chain.splitlines()[2:] if line.strip()]
    assert rules == [
        "iifname @transit_ifs ct state established,related accept",
        "iifname @transit_ifs drop",
        "iifname @uplink_ifs fib daddr type local fib daddr . iif type != local "
        "ct state != { established, related } drop",
    ]
    # port maps are DNATed before input: they never meet this rule
    assert "type nat hook prerouting priority dstnat" in PLAN.device.nft
