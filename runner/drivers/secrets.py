"""Reading VPN credential files safely: never blocking, never following links, only
small regular files that only root can change, below secretsDir when one is set.

A manifest names files on the device; the supervisor reads them on its passes
(while it holds the API lock), so a file that blocks (a FIFO, a device) or that
is not what it claims (a link to /etc/shadow, /proc/self/environ) must be
refused before a byte is read. Errors say which rule failed and never the
content. `stamp` tells without reading whether a file changed since it was read.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from runner.errors import NirunnerError

DEFAULT_LIMIT = 64 << 10  # bytes; a PSK, a PEM key or certificate are far smaller
# Pseudo filesystems whose files look regular but are made on read (their stat size
# is 0 or a page): /proc/self/environ would hand over the supervisor's environment.
_PSEUDO_ROOTS = ("/proc", "/sys")
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"))


class SecretError(NirunnerError):
    """A credential file broke a rule; the message names the file and the rule."""


@dataclass(frozen=True)
class Stamp:
    """What identifies one version of a file, from lstat (never opens it)."""

    device: int
    inode: int
    mtime_ns: int
    size: int


def stamp(path: str) -> Stamp:
    """The file's identity and version now; SecretError if it cannot be stat'ed."""
    try:
        st = os.lstat(path)
    except OSError as e:
        raise SecretError(f"{path}: {e.strerror or e}") from None
    return Stamp(st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def read_secret(path: str, secrets_dir: str | None, limit: int = DEFAULT_LIMIT) -> bytes:
    """The bytes of credential file `path`, if it passes every rule:

    an absolute path below `secrets_dir` (when set, links in the directories
    resolved), not a symbolic link itself, a regular file (no FIFO, device,
    directory or socket) on a real filesystem (not /proc or /sys), owned by root
    (or by the user we run as) and not writable by group or others, at most
    `limit` bytes. Opened with O_NOFOLLOW | O_NONBLOCK, so nothing here blocks.
    """
    if not os.path.isabs(path):
        raise SecretError(f"{path}: must be an absolute path")
    if secrets_dir:
        _check_below(path, secrets_dir)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SecretError(f"{path}: is a symbolic link; name the file itself") from None
        raise SecretError(f"{path}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        _check_file(path, st, limit)
        data = _read_all(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) != st.st_size:
        raise SecretError(f"{path}: changed while it was read, or is not a plain file "
                          f"(stat says {st.st_size} bytes, reading gave {len(data)})")
    return data


def _check_below(path: str, secrets_dir: str) -> None:
    base = os.path.realpath(secrets_dir)
    where = os.path.realpath(os.path.dirname(path))  # links in the directories resolved
    if where != base and os.path.commonpath([where, base]) != base:
        raise SecretError(f"{path}: is outside the secrets directory {secrets_dir}")


def _check_file(path: str, st: os.stat_result, limit: int) -> None:
    for test, kind in _KINDS:
        if test(st.st_mode):
            raise SecretError(f"{path}: is {kind}, not a regular file")
    if not stat.S_ISREG(st.st_mode):
        raise SecretError(f"{path}: is not a regular file")
    for root in _PSEUDO_ROOTS:
        try:
            if os.stat(root).st_dev == st.st_dev:
                raise SecretError(f"{path}: is on {root}, a pseudo filesystem; "
                                  f"use a file on disk")
        except FileNotFoundError:
            continue
    if st.st_uid not in (0, os.geteuid()):
        raise SecretError(f"{path}: is owned by uid {st.st_uid}; it must be owned by root")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SecretError(f"{path}: is writable by group or others (mode "
                          f"{stat.S_IMODE(st.st_mode):04o}); chmod go-w it")
    if st.st_size > limit:
        raise SecretError(f"{path}: is larger than {limit} bytes ({st.st_size} bytes)")


def _read_all(fd: int, most: int) -> bytes:
    chunks: list[bytes] = []
    left = most
    while left > 0:
        chunk = os.read(fd, left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
