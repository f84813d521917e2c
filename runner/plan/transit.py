"""Transit links: one veth pair per NI with uplink, each a /30 of the transit pool.

Slot i is the /30 at pool.network + 4*i: the device end (nr<i>) takes .1 of it,
the NI end (uplink0) .2. Allocation is stable: an NI keeps its slot as long as
it exists, a new NI takes the lowest free slot, a removed NI frees its slot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from runner.net import names
from runner.plan.errors import PlanError, TransitPoolExhausted

SLOT_SIZE = 4
_UNUSABLE = (IPv4Network("0.0.0.0/8"), IPv4Network("127.0.0.0/8"), IPv4Network("224.0.0.0/3"))


@dataclass(frozen=True)
class TransitLink:
    """The veth pair between the device netns and one NI netns."""

    slot: int
    device_if: str  # nr<slot>, in the device netns
    ni_if: str  # uplink0, in the NI netns
    device_addr: IPv4Interface  # .1/30
    ni_addr: IPv4Interface  # .2/30

    @property
    def network(self) -> IPv4Network:
        return self.device_addr.network


def check_pool(pool: IPv4Network) -> None:
    if pool.prefixlen > 30:
        raise PlanError(f"transit pool {pool} is smaller than one /30")
    for bad in _UNUSABLE:
        if pool.overlaps(bad):
            raise PlanError(f"transit pool {pool} overlaps {bad}, which cannot be routed")


def capacity(pool: IPv4Network) -> int:
    """How many transit slots the pool has (bounded by the rule priorities)."""
    return min(pool.num_addresses // SLOT_SIZE, names.MAX_SLOTS)


def link(pool: IPv4Network, slot: int) -> TransitLink:
    if not 0 <= slot < capacity(pool):
        raise PlanError(f"transit slot {slot} is outside pool {pool}")
    base = int(pool.network_address) + SLOT_SIZE * slot
    return TransitLink(
        slot=slot,
        device_if=names.transit_device_if(slot),
        ni_if=names.NI_TRANSIT_IF,
        device_addr=IPv4Interface(f"{IPv4Address(base + 1)}/30"),
        ni_addr=IPv4Interface(f"{IPv4Address(base + 2)}/30"),
    )


def allocate(
    pool: IPv4Network, ni_names: Iterable[str], previous: Mapping[str, int]
) -> dict[str, int]:
    """Slots for `ni_names` (the NIs that need a transit link), keeping `previous` ones.

    A previous slot is kept if it is still inside the pool and not claimed twice;
    NIs without one get the lowest free slots, in name order. NIs not in
    `ni_names` lose theirs. Raises TransitPoolExhausted if slots run out.
    """
    check_pool(pool)
    size = capacity(pool)
    wanted = sorted(set(ni_names))
    slots: dict[str, int] = {}
    used: set[int] = set()
    for ni in wanted:
        slot = previous.get(ni)
        if slot is not None and 0 <= slot < size and slot not in used:
            slots[ni] = slot
            used.add(slot)
    free = (s for s in range(size) if s not in used)
    starved: list[str] = []
    for ni in wanted:
        if ni in slots:
            continue
        slot = next(free, None)
        if slot is None:
            starved.append(ni)
        else:
            slots[ni] = slot
    if starved:
        raise TransitPoolExhausted(
            f"transit pool {pool} has {size} /30 slots and all are taken; "
            f"no transit link for NI {', '.join(starved)} (enlarge transitPool)"
        )
    return dict(sorted(slots.items()))
