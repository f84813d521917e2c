"""Netlink messages as bytes (pure): the header, attributes and answers, for the code that
speaks netlink on plain sockets (rtnl, nfnl, the kernel watcher, the flow log)."""

from __future__ import annotations

import struct
from collections.abc import Iterator

HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_ATTR = struct.Struct("=HH")  # nlattr / rtattr: length, type
NLMSG_ERROR = 2
NLA_F_NESTED, NLA_F_NET_BYTEORDER = 0x8000, 0x4000
NLA_TYPE_MASK = 0x3FFF


def attr(kind: int, value: bytes) -> bytes:
    """An attribute, padded to 4 bytes."""
    return _ATTR.pack(_ATTR.size + len(value), kind) + value + b"\0" * (-len(value) % 4)


def attrs(buf: bytes, start: int = 0, end: int | None = None) -> dict[int, bytes]:
    """The attributes in buf[start:end], by type without its flags (the last of a type wins)."""
    end = len(buf) if end is None else end
    out: dict[int, bytes] = {}
    pos = start
    while pos + _ATTR.size <= end:
        length, kind = _ATTR.unpack_from(buf, pos)
        if length < _ATTR.size:
            break
        out[kind & NLA_TYPE_MASK] = buf[pos + _ATTR.size:pos + length]
        pos += (length + 3) & ~3
    return out


def message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return HEADER.pack(HEADER.size + len(body), kind, flags, seq, 0) + body


def frames(buf: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, sequence number, payload) of each message in a datagram."""
    pos = 0
    while pos + HEADER.size <= len(buf):
        length, kind, flags, seq, _port = HEADER.unpack_from(buf, pos)
        if length < HEADER.size:
            return
        yield kind, flags, seq, buf[pos + HEADER.size:pos + length]
        pos += (length + 3) & ~3


def ack_error(kind: int, payload: bytes) -> int | None:
    """The errno of an NLMSG_ERROR (0 for an ACK); None for other messages."""
    if kind != NLMSG_ERROR or len(payload) < 4:
        return None
    return -int(struct.unpack_from("=i", payload)[0])
