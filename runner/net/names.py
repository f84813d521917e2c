"""Every kernel-visible name and number nirunner uses, and their limits.

This is the only module that knows how netns, links, bridges, containers, nft
tables, route tables and rule priorities are named, and that a Linux interface
name has at most 15 characters (IFNAMSIZ 16 with the trailing NUL).
"""

from __future__ import annotations

import hashlib
import re

from runner.net.errors import NetValueError

IFNAMSIZ = 15  # usable characters of an interface name
NI_NAME_MAX = 32  # what the manifest parser allows

NETNS_PREFIX = "nr-"  # NI netns: nr-<ni name>
CONTAINER_PREFIX = "ni-"  # containerd container: ni-<ni name>
TRANSIT_PREFIX = "nr"  # device end of a transit veth: nr<slot>
NI_TRANSIT_IF = "uplink0"  # NI end of the transit veth
BRIDGE_IF = "br0"  # the NI's bridge, the apps' gateway
APP_PREFIX = "ap"  # NI end of an app veth: ap<8 hex>
SWITCH_PORT_PREFIX = "mv"  # a switch NI app's macvlan on the segment: mv<the app's 8 hex>
SHIM_PREFIX = "nrs"  # the device's macvlan shim on an uplink with switch NIs: nrs<8 hex>
VLAN_PREFIX = "nrv"  # a VLAN sub-interface whose conventional name is too long: nrv<6 hex>.<id>
VLAN_MIN, VLAN_MAX = 1, 4094  # 802.1Q ids (0 and 4095 are reserved)

VPN_TUN_IF = "ipsec0"  # the TUN device strongSwan's kernel-libipsec makes in a VPN NI
VPN_ROUTE_TABLE = 220  # where charon puts the routes into the tunnel (its default)
IKE_PORTS = (500, 4500)  # IKE and NAT-T (also ESP-in-UDP)

DEVICE_NFT_TABLE = "nirunner"  # table inet nirunner in the device netns
NI_NFT_TABLE = "ni"  # table inet ni in each NI netns
EDGE_NFT_TABLE = "edge"  # table bridge edge in each NI netns: anti-spoofing at app ports
ACL_NFT_TABLE = "acl"  # table inet acl in each NI netns: the apps' ACLs
FLOWLOG_GROUP = 7  # nflog group of an NI netns: drops and DNS replies for the flow log
SWITCH_LEARN_GROUP = 8  # nflog group of a switch NI netns: a lease learned (wakes the supervisor)

UPLINK_TABLE_BASE = 1000  # route table of uplink i (index in config.uplinks)
TRANSIT_RULE_BASE = 1000  # priority of "iif nr<slot> lookup <table>": base + slot
LOCAL_RULE_PRIORITY = 32000  # where the "lookup local" rule moves to (from 0)
LOCAL_TABLE = 255  # the kernel's "local" table
MAIN_TABLE = 254  # the kernel's "main" table
MAX_SLOTS = LOCAL_RULE_PRIORITY - TRANSIT_RULE_BASE  # transit rules stay above local

_NI_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_BAD_IFNAME = re.compile(r"[/:\s\"\\]")


def check_ifname(name: str) -> str:
    """`name` if it is a valid interface name, else NetValueError."""
    if not 1 <= len(name) <= IFNAMSIZ:
        raise NetValueError(f"interface name {name!r} must have 1-{IFNAMSIZ} characters")
    if name in (".", "..") or _BAD_IFNAME.search(name):
        raise NetValueError(f"interface name {name!r} has a character Linux or nft does not allow")
    return name


def check_ni_name(ni: str) -> str:
    if len(ni) > NI_NAME_MAX or not _NI_NAME.fullmatch(ni):
        raise NetValueError(
            f"NI name {ni!r} is not a DNS label of at most {NI_NAME_MAX} characters")
    return ni


def netns(ni: str) -> str:
    """The NI's network namespace (/run/netns/nr-<ni>; netns names are not IFNAMSIZ-bound)."""
    return NETNS_PREFIX + check_ni_name(ni)


def container_id(ni: str) -> str:
    """The NI's containerd container (and task) id."""
    return CONTAINER_PREFIX + check_ni_name(ni)


def transit_device_if(slot: int) -> str:
    """The device-netns end of transit slot `slot`."""
    if not 0 <= slot < MAX_SLOTS:
        raise NetValueError(f"transit slot {slot} is out of range 0..{MAX_SLOTS - 1}")
    return check_ifname(f"{TRANSIT_PREFIX}{slot}")


def transit_slot(ifname: str) -> int | None:
    """The slot of a device-side transit interface name, or None if it is not one."""
    m = re.fullmatch(TRANSIT_PREFIX + r"(0|[1-9][0-9]*)", ifname)
    if m is None or int(m.group(1)) >= MAX_SLOTS:
        return None
    return int(m.group(1))


def bridge_mac(ni: str) -> str:
    """A fixed MAC for the NI's bridge: locally administered unicast, from the NI name.

    Without it the bridge takes its lowest port's MAC and the gateway MAC changes
    whenever an app is plugged or unplugged.
    """
    return _mac(f"nirunner/bridge/{check_ni_name(ni)}")


def app_if(app_key: str) -> str:
    """The NI end of an app's veth, from a stable key of the app (e.g. "<ni>/<app>")."""
    return check_ifname(APP_PREFIX + _hex8(app_key))


def app_peer_if(app_key: str) -> str:
    """The app end of that veth while both ends are still in the same netns."""
    return check_ifname(APP_PREFIX + _hex8(app_key) + "p")


def switch_port_if(app_key: str) -> str:
    """A switch NI app's macvlan on the segment (in the NI netns), paired with app_if(key)."""
    return check_ifname(SWITCH_PORT_PREFIX + _hex8(app_key))


def switch_port_for(app_if: str) -> str:
    """The macvlan paired with app veth end `app_if` (ap<hex> -> mv<hex>)."""
    if not app_if.startswith(APP_PREFIX):
        raise NetValueError(f"{app_if!r} is not an app's interface ({APP_PREFIX}<hex>)")
    return check_ifname(SWITCH_PORT_PREFIX + app_if.removeprefix(APP_PREFIX))


def shim_if(uplink_if: str) -> str:
    """The device's macvlan shim on uplink interface `uplink_if` (in the device netns)."""
    return check_ifname(SHIM_PREFIX + _hex8(f"shim/{check_ifname(uplink_if)}"))


def shim_mac(uplink_if: str) -> str:
    """A fixed MAC for the shim: apps keep their ARP entry for the device across restarts."""
    return _mac(f"nirunner/shim/{check_ifname(uplink_if)}")


def check_vlan(vlan: int) -> int:
    if not VLAN_MIN <= vlan <= VLAN_MAX:
        raise NetValueError(f"VLAN id {vlan} is out of range {VLAN_MIN}-{VLAN_MAX}")
    return vlan


def vlan_if(uplink_if: str, vlan: int) -> str:
    """VLAN `vlan` of `uplink_if`: `eth1.100` as everyone names it, or nrv<6 hex>.<id>
    when that would not fit IFNAMSIZ."""
    name = f"{check_ifname(uplink_if)}.{check_vlan(vlan)}"
    if len(name) <= IFNAMSIZ:
        return name
    return check_ifname(f"{VLAN_PREFIX}{_hex8(uplink_if)[:6]}.{vlan}")


def uplink_table(index: int) -> int:
    """The route table of the uplink at `index` in config.uplinks."""
    return UPLINK_TABLE_BASE + index


def transit_rule_priority(slot: int) -> int:
    priority = TRANSIT_RULE_BASE + slot
    if not TRANSIT_RULE_BASE <= priority < LOCAL_RULE_PRIORITY:
        raise NetValueError(f"transit slot {slot} gives rule priority {priority} out of range")
    return priority


# Named nft counters in the device table (metrics): bytes and packets of each transit
# link, and of each port map's flows. Counter names are nft identifiers.
TRANSIT_IN, TRANSIT_OUT = "in", "out"  # into the NI / out of it, seen from the NI


def transit_counter(ifname: str, direction: str) -> str:
    """The counter of traffic into (`in`) or out of (`out`) the NI behind transit `ifname`."""
    if direction not in (TRANSIT_IN, TRANSIT_OUT):
        raise NetValueError(f"counter direction {direction!r} is not in or out")
    if transit_slot(ifname) is None:
        raise NetValueError(f"{ifname!r} is not a transit interface")
    return f"ni_{ifname}_{direction}"


def port_map_counter(ifname: str, protocol: str, port: int) -> str:
    """The counter of the flows of the port map `protocol`/`port` to transit `ifname`'s NI."""
    if protocol not in ("tcp", "udp") or not 1 <= port <= 65535 or transit_slot(ifname) is None:
        raise NetValueError(f"no port map counter for {ifname} {protocol}/{port}")
    return f"pm_{ifname}_{protocol}_{port}"


def _mac(key: str) -> str:
    """Locally administered unicast (02:...), stable for `key`."""
    digest = hashlib.sha256(key.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def _hex8(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:8]
