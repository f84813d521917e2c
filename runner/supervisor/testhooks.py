"""A test hook: die (SIGKILL, no clean-up) at a named point of an apply.

Set NIRUNNER_TEST_CRASH_AT=<point>:<ni> in the supervisor's environment; the
points are "netns", "links", "task" (after that step of NI <ni>) and "rules"
(after the device's rules, once <ni> is part of the plan). It lets the
integration tests prove that a supervisor killed anywhere converges when it
starts again. Unset (always, outside tests) it costs one comparison.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Collection

_POINT, _, _NI = os.environ.get("NIRUNNER_TEST_CRASH_AT", "").partition(":")


def crash_point(point: str, nis: str | Collection[str]) -> None:
    if _POINT and _POINT == point and (_NI == nis if isinstance(nis, str) else _NI in nis):
        os.kill(os.getpid(), signal.SIGKILL)
