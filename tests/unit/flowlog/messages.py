"""Netlink messages built by hand for the flow log's tests (as the kernel would send them)."""

from __future__ import annotations

import socket
import struct

from runner.flowlog import netlink as nl


def attr(kind: int, data: bytes, nested: bool = False) -> bytes:
    return nl.attr(kind | (0x8000 if nested else 0), data)


def tuple_(proto: int, src: str, dst: str, sport: int, dport: int) -> bytes:
    ip = attr(nl.CTA_IP_V4_SRC, socket.inet_aton(src)) + attr(nl.CTA_IP_V4_DST,
                                                             socket.inet_aton(dst))
    pr = attr(nl.CTA_PROTO_NUM, bytes([proto]))
    if proto == 1:
        pr += attr(nl.CTA_PROTO_ICMP_TYPE, bytes([sport])) + attr(nl.CTA_PROTO_ICMP_CODE,
                                                                  bytes([dport]))
    else:
        pr += attr(nl.CTA_PROTO_SRC_PORT, struct.pack("!H", sport))
        pr += attr(nl.CTA_PROTO_DST_PORT, struct.pack("!H", dport))
    return attr(nl.CTA_TUPLE_IP, ip, True) + attr(nl.CTA_TUPLE_PROTO, pr, True)


def counters(packets: int, nbytes: int) -> bytes:
    return attr(nl.CTA_COUNTERS_PACKETS, struct.pack("!Q", packets)) + attr(
        nl.CTA_COUNTERS_BYTES, struct.pack("!Q", nbytes))


def ct_event(orig: bytes, reply: bytes, end: bool = True, mark: int = 0,
             co: tuple[int, int] = (10, 1000), cr: tuple[int, int] = (8, 4000),
             start: int = 1_700_000_000_000_000_000,
             stop: int = 1_700_000_002_500_000_000, ident: int = 42) -> bytes:
    body = attr(nl.CTA_TUPLE_ORIG, orig, True) + attr(nl.CTA_TUPLE_REPLY, reply, True)
    body += attr(nl.CTA_ID, struct.pack("!I", ident)) + attr(nl.CTA_MARK, struct.pack("!I", mark))
    if end:
        body += attr(nl.CTA_COUNTERS_ORIG, counters(*co), True)
        body += attr(nl.CTA_COUNTERS_REPLY, counters(*cr), True)
        body += attr(nl.CTA_TIMESTAMP, attr(nl.CTA_TIMESTAMP_START, struct.pack("!Q", start))
                     + attr(nl.CTA_TIMESTAMP_STOP, struct.pack("!Q", stop)), True)
    kind = nl.NFNL_SUBSYS_CTNETLINK << 8 | (nl.IPCTNL_MSG_CT_DELETE if end else
                                            nl.IPCTNL_MSG_CT_NEW)
    return nl._message(kind, 0, socket.AF_INET, 0, body, 0)


def ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                       socket.inet_aton(src), socket.inet_aton(dst)) + udp


def log_packet(prefix: str, payload: bytes, ethertype: int = 0x0800, family: int = 2,
               mac: str = "02:00:00:00:00:66", when: float = 1_700_000_000.5) -> bytes:
    hw = struct.pack("!HH", 6, 0) + bytes(int(b, 16) for b in mac.split(":")) + b"\0\0"
    body = attr(nl.NFULA_PACKET_HDR, struct.pack("!HBB", ethertype, 0, 0))
    body += attr(nl.NFULA_TIMESTAMP, struct.pack("!QQ", int(when), int(when % 1 * 1e6)))
    body += attr(nl.NFULA_IFINDEX_PHYSINDEV, struct.pack("!I", 7))
    body += attr(nl.NFULA_HWADDR, hw) + attr(nl.NFULA_PAYLOAD, payload)
    body += attr(nl.NFULA_PREFIX, prefix.encode() + b"\0")
    return nl._message(nl.NFNL_SUBSYS_ULOG << 8 | nl.NFULNL_MSG_PACKET, 0, family, 7, body, 0)


def dns_reply(name: str, addresses: list[str], ttl: int, qid: int = 7,
              cname: str | None = None) -> bytes:
    def qname(n: str) -> bytes:
        return b"".join(bytes([len(p)]) + p.encode() for p in n.split(".")) + b"\0"

    answers = b""
    count = 0
    owner = b"\xc0\x0c"  # a pointer to the question's name
    if cname:
        answers += owner + struct.pack("!HHIH", 5, 1, ttl, len(qname(cname))) + qname(cname)
        owner = qname(cname)
        count += 1
    for a in addresses:
        answers += owner + struct.pack("!HHIH", 1, 1, ttl, 4) + socket.inet_aton(a)
        count += 1
    return (struct.pack("!HHHHHH", qid, 0x8180, 1, count, 0, 0) + qname(name)
            + struct.pack("!HH", 1, 1) + answers)
