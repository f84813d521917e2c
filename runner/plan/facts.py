"""What the drivers read from the live system and pass into planning.

Planning is a pure function of manifests, the supervisor config and these
facts: a change of a fact (an uplink's address, gateway or MTU, the device's
resolvers, an address a switch NI's app leased) is a change of input that gives
a new plan.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface


@dataclass(frozen=True)
class UplinkFacts:
    """One uplink as found in the device netns."""

    name: str  # the uplink's name in the config and manifests, e.g. "eth0"
    interface: str  # its kernel interface in the device netns
    addresses: tuple[IPv4Interface, ...] = ()  # in the kernel's order, primary first
    gateway: IPv4Address | None = None  # the default route's gateway on that interface
    mtu: int = 1500
    up: bool = True  # administratively up with carrier
    exists: bool = True  # the interface is there at all


class KernelFeature(enum.StrEnum):
    """A kernel capability some NIs need; probed once at start (runner.drivers.kernel)."""

    VLAN = "802.1Q VLAN devices"  # `ip link add link X name Y type vlan id N`
    VLAN_BRIDGE = "VLAN-filtering bridges"  # `ip link add B type bridge vlan_filtering 1`
    MACVLAN = "macvlan devices"  # a switch NI's ports on its uplink's segment
    NETDEV_FWD = "nftables netdev fwd"  # `fwd to` at ingress: a switch NI's cross-connects


@dataclass(frozen=True)
class KernelFeatures:
    """What this kernel has, with the probe's answer for each feature it lacks."""

    missing: tuple[tuple[KernelFeature, str], ...] = ()  # (feature, what the probe answered)

    def has(self, feature: KernelFeature) -> bool:
        return all(f is not feature for f, _ in self.missing)

    def why_not(self, feature: KernelFeature) -> str:
        """A sentence for a refusal: "this kernel has no 802.1Q VLAN devices (...)"."""
        for f, answer in self.missing:
            if f is feature:
                return f"this kernel has no {f.value}" + (f" ({answer})" if answer else "")
        return ""


@dataclass(frozen=True)
class Binding:
    """An address an app of a switch NI uses, as its NI learned it (runner.render.switch)."""

    mac: str
    ip: IPv4Address
    source: str  # "dhcp": an ACK from the segment's server; "seen": the app's ARP
    expires_ms: int = 0  # what is left of the set element's timeout


@dataclass(frozen=True)
class Facts:
    """The live values planning depends on."""

    uplinks: dict[str, UplinkFacts] = field(default_factory=dict)  # by uplink name
    resolvers: tuple[IPv4Address, ...] = ()  # the device's DNS servers
    kernel_esp: bool = False  # the kernel can do ESP (XFRM with esp4); else VPNs use libipsec
    kernel: KernelFeatures = KernelFeatures()  # default: everything (tests); probed live
    # what each switch NI's ports learned (by NI name): leased ones get routes
    learned: dict[str, tuple[Binding, ...]] = field(default_factory=dict)

    def uplink(self, name: str) -> UplinkFacts | None:
        return self.uplinks.get(name)
