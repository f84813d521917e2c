"""What an item is: one kernel or containerd object as a frozen value.

An item has a stable `id` ("veth:nr3"), the owner it belongs to (an NI's name,
or "" for the device), and the ids it depends on:

- `deps`: it lives in or on them (a bridge in its netns). When one of them is
  created or re-created, the item is re-created too: it went with the old one.
- `after`: only ordering (a task starts after its config files are written).

Equality of two values of the same id decides between "unchanged" and a change;
a change of a field in `RECREATE_ON` needs delete + create, any other a modify
in place. Fields declared with `compare=False` are observations (a task's PID),
never a reason for a change.

Every dependency must point at a kind of lower RANK, so sorting by rank is a
dependency order for creates and its reverse for deletes.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from dataclasses import dataclass
from typing import Any, ClassVar


class Action(enum.StrEnum):
    CREATE = "create"
    MODIFY = "modify"
    DELETE = "delete"
    RECREATE = "recreate"


SIGN = {Action.CREATE: "+", Action.MODIFY: "~", Action.DELETE: "-", Action.RECREATE: "!"}
UNCHANGED_SIGN = "="


@dataclass(frozen=True)
class Change:
    """One thing that differs, in words: `topic` groups them in NI results."""

    topic: str  # "port maps", "DHCP reservations", "resource limits", ...
    text: str  # "port map plc-web 8080 -> 8090"
    ni: str = ""  # the NI it concerns ("" = the item's owner)


@dataclass(frozen=True)
class Item:
    """The base of every item kind (see module doc)."""

    KIND: ClassVar[str] = ""
    RANK: ClassVar[int] = 0
    RECREATE_ON: ClassVar[tuple[str, ...]] = ()
    EXTERNAL: ClassVar[bool] = False  # not ours: only for ordering, never changed

    @property
    def key(self) -> str:
        raise NotImplementedError

    @functools.cached_property
    def id(self) -> str:  # cached in the instance (its fields never change): items are
        return f"{self.KIND}:{self.key}"  # keyed by it everywhere

    @functools.cached_property
    def owner(self) -> str:
        """The NI this item belongs to; "" for the device's own items."""
        return str(getattr(self, "ni", ""))

    def deps(self) -> tuple[str, ...]:
        return ()

    def after(self) -> tuple[str, ...]:
        return ()

    @property
    def inside(self) -> str | None:
        """The id of the item whose deletion takes this one with it (its netns)."""
        return None

    def describe(self) -> str:
        """How the object is named in a dry run: "netns nr-site"."""
        return f"{self.KIND} {self.key}"

    def changes(self, old: Any) -> list[Change]:
        """What differs from `old` (same id), in words; by default the fields' names."""
        return [Change(name, f"{name} changed") for name in differing(old, self)]

    def sort_key(self) -> tuple[int, bool, str, str]:
        """Dependency order; at one rank the NIs' items before the device's."""
        return (self.RANK, not self.owner, self.owner, self.id)


def differing(a: Item, b: Item) -> list[str]:
    """Names of the compared fields whose values differ between a and b."""
    if type(a) is not type(b):
        return ["kind"]
    return [f.name for f in dataclasses.fields(a)
            if f.compare and getattr(a, f.name) != getattr(b, f.name)]


def needs_recreate(old: Item, new: Item) -> bool:
    return type(old) is not type(new) or any(
        name in new.RECREATE_ON for name in differing(old, new))
