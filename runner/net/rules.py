"""The firewall/NAT intent as plain data; `runner.render.nft` turns it into text.

Kept apart from `ni` and `device` so that the renderer depends on data only.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from runner.model.types import Protocol


@dataclass(frozen=True)
class NIPortMap:
    """Inside the NI: uplink0 <protocol>/<port> -> <target>:<target_port>."""

    name: str
    protocol: Protocol
    port: int  # the uplink port; also the port on the NI's transit address
    target: IPv4Address  # the app's address in the NI subnet
    target_port: int


@dataclass(frozen=True)
class NIVpnRules:
    """A VPN NI: apps talk only through the tunnel; only IKE/ESP uses the uplink."""

    kernel_esp: bool  # True: XFRM policies on uplink0; False: libipsec's TUN device
    tun: str | None  # the TUN device (libipsec), None with kernel ESP


@dataclass(frozen=True)
class NIRules:
    """What table inet ni of one NI must do."""

    ni: str
    uplink: bool  # False: air-gapped, no uplink0 rules at all
    forward_out: bool  # apps may leave through uplink0 in clear (False for VPN NIs)
    port_maps: tuple[NIPortMap, ...] = ()
    vpn: NIVpnRules | None = None


@dataclass(frozen=True)
class DeviceDnat:
    """In the device netns: <daddrs>:<port>/<protocol>, from `iifs` -> <to>:<port>."""

    ni: str
    name: str  # the port map's name
    uplink: str
    protocol: Protocol
    port: int
    iifs: tuple[str, ...]  # the uplink's interface + transit ifs of NIs on that uplink
    daddrs: tuple[IPv4Address, ...]  # the uplink's current addresses
    to: IPv4Address  # the NI's transit address
    transit_if: str = ""  # the device end of that NI's transit link (names its counter)


@dataclass(frozen=True)
class DeviceRules:
    """What table inet nirunner in the device netns must do."""

    transit_ifs: tuple[str, ...]  # device ends of all transit links
    uplink_ifs: tuple[str, ...]  # interfaces of all configured uplinks
    transit_uplinks: tuple[tuple[str, str], ...]  # (transit if, its NI's uplink if)
    dnats: tuple[DeviceDnat, ...] = ()
    vpn_transit_ifs: tuple[str, ...] = ()  # transit links of VPN NIs: IKE/ESP only
    transit_pool: str = ""  # sources from it on no known transit link are never forwarded
    # (transit if, its NI's subnet) of NIs with port maps: a port-map client whose
    # address lies in that subnet is masqueraded on its way in (see render.nft)
    port_map_subnets: tuple[tuple[str, IPv4Network], ...] = ()
    # (shim, its uplink's address) of switch NIs' shims: what their apps reach locally
    shim_local: tuple[tuple[str, IPv4Address], ...] = ()
