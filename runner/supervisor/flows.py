"""An NI's flow log for `nirunner flows`: where it is, which records a caller wants."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from runner.errors import NirunnerError
from runner.flowlog import writer
from runner.model.types import NetworkInstance
from runner.plan.layout import Layout

Record = dict[str, Any]


def log_path(nis: Mapping[str, NetworkInstance], layout: Layout, ni: str) -> Path:
    """The NI's flow log; NirunnerError if there is no such NI or it keeps none."""
    found = nis.get(ni)
    if found is None:
        raise NirunnerError(f"no such NI: {ni}")
    if not found.flow_log.enabled:
        raise NirunnerError(f"NI {ni} keeps no flow log (spec.flowLog: false)")
    return layout.flow_log_path(ni)


def records(path: Path, app: str = "", last: int = 0, follow: bool = False,
            stop: Callable[[], bool] = lambda: False) -> Iterator[Record]:
    """The records kept (the last `last` of them, if given), then with `follow` the new
    ones until `stop()`; only those of app `app` if given."""
    def mine(r: Record) -> bool:
        return not app or r.get("app") == app

    def kept() -> Iterator[Record]:
        found: Iterator[Record] = (r for r in writer.read(path) if mine(r))
        return iter(collections.deque(found, maxlen=last)) if last else found

    if not follow:
        yield from kept()
        return
    tail = writer.Tail(path)  # from the end as it is now, before the kept ones are read:
    yield from kept()         # a record written meanwhile may come twice, none is lost
    yield from (r for r in tail.records(stop) if mine(r))
