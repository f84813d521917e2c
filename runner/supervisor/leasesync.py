"""One NI's DHCP leases, followed into its edge and ACL tables (no threads, no inotify here).

dnsmasq rewrites its lease file on every change. Each leased address is allowed
from its MAC in table bridge edge until the lease ends (an element timeout), and
for an app with ACLs it also dispatches ingress to the app's rules. A new or
renewed lease is an add, a lease that went a delete: element operations, never
a reload of a table.

`full` makes the tables match the file from what they hold (after the tables were
made anew, or when the supervisor starts); `changed` applies what differs from
what it applied last. Both run under the NI's edge lock (see edgewatch), which
an ACL change takes too.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from runner.drivers.edge import AclView, EdgeView
from runner.errors import NirunnerError
from runner.net.appedge import Lease, leases_from_dnsmasq
from runner.render import appedge

log = logging.getLogger("nirunner.leases")

Key = tuple[str, str]  # (MAC, IP)
_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


@dataclass(frozen=True)
class Applied:
    expiry: int  # the lease file's end of the lease (0: infinite)
    acl_app: str | None  # the ACL app its ingress dispatches to, if any


def read_file(path: Path, now: float) -> dict[Key, tuple[Lease, int]]:
    """The live leases of a dnsmasq lease file with their end (0: infinite); {} if none."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return {}
    ends = {}
    for line in text.splitlines():
        w = line.split()
        if len(w) >= 3 and w[0].isdigit():
            ends[(w[1].lower(), w[2])] = int(w[0])
    return {(x.mac, str(x.ip)): (x, ends.get((x.mac, str(x.ip)), 0))
            for x in leases_from_dnsmasq(text, now)}


def hostnames(path: Path) -> dict[str, str]:
    """MAC -> the hostname its client sent, from a dnsmasq lease file (names that are
    not DNS labels are left out: the file is the task's, and names reach terminals)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return {}
    return {w[1].lower(): w[3] for w in (line.split() for line in text.splitlines())
            if len(w) >= 4 and w[0].isdigit() and _NAME.fullmatch(w[3])}


def changes(applied: Mapping[Key, Applied], found: Mapping[Key, tuple[Lease, int]],
            acl_apps: Mapping[str, str], deletes: bool = True,
            fixed: Collection[Key] = ()) -> tuple[str, dict[Key, Applied]]:
    """(nft text, what is applied after it) for leases that are new, renewed and (with
    `deletes`) gone since `applied` (pure). A lease of an app's fixed address (`fixed`:
    DHCP gives a declared app its address) is left alone: that address is allowed for
    good, not until the lease ends."""
    text: list[str] = []
    after = dict(applied)
    for key, (lease, expiry) in sorted(found.items()):
        if key in fixed:
            continue
        app = acl_apps.get(lease.mac)
        before = applied.get(key)
        if before is None or before.expiry != expiry or before.acl_app != app:
            if before is not None and before.acl_app not in (None, app):
                text.append(appedge.lease_delete(lease, before.acl_app))
            text.append(appedge.lease_set(lease, app))
            after[key] = Applied(expiry, app)
    if deletes:
        for key in sorted(set(applied) - set(found)):
            mac, ip = key
            text.append(appedge.lease_delete(Lease(mac, IPv4Address(ip), 0),
                                             applied[key].acl_app))
            del after[key]
    return "".join(text), after


def stale(edge: EdgeView | None, acl: AclView | None, found: Mapping[Key, object],
          fixed: Collection[Key] = ()) -> str:
    """nft text removing what the tables hold of leases the file no longer has, and making
    a fixed address that holds a lease's timeout (an older supervisor's) fixed again (pure)."""
    text = []
    for (mac, ip) in sorted(set(edge.leased) - set(found) - set(fixed) if edge else ()):
        text.append(appedge.lease_delete(Lease(mac, IPv4Address(ip), 0)))
    for (mac, ip) in sorted(set(edge.leased) & set(fixed) if edge else ()):
        text.append(appedge.fixed_again(mac, IPv4Address(ip)))
    live = {ip for _mac, ip in found}
    for ip, chain in sorted(acl.leased.items() if acl else ()):
        if ip not in live:
            text.append(appedge.ingress_delete(IPv4Address(ip), chain))
    return "".join(text)


class LeaseSync:
    def __init__(self, ni: str, path: Path, acl_apps: Mapping[str, str],
                 apply: Callable[[str], None],
                 read: Callable[[], tuple[EdgeView | None, AclView | None]],
                 fixed: Collection[Key] = ()) -> None:
        """`apply` runs nft text in the NI's netns; `read` the tables as they are;
        `fixed`: (MAC, IP) of the declared apps' fixed addresses."""
        self.ni, self.path, self.acl_apps = ni, path, dict(acl_apps)
        self.fixed = frozenset(fixed)
        self.apply, self.read = apply, read
        self.applied: dict[Key, Applied] = {}
        self.errors = 0

    def leases(self) -> list[Lease]:
        return [lease for lease, _ in read_file(self.path, time.time()).values()]

    def full(self) -> None:
        """Make the tables hold exactly the file's leases (from what they hold now)."""
        found = read_file(self.path, time.time())
        edge, acl = self.read()
        text, after = changes({}, found, self.acl_apps, fixed=self.fixed)
        self.apply(stale(edge, acl, found, self.fixed) + text)
        self.applied = after

    def changed(self, deletes: bool = True) -> None:
        """Apply what differs from what was applied last; a failure (a table changed
        meanwhile) falls back to a full sync."""
        text, after = changes(self.applied, read_file(self.path, time.time()), self.acl_apps,
                              deletes, self.fixed)
        if not text:
            return
        try:
            self.apply(text)
            self.applied = after
        except NirunnerError as e:
            self.errors += 1
            log.info("NI %s: lease change: %s; syncing all leases", self.ni, e)
            self.full()
