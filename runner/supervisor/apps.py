"""`attach --app NAME`: an attachment bound to a declared app of the NI (pure).

The app's MAC is its identity: the attachment gets it, so DHCP gives it the app's
fixed address (or a lease under its name), the edge allows that address from
its port, and its ACLs apply. Its name becomes the attachment's hostname.
"""

from __future__ import annotations

from runner.errors import NirunnerError
from runner.model.errors import did_you_mean
from runner.model.types import NetworkInstance


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
