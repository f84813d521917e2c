from __future__ import annotations

from runner.drivers import kernel
from runner.plan.facts import KernelFeature, KernelFeatures

ALL_YES = "vlan yes\nvlan_bridge yes\nmacvlan yes\nnetdev_fwd yes\n"
THIS_MACHINE = ("vlan no Error: Unknown device type.\n"
                "vlan_bridge no RTNETLINK answers: Operation not supported\n"
                "macvlan yes\nnetdev_fwd yes\n")


def test_a_kernel_with_everything() -> None:
    f = kernel.parse(ALL_YES)
    assert f == KernelFeatures()
    assert all(f.has(k) for k in KernelFeature)
    assert f.why_not(KernelFeature.VLAN) == ""


def test_missing_features_keep_the_kernels_answer() -> None:
    f = kernel.parse(THIS_MACHINE)
    assert not f.has(KernelFeature.VLAN) and not f.has(KernelFeature.VLAN_BRIDGE)
    assert f.has(KernelFeature.MACVLAN) and f.has(KernelFeature.NETDEV_FWD)
    assert f.why_not(KernelFeature.VLAN) == (
        "this kernel has no 802.1Q VLAN devices (Error: Unknown device type.)")


def test_a_feature_the_probe_did_not_answer_for_is_missing_with_the_probes_failure() -> None:
    f = kernel.parse("vlan yes\n", returncode=3, stderr="RTNETLINK answers: Operation not "
                     "permitted\n")
    assert f.has(KernelFeature.VLAN)
    assert not f.has(KernelFeature.MACVLAN)
    assert "probe failed (exit 3): RTNETLINK answers: Operation not permitted" in f.why_not(
        KernelFeature.MACVLAN)


def test_unknown_and_garbled_lines_are_ignored() -> None:
    f = kernel.parse("ipvlan yes\nvlan maybe\n" + ALL_YES.replace("vlan yes\n", "", 1))
    assert not f.has(KernelFeature.VLAN)
    assert f.has(KernelFeature.MACVLAN)


def test_the_probe_script_answers_for_every_feature() -> None:
    for key in ("vlan", "vlan_bridge", "macvlan", "netdev_fwd"):
        assert f"try {key} " in kernel.SCRIPT
