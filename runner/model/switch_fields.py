"""The fields of a switch NI (`spec.type: switch`), and `spec.vlan` on other types.

A switch NI bridges its apps onto an uplink's layer-2 segment (or VLAN N of it):
the segment's own DHCP server, DNS and router serve them, so every field that
configures ours is refused with the reason. Air-gapped (no uplink) it is plain
L2 between its apps. See docs/switch-ni.md.
"""

from __future__ import annotations

from runner.model.checker import Checker
from runner.model.errors import describe, show
from runner.model.types import NIType

VLAN_MIN, VLAN_MAX = 1, 4094  # 0 and 4095 are reserved by 802.1Q

# spec fields a switch NI does not take, and why
NOT_FOR_SWITCH = {
    "subnet": "apps take addresses from the uplink's segment",
    "gateway": "the segment's router is the apps' gateway",
    "dhcp": "the segment's DHCP server serves its apps",
    "dns": "apps use the segment's DNS",
    "ntp": "the segment's DHCP server names the apps' NTP servers",
    "portMaps": "apps are reachable on the segment directly",
    "mtu": "the segment's MTU is the uplink's",
    "apps": "the app edge (identities, ACLs) is for local and VPN NIs",
    "flowLog": "the flow log is for local and VPN NIs",
}


def switch_section(c: Checker, s: dict[str, object], ni_type: NIType | None) -> int | None:
    """`spec.vlan` of a switch NI (None: the untagged segment), after refusing the fields
    a switch NI does not take; for any other type, only that `vlan` is not there."""
    if ni_type is not NIType.SWITCH:
        if s.get("vlan") is not None and ni_type is not None:
            c.error("spec.vlan", f"is only for spec.type switch (this NI is {ni_type})")
        return None
    for key, why in NOT_FOR_SWITCH.items():
        if s.get(key) is not None:
            c.error(f"spec.{key}", f"is not allowed for type switch ({why})")
    return _vlan(c, s.get("vlan"), s.get("uplink") is not None)


def _vlan(c: Checker, value: object, has_uplink: bool) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        c.error("spec.vlan", f"must be an integer VLAN id ({VLAN_MIN}-{VLAN_MAX}), not "
                             f"{describe(value)}")
        return None
    if not VLAN_MIN <= value <= VLAN_MAX:
        c.error("spec.vlan", f"{show(value)} is not a VLAN id ({VLAN_MIN}-{VLAN_MAX})")
        return None
    if not has_uplink:
        c.error("spec.vlan", "needs spec.uplink (an air-gapped switch NI has no segment to tag)")
        return None
    return value
