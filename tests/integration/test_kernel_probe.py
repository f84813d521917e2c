"""The kernel-feature probe against this kernel, checked by trying each feature in a
lab netns of our own (on this machine: no 802.1Q and no VLAN-filtering bridge)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from runner.drivers import kernel
from runner.plan.facts import KernelFeature

pytestmark = pytest.mark.integration


def _works(netns: str, *args: str) -> bool:
    return subprocess.run(["ip", "-n", netns, *args], capture_output=True,
                          timeout=10).returncode == 0


def _links(netns: str | None = None) -> str:
    cmd = ["ip", "-o", "link"] if netns is None else ["ip", "-n", netns, "-o", "link"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def test_probe_agrees_with_the_kernel(netns: Callable[[str], str]) -> None:
    ns = netns("kprobe")
    assert _works(ns, "link", "add", "k0", "type", "veth", "peer", "name", "k1")
    truth = {
        KernelFeature.VLAN: _works(ns, "link", "add", "link", "k0", "name", "k0.7",
                                   "type", "vlan", "id", "7"),
        KernelFeature.VLAN_BRIDGE: _works(ns, "link", "add", "kb", "type", "bridge",
                                          "vlan_filtering", "1"),
        KernelFeature.MACVLAN: _works(ns, "link", "add", "km", "link", "k0", "type",
                                      "macvlan", "mode", "bridge"),
        KernelFeature.NETDEV_FWD: subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "-f", "-"], capture_output=True, timeout=10,
            input=b'table netdev t {\n chain c {\n  type filter hook ingress device "k0" '
                  b'priority 0; policy accept;\n  fwd to "k1";\n }\n}\n').returncode == 0,
    }
    before = _links()
    kernel.features.cache_clear()
    found = kernel.features()
    assert _links() == before  # the probe ran in a namespace of its own
    for feature, works in truth.items():
        assert found.has(feature) == works, (feature, found.why_not(feature))
        if not works:
            assert found.why_not(feature).startswith(f"this kernel has no {feature.value} (")
    print({f.value: found.has(f) for f in KernelFeature})
