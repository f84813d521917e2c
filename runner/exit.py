"""Leaving a short-lived command (`nirunner`, `nirunner-cni`) without the
interpreter's teardown.

Python unloads every module on exit; with grpc, protobuf and asyncio loaded that is
16-20 ms of a ~120 ms command, measured with `python -c 'import runner.api.client'`
against the same followed by os._exit. By the time a command returns its channel is
closed and its files are written, so only the standard streams hold anything. Not for
the supervisor (`nirunner supervise`): a daemon leaves the normal way, its threads and
exit hooks run to their end."""

from __future__ import annotations

import os
import sys
from typing import NoReturn


def exit_now(rc: int) -> NoReturn:
    """The standard streams flushed, the process ends with code rc (a command's main()
    has returned it: an exception, argparse's SystemExit included, never gets here)."""
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):  # a reader that went away: the output is lost
        rc = rc or 1
    try:
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        pass
    os._exit(rc)
