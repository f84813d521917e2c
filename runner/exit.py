"""Leaving a short-lived command (`nirunner`, `nirunner-cni`) without the
interpreter's teardown.

Python unloads every module on exit; with grpc, protobuf and asyncio loaded that is
16-20 ms of a ~120 ms command, measured with `python -c 'import runner.api.client'`
against the same followed by os._exit. By the time a command returns its channel is
closed and its files are written, so only the standard streams hold anything."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn


def run_and_exit(main: Callable[[], int]) -> NoReturn:
    """main(), its standard streams flushed, then the process ends with its code.

    An exception (a traceback, argparse's SystemExit) takes the normal way out."""
    rc = main()
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):  # a reader that went away: the output is lost
        rc = rc or 1
    try:
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        pass
    os._exit(rc)
