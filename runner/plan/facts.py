"""What the drivers read from the live system and pass into planning.

Planning is a pure function of manifests, the supervisor config and these
facts: a change of a fact (an uplink's address, gateway or MTU, the device's
resolvers) is a change of input that gives a new plan.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Facts:
    """The live values planning depends on."""

    uplinks: dict[str, UplinkFacts] = field(default_factory=dict)  # by uplink name
    resolvers: tuple[IPv4Address, ...] = ()  # the device's DNS servers
    kernel_esp: bool = False  # the kernel can do ESP (XFRM with esp4); else VPNs use libipsec

    def uplink(self, name: str) -> UplinkFacts | None:
        return self.uplinks.get(name)
