"""DNS replies as values: the question and the A/AAAA/CNAME answers with their TTLs (pure)."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

TYPES = {1: "A", 5: "CNAME", 28: "AAAA"}
RCODES = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}


class DnsError(ValueError):
    pass


@dataclass(frozen=True)
class Answer:
    name: str
    type: str
    ttl: int
    data: str  # an address, or the CNAME's target


@dataclass(frozen=True)
class Reply:
    id: int
    query: str
    qtype: str
    rcode: str
    answers: tuple[Answer, ...]

    def addresses(self) -> list[str]:
        return [a.data for a in self.answers if a.type == "A"]

    def ttl(self) -> int:
        """The shortest TTL of the answer's A records (how long a client may use them)."""
        return min((a.ttl for a in self.answers if a.type == "A"), default=0)


def _name(data: bytes, pos: int) -> tuple[str, int]:
    """The (possibly compressed) name at pos, and the position after it."""
    labels: list[str] = []
    end = None
    for _ in range(128):  # a pointer loop ends here
        if pos >= len(data):
            raise DnsError("name runs past the message")
        n = data[pos]
        if n == 0:
            return ".".join(labels).lower(), end if end is not None else pos + 1
        if n & 0xC0 == 0xC0:
            if pos + 1 >= len(data):
                raise DnsError("truncated name pointer")
            if end is None:
                end = pos + 2
            pos = (n & 0x3F) << 8 | data[pos + 1]
            continue
        labels.append(data[pos + 1:pos + 1 + n].decode("ascii", errors="replace"))
        pos += n + 1
    raise DnsError("name pointers loop")


def parse_reply(data: bytes) -> Reply:
    """A DNS reply message (UDP payload); DnsError if it is not one or is cut short."""
    if len(data) < 12:
        raise DnsError("shorter than a DNS header")
    qid, flags, qd, an, _, _ = struct.unpack_from("!HHHHHH", data)
    if not flags & 0x8000:
        raise DnsError("a query, not a reply")
    if qd != 1:
        raise DnsError(f"{qd} questions")
    query, pos = _name(data, 12)
    if pos + 4 > len(data):
        raise DnsError("question cut short")
    qtype = struct.unpack_from("!H", data, pos)[0]
    pos += 4
    answers = []
    for _ in range(an):
        name, pos = _name(data, pos)
        if pos + 10 > len(data):
            raise DnsError("answer cut short")
        rtype, _cls, ttl, rdlen = struct.unpack_from("!HHIH", data, pos)
        pos += 10
        rdata = data[pos:pos + rdlen]
        if len(rdata) < rdlen:
            raise DnsError("answer data cut short")
        if rtype == 1 and rdlen == 4:
            answers.append(Answer(name, "A", ttl, socket.inet_ntoa(rdata)))
        elif rtype == 28 and rdlen == 16:
            answers.append(Answer(name, "AAAA", ttl, socket.inet_ntop(socket.AF_INET6, rdata)))
        elif rtype == 5:
            answers.append(Answer(name, "CNAME", ttl, _name(data, pos)[0]))
        pos += rdlen
    rcode = flags & 0xF
    return Reply(qid, query, TYPES.get(qtype, str(qtype)), RCODES.get(rcode, str(rcode)),
                 tuple(answers))


def under(name: str, host: str) -> bool:
    """True if `name` is `host` or a name under it (dnsmasq's nftset=/host/ matching)."""
    return name == host or name.endswith("." + host)
