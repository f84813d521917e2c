"""Test hooks, set in the supervisor's environment; unset (always, outside tests) each
costs one comparison.

NIRUNNER_TEST_CRASH_AT=<point>:<ni>: die (SIGKILL, no clean-up) at a named point of
an apply: "netns", "links", "task" (after that item of NI <ni>) and "rules" (after
its ip rule). It lets the integration tests prove that a supervisor killed
anywhere converges when it starts again.

NIRUNNER_TEST_NETLINK_FAULT=<operation>=<errno>: the netlink call of the drivers
whose operation starts with <operation> (e.g. "add address 10.7.0.1/24") fails
with that errno, as the kernel would, to prove that any driver fault during an
apply is reported with its object and undone.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Collection

_POINT, _, _NI = os.environ.get("NIRUNNER_TEST_CRASH_AT", "").partition(":")


def crash_point(point: str, nis: str | Collection[str]) -> None:
    if _POINT and _POINT == point and (_NI == nis if isinstance(nis, str) else _NI in nis):
        os.kill(os.getpid(), signal.SIGKILL)


_FAULT_AT, _, _FAULT_CODE = os.environ.get("NIRUNNER_TEST_NETLINK_FAULT", "").rpartition("=")


def netlink_fault(what: str) -> int:
    """The errno a netlink call for `what` must fail with, or 0."""
    if _FAULT_AT and what.startswith(_FAULT_AT):
        return int(_FAULT_CODE)
    return 0
