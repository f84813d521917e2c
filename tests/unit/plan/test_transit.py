from __future__ import annotations

from ipaddress import IPv4Interface, IPv4Network

import pytest

from runner.plan import transit
from runner.plan.errors import PlanError, TransitPoolExhausted

POOL = IPv4Network("169.254.100.0/22")


def test_fresh_allocation_in_name_order() -> None:
    assert transit.allocate(POOL, ["c", "a", "b"], {}) == {"a": 0, "b": 1, "c": 2}


def test_adding_and_removing_keep_the_others_slots() -> None:
    first = transit.allocate(POOL, ["a", "b", "c"], {})
    removed = transit.allocate(POOL, ["a", "c"], first)
    assert removed == {"a": 0, "c": 2}
    added = transit.allocate(POOL, ["a", "c", "d", "e"], removed)
    assert added == {"a": 0, "c": 2, "d": 1, "e": 3}  # lowest free slots first
    assert transit.allocate(POOL, ["e", "d", "c", "a"], added) == added


def test_previous_slots_are_kept_even_if_high() -> None:
    assert transit.allocate(POOL, ["a", "z"], {"z": 200}) == {"a": 0, "z": 200}


def test_invalid_or_duplicate_previous_slots_are_reallocated() -> None:
    got = transit.allocate(POOL, ["a", "b", "c"], {"a": 3, "b": 3, "c": 256})
    assert got == {"a": 3, "b": 0, "c": 1}


def test_exhaustion_names_the_starved_nis() -> None:
    small = IPv4Network("169.254.100.0/29")  # two /30 slots
    assert transit.allocate(small, ["a", "b"], {}) == {"a": 0, "b": 1}
    with pytest.raises(TransitPoolExhausted, match=r"2 /30 slots.*NI c, d"):
        transit.allocate(small, ["a", "b", "c", "d"], {"a": 0, "b": 1})


def test_link_addresses() -> None:
    link = transit.link(POOL, 0)
    assert (link.device_if, link.ni_if) == ("nr0", "uplink0")
    assert link.device_addr == IPv4Interface("169.254.100.1/30")
    assert link.ni_addr == IPv4Interface("169.254.100.2/30")
    last = transit.link(POOL, 255)
    assert last.device_addr == IPv4Interface("169.254.103.253/30")
    assert last.network == IPv4Network("169.254.103.252/30")
    with pytest.raises(PlanError):
        transit.link(POOL, 256)


@pytest.mark.parametrize("bad", ["127.0.0.0/22", "0.0.0.0/22", "169.254.100.0/31",
                                 "224.0.0.0/22"])
def test_unusable_pools_are_refused(bad: str) -> None:
    with pytest.raises(PlanError):
        transit.allocate(IPv4Network(bad), ["a"], {})


def test_capacity_is_bounded_by_rule_priorities() -> None:
    assert transit.capacity(POOL) == 256
    assert transit.capacity(IPv4Network("10.0.0.0/8")) == 31000
