"""Reads of a batch share their kernel dumps (per thread, only while a batch is open).

Reading back every item (a forced pass, a supervisor's start) would otherwise ask the
kernel once per item: 100 transit links read one by one cost a netlink socket and
three requests each, where one dump of the device's links answers them all. Outside a
batch nothing is kept: a configurator that changes something reads fresh.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
_local = threading.local()


@contextlib.contextmanager
def batch() -> Iterator[None]:
    """While open, `cached` keeps what it reads, and the threads that entered a netns
    stay there for the next reads (nested batches share the outer one)."""
    if getattr(_local, "cache", None) is not None:
        yield
        return
    _local.cache = {}
    _local.residents = {}
    try:
        yield
    finally:
        for resident in _local.residents.values():
            resident.stop()
        _local.cache = None
        _local.residents = None


def active() -> bool:
    """Whether the calling thread is in a batch."""
    return getattr(_local, "cache", None) is not None


def residents() -> dict[str, Any] | None:
    """The batch's threads in other netns, by netns path (runner.drivers.netns.run_in)."""
    return getattr(_local, "residents", None)


def cached(key: Hashable, read: Callable[[], T]) -> T:
    cache: dict[Hashable, Any] | None = getattr(_local, "cache", None)
    if cache is None:
        return read()
    if key not in cache:
        cache[key] = read()
    return cache[key]  # type: ignore[no-any-return]
