"""An app attachment: which app netns plugs into which NI, with what MAC (validation only).

The plug itself is an item (runner.reconcile.kinds.Plug) made by its configurator.
The app end gets a stable MAC (derived from the NI, netns and ifname unless
given), so a re-plugged app gets its old DHCP lease back.
"""

from __future__ import annotations

import hashlib
import os
import re

from runner.errors import NirunnerError
from runner.net import names
from runner.net.errors import NetValueError
from runner.supervisor.store import Attachment

_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


class AttachError(NirunnerError):
    pass


def _mac_for(key: str) -> str:
    h = hashlib.sha256(key.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, h[0], h[1], h[2], h[3], h[4]))


def attachment(ni: str, netns: str, ifname: str, mac: str, hostname: str) -> Attachment:
    """The attachment of `netns` to NI `ni`, validated; AttachError says what is wrong."""
    if not netns.startswith("/") or "\0" in netns:
        raise AttachError(f"attach to NI {ni}: {netns!r} is not an absolute path")
    if not os.path.exists(netns):
        raise AttachError(f"attach to NI {ni}: no network namespace at {netns}")
    try:
        names.check_ifname(ifname)
    except NetValueError as e:
        raise AttachError(f"attach to NI {ni}: {e}") from None
    key = f"{ni}/{os.path.realpath(netns)}/{ifname}"
    mac = (mac or _mac_for(key)).lower()
    if not _MAC.fullmatch(mac) or int(mac[:2], 16) & 1:
        raise AttachError(f"attach to NI {ni}: {mac!r} is not a unicast MAC address")
    if hostname and not _HOSTNAME.fullmatch(hostname):
        raise AttachError(f"attach to NI {ni}: {hostname!r} is not a valid hostname")
    return Attachment(ni=ni, netns=netns, ifname=ifname, host_ifname=names.app_if(key),
                      mac=mac, hostname=hostname)
