"""Switch NIs in the supervisor (issue 16; docs/switch-ni.md).

- Their apps for the plan: every `attach --netns` of a switch NI is a port (a
  macvlan of the segment with the app's MAC, cross-connected to the app's veth).
- What their ports learned is a fact of the plan: a lease from the segment's DHCP
  server gets a /32 route through the uplink's shim (main table and the uplink's),
  so the device and the local NIs on that uplink reach the app. The sets live in
  the NI's netns (they survive task and supervisor restarts) and are read back:
  when the facts are read (start, forced passes, uplink changes), every minute
  (expired leases lose their routes), and at once when a lease is learned (the
  nflog listener, runner.drivers.nflearn, wakes the main loop). Only the leases
  (MAC, address) are facts: their countdowns and the addresses seen in ARP change
  nothing planned.
- What status shows of them: each app with the addresses its port learned.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from runner.drivers import nflearn
from runner.errors import NirunnerError
from runner.model.types import NIType
from runner.net import names
from runner.plan.facts import Binding, Facts
from runner.plan.switch import SwitchApp, SwitchPlan, app_bindings
from runner.reconcile import kinds as k
from runner.supervisor.store import NETNS, Attachment

if TYPE_CHECKING:
    from runner.supervisor.core import Supervisor

log = logging.getLogger("nirunner.switches")

RESCAN_EVERY = 60.0  # seconds between reads of every switch NI's sets

Learned = dict[str, tuple[Binding, ...]]


def switch_apps(attachments: Iterable[Attachment]) -> dict[str, list[SwitchApp]]:
    """The apps of `attach --netns` by NI (the plan takes them for switch NIs only)."""
    out: dict[str, list[SwitchApp]] = {}
    for a in attachments:
        if a.kind == NETNS:
            out.setdefault(a.ni, []).append(SwitchApp(f"{a.ni}/{a.host_ifname}", a.mac,
                                                      a.host_ifname))
    return out


def leases(bindings: Iterable[Binding]) -> tuple[Binding, ...]:
    """What of the bindings is a fact of the plan: the leases."""
    return tuple(sorted((b for b in bindings if b.source == "dhcp"),
                        key=lambda b: (b.mac, int(b.ip))))


def _same(a: Iterable[Binding], b: Iterable[Binding]) -> bool:
    return {(x.mac, x.ip) for x in a} == {(x.mac, x.ip) for x in b}


def apps_view(sw: SwitchPlan, bindings: Sequence[Binding], attached: Mapping[str, str],
              now: float) -> list[dict[str, Any]]:
    """Status entries of a switch NI's apps (one per port, by its MAC): the address its
    port learned (a lease first, else one seen in its ARP), all of them, and when the
    lease or sighting runs out (epoch seconds). `attached`: MAC -> hostname."""
    out = []
    for key, found in app_bindings(sw, bindings).items():
        port = next(p for p in sw.ports if p.key == key)
        best = found[0] if found else None
        out.append({
            "ip": str(best.ip) if best else "", "mac": port.mac,
            "hostname": attached.get(port.mac, ""),
            "expires": int(now + best.expires_ms / 1000) if best else None,
            "source": best.source if best else "",
            "addresses": [{"ip": str(b.ip), "source": b.source,
                           "expires": int(now + b.expires_ms / 1000)} for b in found],
            "attached": port.mac in attached, "port": port.port_if or port.app_if,
        })
    return sorted(out, key=lambda x: (not x["ip"], tuple(
        int(p) for p in x["ip"].split(".")) if x["ip"] else (), x["mac"]))


class Switches:
    def __init__(self, sup: Supervisor,
                 read: Callable[[str], tuple[Binding, ...]] = nflearn.read) -> None:
        """`read`: an NI netns's learned bindings (nft); tests replace it."""
        self.sup = sup
        self.read = read
        self.learned: Learned = {}  # leases only, as the facts have them
        self._dirty: set[str] = set()
        self._lock = threading.Lock()
        self._listener: nflearn.Listener | None = None
        self._last_scan = time.monotonic()

    def names(self) -> list[str]:
        return sorted(n for n, ni in self.sup.desired.nis.items() if ni.type is NIType.SWITCH)

    def bindings(self, name: str) -> tuple[Binding, ...] | None:
        """What switch NI `name`'s ports learned, read now: () without its netns, None
        when it cannot be read (unknown, not empty)."""
        try:
            return self.read(names.netns(name))
        except (NirunnerError, OSError) as e:
            log.warning("read what NI %s learned: %s", name, e)
            return None

    # -- as facts ------------------------------------------------------------------------

    def with_learned(self, facts: Facts) -> Facts:
        """`facts` (read anew) with every switch NI's leases, read now."""
        self.learned = self._merge({n: self.bindings(n) for n in self.names()})
        self._last_scan = time.monotonic()
        return replace(facts, learned=dict(self.learned))

    def _merge(self, fresh: Mapping[str, tuple[Binding, ...] | None]) -> Learned:
        """The leases of switch NIs: fresh where read, the known ones where not."""
        out: Learned = {}
        for n in self.names():
            got = fresh.get(n)
            if n in fresh and got is not None:
                mine = leases(got)
                known = self.learned.get(n, ())
                out[n] = known if _same(known, mine) else mine  # keep the facts stable
            elif n in self.learned:
                out[n] = self.learned[n]
        return out

    def learned_in(self, ni: str) -> None:
        """From the listener's thread: NI `ni` learned a lease."""
        with self._lock:
            self._dirty.add(ni)
        self.sup.wake.set()

    def work(self) -> None:
        """From the main loop: read the sets of the NIs that learned something (all of them
        every RESCAN_EVERY), and if their leases changed, route them (the device's part)."""
        now = time.monotonic()
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        if now >= self._last_scan + RESCAN_EVERY:
            self._last_scan = now
            dirty |= set(self.names())
        if not dirty:
            return
        fresh = {n: self.bindings(n) for n in sorted(dirty)}  # no lock: nft in NI netns
        with self.sup.lock:
            new = self._merge({**{n: self.learned.get(n, ()) for n in self.names()}, **fresh})
            changed = sorted(n for n in set(new) | set(self.learned)
                             if not _same(new.get(n, ()), self.learned.get(n, ())))
            if not changed:
                return
            before, self.learned = self.learned, new
            self.sup.facts_learned(dict(new))
            run = self.sup.converge({""}, atomic=False)
            for n in changed:
                old = {(b.mac, b.ip) for b in before.get(n, ())}
                now_ = {(b.mac, b.ip) for b in new.get(n, ())}
                words = [f"{ip} leased to {mac}" for mac, ip in sorted(now_ - old)]
                words += [f"{ip} of {mac} expired" for mac, ip in sorted(old - now_)]
                routed = "routed" if run.ok else f"not routed yet: {run.first_error()}"
                self.sup.events.emit("switch.learned", n, f"{'; '.join(words)} ({routed})")

    # -- the listener ----------------------------------------------------------------------

    def follow(self) -> None:
        """Listen in every switch NI netns that exists (only in the daemon: it has a kernel
        watch); a netns listened to anew is read at once (it may have learned meanwhile)."""
        if self.sup.watcher is None:
            return
        mine = set(self.names())
        wanted = {x.ni: x.name for x in self.sup.current.values()
                  if isinstance(x, k.Netns) and x.ni in mine}
        if not wanted and self._listener is None:
            return
        if self._listener is None:
            self._listener = nflearn.Listener(self.learned_in)
        listener = self._listener
        for ni in listener.watched() - set(wanted):
            listener.unwatch(ni)
        for ni, netns in wanted.items():
            try:
                if listener.watch(ni, netns):
                    self.learned_in(ni)
            except nflearn.LearnError as e:  # its netns went meanwhile: a pass sees it
                log.debug("%s", e)

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.stop()
