"""glibc's allocator, kept small for a long-running daemon with many short threads.

libnftables runs in the threads that entered each netns (runner.drivers.libnft; a burst
of ops makes more of them than are kept), and glibc gives threads malloc arenas of
their own (up to 8 per core), each keeping what it once held: with 100 NIs applied,
30 MB of the supervisor's 113 MB resident were such arenas. Two arenas and a trim
after each burst of the engine (runner.supervisor.core.TRIM_AFTER): 82 MB.
No effect where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_ARENA_MAX = -8
ARENAS = 2

_libc: ctypes.CDLL | None = None


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            lib.mallopt.argtypes, lib.malloc_trim.argtypes = [ctypes.c_int, ctypes.c_int], \
                [ctypes.c_size_t]
        except (OSError, AttributeError):  # not glibc
            return None
        _libc = lib
    return _libc


def limit_arenas() -> None:
    """Call before the daemon starts its threads."""
    lib = _glibc()
    if lib is not None:
        lib.mallopt(M_ARENA_MAX, ARENAS)


def trim() -> None:
    """Give freed memory back to the system (after a burst of work)."""
    lib = _glibc()
    if lib is not None:
        lib.malloc_trim(0)
