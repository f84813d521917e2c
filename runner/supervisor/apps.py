"""Declared apps in the supervisor: `attach --app NAME`, and what `inspect` shows of the
app edge.

An app's MAC is its identity: an attachment bound to it gets that MAC, so DHCP
gives it the app's fixed address (or a lease under its name), the edge allows
that address from its port, and its ACLs apply. Its name becomes the
attachment's hostname.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from runner.drivers import edge as edge_driver
from runner.errors import NirunnerError
from runner.model.errors import did_you_mean
from runner.model.types import NetworkInstance

if TYPE_CHECKING:
    from runner.supervisor.core import Supervisor


class AppError(NirunnerError):
    pass


def bind(ni: NetworkInstance, app: str, mac: str = "", hostname: str = "") -> tuple[str, str]:
    """(MAC, hostname) of an attachment of declared app `app`; AppError says what is wrong."""
    declared = {a.name: a for a in ni.declared()}
    found = declared.get(app)
    if found is None:
        known = ", ".join(sorted(declared)) or "none"
        raise AppError(f"attach to NI {ni.name}: {app!r} is not a declared app of it "
                       f"(declared: {known}){did_you_mean(app, list(declared))}")
    if mac and mac.lower().replace("-", ":") != found.mac:
        raise AppError(f"attach to NI {ni.name}: app {app} has MAC {found.mac}, not {mac}; "
                       f"leave --mac out")
    if hostname and hostname != found.name:
        raise AppError(f"attach to NI {ni.name}: app {app} has hostname {found.name}, not "
                       f"{hostname}; leave --hostname out")
    return found.mac, found.name


def view(ni: NetworkInstance, ports: Sequence[tuple[str, str]],
         counters: Mapping[str, Any] | None, followed: Mapping[str, Any]) -> dict[str, Any]:
    """`inspect`'s appEdge (pure): the app ports (`ports`: (port, MAC) of the attachments)
    with their app and drops per case, the ACL rules' counters, the followers' state."""
    declared = {a.mac: a.name for a in ni.declared()}
    drops = (counters or {}).get("drops", {})
    return {
        "ports": [{"port": port, "mac": mac, "app": declared.get(mac),
                   "drops": drops.get(port, {})} for port, mac in ports],
        "acls": {a.name: len(a.acls) for a in ni.apps if a.acls is not None},
        "rules": dict((counters or {}).get("rules", {})),
        "flowLog": ni.flow_log.enabled,
        **followed,
    }


def gather(sup: Supervisor, netns: str, name: str) -> dict[str, Any]:
    """view() of NI `name` with the kernel's counters (for inspect)."""
    try:
        counters = edge_driver.counters_of(netns)
    except NirunnerError:  # its netns may be gone mid-rebuild
        counters = None
    ports = [(a.host_ifname, a.mac) for a in sup.desired.attachments if a.ni == name]
    followed = sup.edge.stats(name) if sup.edge is not None else {}
    return view(sup.desired.nis[name], ports, counters, followed)
