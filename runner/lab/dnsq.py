"""A minimal DNS A-record lookup over UDP (or TCP), for lab checks from inside a netns.

    python -m runner.lab.dnsq SERVER NAME [--tcp]   # prints the addresses, exit 1 if none
"""

from __future__ import annotations

import random
import socket
import struct
import sys


def query(server: str, name: str, timeout: float = 2.0, tcp: bool = False) -> list[str]:
    """Ask `server` for the A records of `name`; [] on NXDOMAIN or no answer."""
    qid = random.randrange(1 << 16)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    packet = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack(
        "!HH", 1, 1)
    if tcp:
        data = _over_tcp(server, packet, timeout)
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(packet, (server, 53))
            data, _ = s.recvfrom(4096)
    rid, flags, qd, an, _, _ = struct.unpack("!HHHHHH", data[:12])
    if rid != qid or flags & 0x000F:
        return []
    pos = 12
    for _ in range(qd):
        pos = _skip_name(data, pos) + 4
    out = []
    for _ in range(an):
        pos = _skip_name(data, pos)
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", data[pos:pos + 10])
        pos += 10
        if rtype == 1 and rdlen == 4:
            out.append(socket.inet_ntoa(data[pos:pos + 4]))
        pos += rdlen
    return out


def _over_tcp(server: str, packet: bytes, timeout: float) -> bytes:
    """RFC 1035 4.2.2: each message prefixed with its length."""
    with socket.create_connection((server, 53), timeout=timeout) as s:
        s.sendall(struct.pack("!H", len(packet)) + packet)
        data = b""
        while len(data) < 2 or len(data) < 2 + struct.unpack("!H", data[:2])[0]:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data[2:]


def _skip_name(data: bytes, pos: int) -> int:
    while True:
        n = data[pos]
        if n == 0:
            return pos + 1
        if n & 0xC0 == 0xC0:
            return pos + 2
        pos += n + 1


if __name__ == "__main__":
    addrs = query(sys.argv[1], sys.argv[2], tcp="--tcp" in sys.argv[3:])
    print("\n".join(addrs))
    sys.exit(0 if addrs else 1)
