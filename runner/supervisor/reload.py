"""Live reload of the supervisor config (SIGHUP, `nirunner reload`).

`changes(old, new)` is pure: what differs, in words, or why the new config cannot
be taken live. `reload(sup, new)` takes it: the NIs in force are checked against
it and planned with it before anything changes (a refusal leaves the old config
in force); then uplinks, resolvers and the task policy follow, a pass applies
what differs, and a new image or seccomp mode is rolled out NI by NI (roll.py),
never by re-creating every task at once.

Taken live: uplinks added, removed (when no NI uses them) or re-pointed to
another interface, resolvConf, ipsecBackend, image, taskSeccomp. Refused with
the reason: containerd, stateDir, apiSocket, transitPool (every NI's transit
link would move), source and metrics (restart the supervisor for those).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from runner.errors import NirunnerError
from runner.model.errors import ModelError
from runner.model.manifest import Located, validate_set
from runner.model.types import SupervisorConfig, TaskSeccomp
from runner.plan import site
from runner.plan.errors import PlanError

if TYPE_CHECKING:
    from runner.supervisor.core import Supervisor

log = logging.getLogger("nirunner.reload")

# config fields that need a restart, and why
_FIXED = (
    ("containerd_address", "containerd.address", "the tasks live in that containerd"),
    ("containerd_namespace", "containerd.namespace", "the tasks live in that namespace"),
    ("state_dir", "stateDir", "it holds the desired state and every NI's files"),
    ("api_socket", "apiSocket", "clients are connected to it"),
    ("transit_pool", "transitPool", "every NI's transit link would move to new addresses"),
    ("source", "source", "the desired state would come from elsewhere"),
    ("metrics", "metrics", "the endpoint is opened at start"),
)


class ReloadRefused(NirunnerError):
    """The new config cannot be taken; the old one stays in force."""


@dataclass(frozen=True)
class Changes:
    lines: tuple[str, ...]  # what differs, in words
    refused: tuple[str, ...]  # why it cannot be taken live (empty: it can)
    image: bool = False  # the NI image changed: a roll follows
    seccomp: bool = False  # taskSeccomp changed: a roll follows

    def __bool__(self) -> bool:
        return bool(self.lines)


def changes(old: SupervisorConfig, new: SupervisorConfig) -> Changes:
    """What differs between two configs, and what of it needs a restart (pure)."""
    lines: list[str] = []
    refused: list[str] = []
    for attr, key, why in _FIXED:
        a, b = getattr(old, attr), getattr(new, attr)
        if a != b:
            refused.append(f"{key} changed ({_show(a)} -> {_show(b)}): not taken live, "
                           f"{why}; restart the supervisor to change it")
    before = {u.name: u.interface for u in old.uplinks}
    after = {u.name: u.interface for u in new.uplinks}
    for name, ifname in after.items():
        if name not in before:
            lines.append(f"uplink {name} added ({ifname})")
        elif before[name] != ifname:
            lines.append(f"uplink {name} re-pointed: {before[name]} -> {ifname}")
    lines += [f"uplink {name} removed ({ifname})" for name, ifname in before.items()
              if name not in after]
    if [u.name for u in old.uplinks] != [u.name for u in new.uplinks] and \
            set(before) == set(after):
        lines.append("uplinks reordered")
    for attr, key in (("resolv_conf", "resolvConf"), ("ipsec_backend", "ipsecBackend"),
                      ("image", "image"), ("task_seccomp", "taskSeccomp")):
        a, b = getattr(old, attr), getattr(new, attr)
        if a != b:
            lines.append(f"{key}: {_show(a)} -> {_show(b)}")
    return Changes(tuple(lines), tuple(refused), old.image != new.image,
                   old.task_seccomp != new.task_seccomp)


def _show(v: object) -> str:
    return "(none)" if v is None else str(v)


def check(sup: Supervisor, new: SupervisorConfig) -> Changes:
    """Whether `new` can be taken now (call with the lock held): ReloadRefused if not."""
    ch = changes(sup.config, new)
    refused = list(ch.refused)
    used = {ni.uplink: n for n, ni in sorted(sup.desired.nis.items()) if ni.uplink}
    names = {u.name for u in new.uplinks}
    for uplink, _ in sorted(used.items()):
        if uplink not in names:
            nis = sorted(n for n, ni in sup.desired.nis.items() if ni.uplink == uplink)
            refused.append(f"uplink {uplink} is removed but NI {', '.join(nis)} use"
                           f"{'s' if len(nis) == 1 else ''} it: delete or move "
                           f"{'it' if len(nis) == 1 else 'them'} first")
    if refused:
        raise ReloadRefused("reload refused, the old config stays: " + "; ".join(refused))
    try:
        validate_set([Located(ni) for ni in sup.desired.nis.values()], new)
        if new.task_seccomp is not TaskSeccomp.OFF:
            from runner.containerd import seccomp

            seccomp.for_task(new.task_seccomp)
        facts = sup.read_facts_of(new)
        site.build(new, facts, list(sup.desired.nis.values()), sup.desired.slots)
    except (ModelError, PlanError, NirunnerError) as e:
        raise ReloadRefused(f"reload refused, the old config stays: {e}") from None
    return ch


def reload(sup: Supervisor, new: SupervisorConfig) -> Changes:
    """Take `new` live, or raise ReloadRefused (nothing changed then). A changed image
    or seccomp mode is not applied here: the caller rolls the NIs to it."""
    t0 = time.monotonic()
    from runner.supervisor.core import task_policy

    with sup.lock:
        try:
            ch = check(sup, new)
        except ReloadRefused as e:
            sup.events.emit("config.refused", "", str(e), logging.ERROR)
            raise
        if not ch:
            sup.events.emit("config.reloaded", "", "no changes")
            return ch
        from runner.supervisor import roll

        policy = task_policy(new)
        sup.task_policy = roll.pin(sup, policy) if (ch.image or ch.seccomp) else \
            replace(policy, pinned=sup.task_policy.pinned)
        sup.config = new
        sup.config_changed()
        sup.events.emit("config.reloaded", "", "; ".join(ch.lines))
        sup.reconcile()
    sup.on_pass("reload", time.monotonic() - t0)
    return ch


class Reloader:
    """SIGHUP and the Reload call: read the config file again and take it; a new image
    or seccomp mode is then rolled out in the background by `roller`."""

    def __init__(self, sup: Supervisor, path: str | None, roller: Any) -> None:
        self.sup = sup
        self.path = path
        self.roller = roller
        self._lock = threading.Lock()

    def reload(self) -> tuple[Changes, list[str]]:
        """(the changes, the NIs being rolled); ReloadRefused or ConfigError: nothing
        changed."""
        from runner.model.config import load_config

        if self.path is None:
            raise ReloadRefused("this supervisor was started without a config file")
        with self._lock:
            try:
                new = load_config(self.path)
            except ModelError as e:
                self.sup.events.emit("config.refused", "", f"reload refused, the old "
                                     f"config stays: {e}", logging.ERROR)
                raise
            ch = reload(self.sup, new)
            rolling = self.roller.pending() if (ch.image or ch.seccomp) else []
            if rolling:
                self.roller.start("config reloaded")
            return ch, rolling
