"""VPN NIs: strongswan.conf, swanctl.conf and secrets.conf text, and their nft rulesets.

echo is a PSK VPN NI with libipsec (no kernel ESP), foxtrot a certificate VPN NI
planned for a kernel with ESP. Both use the subnet of the local NIs alpha/beta.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from runner.model.types import IpsecBackend
from runner.plan.site import Plan, build
from runner.plan.vpn import resolve_backend
from runner.render import swanctl
from runner.render.errors import RenderError
from tests.unit.plan.sample import CONFIG, ECHO, FACTS, FOXTROT, VPN_NIS
from tests.unit.render.test_nft import NFT, needs_nft

LIBIPSEC = build(CONFIG, FACTS, VPN_NIS, {})
KERNEL = build(replace(CONFIG, ipsec_backend=IpsecBackend.KERNEL), FACTS, VPN_NIS, {})


def _files(plan: Plan, name: str, tag: str) -> dict[str, str]:
    p = plan.nis[name]
    return {f"vpn/{name}-{tag}/{n}": text for n, text in p.files.items()
            if n in (swanctl.CONF, swanctl.SWANCTL_CONF)} | {f"vpn/{name}-{tag}/ni.nft": p.nft}


GOLDEN = {
    "vpn/device.nft": LIBIPSEC.device.nft,
    **_files(LIBIPSEC, "echo", "libipsec"),
    **_files(LIBIPSEC, "foxtrot", "libipsec"),
    **_files(KERNEL, "echo", "kernel"),
    "vpn/echo/secrets.conf": swanctl.secrets_conf("echo", ("factory@edge", "hq"),
                                                  b"s3cret\n\x00\"}"),
    "vpn/foxtrot/secrets.conf": swanctl.secrets_conf("foxtrot", ("a", "b"), None),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_vpn_config_matches_golden(name: str, golden: Callable[[str, str], None]) -> None:
    golden(name, GOLDEN[name])


def test_backend_is_detected_and_overridable() -> None:
    assert resolve_backend(IpsecBackend.AUTO, kernel_esp=False) is IpsecBackend.LIBIPSEC
    assert resolve_backend(IpsecBackend.AUTO, kernel_esp=True) is IpsecBackend.KERNEL
    assert resolve_backend(IpsecBackend.LIBIPSEC, kernel_esp=True) is IpsecBackend.LIBIPSEC
    assert resolve_backend(IpsecBackend.KERNEL, kernel_esp=False) is IpsecBackend.KERNEL
    detected = build(CONFIG, replace(FACTS, kernel_esp=True), VPN_NIS, {})
    assert detected.nis["echo"].vpn is not None
    assert detected.nis["echo"].vpn.backend is IpsecBackend.KERNEL
    assert detected.nis["echo"].files == KERNEL.nis["echo"].files


def test_plans_hold_no_secrets_only_where_they_come_from() -> None:
    echo, fox = LIBIPSEC.nis["echo"].vpn, LIBIPSEC.nis["foxtrot"].vpn
    assert echo is not None and fox is not None
    assert echo.psk_file == "/etc/secrets/echo.psk" and echo.copies == ()
    assert echo.credential_names == (swanctl.SECRETS_CONF,)
    assert {(c.source, c.name, c.mode) for c in fox.copies} == {
        ("/etc/secrets/edge.pem", "swanctl/x509/local.pem", 0o644),
        ("/etc/secrets/ca.pem", "swanctl/x509ca/ca.pem", 0o644),
        ("/etc/secrets/edge.key", "swanctl/private/local.pem", 0o600),
    }
    assert swanctl.SECRETS_CONF not in LIBIPSEC.nis["echo"].files


def test_connection_is_the_vici_message_and_the_swanctl_text() -> None:
    p = LIBIPSEC.nis["echo"]
    assert p.vpn is not None
    conn = p.vpn.connection["echo"]
    assert conn["remote_addrs"] == ["198.18.1.2"]
    assert conn["children"]["echo"]["local_ts"] == ["10.1.0.0/24"]
    assert conn["children"]["echo"]["remote_ts"] == ["10.99.1.0/24"]
    assert conn["dpd_delay"] == "30s"
    assert "dpd_delay" not in LIBIPSEC.nis["foxtrot"].files[swanctl.SWANCTL_CONF]
    text = p.files[swanctl.SWANCTL_CONF]
    assert "remote_ts = 10.99.1.0/24\n" in text and 'id = "factory@edge"' not in text
    assert "include /etc/nirunner/swanctl/secrets.conf" in text


def test_identical_local_selectors_in_both_vpn_nis() -> None:
    ts = [LIBIPSEC.nis[n].vpn.connection[n]["children"][n]["local_ts"]  # type: ignore[union-attr]
          for n in ("echo", "foxtrot")]
    assert ts == [["10.1.0.0/24"], ["10.1.0.0/24"]]


def test_vpn_nft_sends_nothing_in_clear() -> None:
    text = LIBIPSEC.nis["echo"].nft
    forward = text.split("chain forward {")[1].split("}\n")[0].splitlines()
    rules = [line.strip() for line in forward if line.strip()]
    assert rules[1] == 'iifname "br0" oifname "uplink0" drop'  # before `established`
    assert 'iifname "br0" oifname "ipsec0" accept' in rules
    output = text.split("chain output {")[1].split("}\n")[0]
    assert 'oifname "uplink0" udp sport { 500, 4500 } accept' in output
    assert output.strip().splitlines()[-1].strip() == 'oifname "uplink0" drop'
    assert "dnat" not in text
    kernel = KERNEL.nis["echo"].nft
    assert 'iifname "br0" oifname "uplink0" rt ipsec missing drop' in kernel
    assert "ipsec0" not in kernel


def test_vpn_strongswan_conf_per_backend() -> None:
    lib = LIBIPSEC.nis["echo"].files[swanctl.CONF]
    kern = KERNEL.nis["echo"].files[swanctl.CONF]
    assert " kernel-libipsec " in lib and "kernel-libipsec" not in kern
    for text in (lib, kern):
        assert "socket = unix:///var/lib/nirunner/charon.vici" in text
        assert "path = /var/lib/nirunner/charon.log" in text
        assert "--file /etc/nirunner/swanctl/swanctl.conf" in text


def test_restart_only_for_strongswan_conf() -> None:
    before = LIBIPSEC.nis["echo"]
    assert ECHO.vpn is not None
    more = replace(ECHO, vpn=replace(ECHO.vpn, remote_subnets=(
        *ECHO.vpn.remote_subnets, *FOXTROT.vpn.remote_subnets[1:])))  # type: ignore[union-attr]
    after = build(CONFIG, FACTS, (*VPN_NIS[:-2], more, FOXTROT), {}).nis["echo"]
    assert after.restart_key == before.restart_key and after.live_key != before.live_key
    assert KERNEL.nis["echo"].restart_key != before.restart_key


def test_secrets_conf() -> None:
    text = swanctl.secrets_conf("echo", ("factory@edge", "hq"), b"abc")
    assert "secret = 0sYWJj\n" in text and "abc" not in text.replace("0sYWJj", "")
    assert 'id-1 = "factory@edge"' not in text and "id-1 = factory@edge" in text
    with pytest.raises(RenderError, match="empty"):
        swanctl.secrets_conf("echo", ("factory@edge", "hq"), b"")


def test_unquotable_values_are_refused() -> None:
    assert ECHO.vpn is not None
    bad = replace(ECHO, vpn=replace(ECHO.vpn, local_id='a"b'))
    with pytest.raises(RenderError, match="cannot be written"):
        swanctl.render(bad, IpsecBackend.LIBIPSEC)
    with pytest.raises(RenderError, match="resolved"):
        swanctl.strongswan_conf("echo", IpsecBackend.AUTO)


NFT_RULESETS = {"device": LIBIPSEC.device.nft, "libipsec": LIBIPSEC.nis["echo"].nft,
                "kernel": KERNEL.nis["echo"].nft}


@needs_nft
@pytest.mark.parametrize("name", sorted(NFT_RULESETS))
def test_nft_accepts_vpn_ruleset(name: str, tmp_path: Path) -> None:
    assert NFT is not None
    path = tmp_path / "ruleset.nft"
    path.write_text(NFT_RULESETS[name])
    done = subprocess.run([*NFT, "-c", "-f", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

