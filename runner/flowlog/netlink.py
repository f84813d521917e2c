"""NETLINK_NETFILTER messages as values: conntrack events and nflog packets (pure decoding).

Only what the flow log reads is decoded, with `struct` on the raw bytes: at a
thousand flows a second a general netlink library's parser costs more CPU than
everything else the collector does.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from runner.drivers.nlmsg import (  # noqa: F401 - ack_error, attrs: this module's API too
    NLA_F_NESTED,
    NLMSG_ERROR,
    ack_error,
    attr,
    attrs,
    frames,
    message,
)

NETLINK_NETFILTER = 12
NLMSG_DONE = 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NFNL_SUBSYS_CTNETLINK, NFNL_SUBSYS_ULOG = 1, 4
IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE = 0, 1, 2
NFULNL_MSG_PACKET, NFULNL_MSG_CONFIG = 0, 1
NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_DESTROY = 1, 3

_NFGEN = struct.Struct("!BBH")  # nfgenmsg: family, version, res_id (big endian)

# conntrack attributes (linux/netfilter/nfnetlink_conntrack.h)
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_STATUS, CTA_MARK = 1, 2, 3, 8
CTA_COUNTERS_ORIG, CTA_COUNTERS_REPLY, CTA_ID, CTA_TIMESTAMP = 9, 10, 12, 20
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST = 1, 2
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMP_CODE = 5, 6
CTA_COUNTERS_PACKETS, CTA_COUNTERS_BYTES = 1, 2
CTA_TIMESTAMP_START, CTA_TIMESTAMP_STOP = 1, 2

# nflog attributes (linux/netfilter/nfnetlink_log.h)
NFULA_PACKET_HDR, NFULA_TIMESTAMP, NFULA_IFINDEX_INDEV = 1, 3, 4
NFULA_IFINDEX_PHYSINDEV, NFULA_HWADDR, NFULA_PAYLOAD, NFULA_PREFIX = 6, 8, 9, 10
NFULA_CFG_CMD, NFULA_CFG_MODE = 1, 2
NFULNL_CFG_CMD_BIND = 1
NFULNL_COPY_PACKET = 2

PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}


def messages(buf: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(type, flags, payload) of each netlink message in a datagram."""
    return ((kind, flags, payload) for kind, flags, _seq, payload in frames(buf))


def _u16(b: bytes) -> int:
    return int.from_bytes(b[:2], "big")


def _u32(b: bytes) -> int:
    return int.from_bytes(b[:4], "big")


def _u64(b: bytes) -> int:
    return int.from_bytes(b[:8], "big")


@dataclass(frozen=True)
class Tuple:
    proto: str
    src: str
    dst: str
    sport: int  # the ICMP type for ICMP
    dport: int  # the ICMP code for ICMP


def _tuple(b: bytes) -> Tuple | None:
    t = attrs(b)
    ip = attrs(t.get(CTA_TUPLE_IP, b""))
    pr = attrs(t.get(CTA_TUPLE_PROTO, b""))
    if CTA_IP_V4_SRC not in ip or CTA_PROTO_NUM not in pr:
        return None  # IPv6 or something else: the NI is IPv4
    num = pr[CTA_PROTO_NUM][0]
    if num == 1:
        sport, dport = pr.get(CTA_PROTO_ICMP_TYPE, b"\0")[0], pr.get(CTA_PROTO_ICMP_CODE, b"\0")[0]
    else:
        sport = _u16(pr.get(CTA_PROTO_SRC_PORT, b"\0\0"))
        dport = _u16(pr.get(CTA_PROTO_DST_PORT, b"\0\0"))
    return Tuple(PROTOCOLS.get(num, str(num)), socket.inet_ntoa(ip[CTA_IP_V4_SRC]),
                 socket.inet_ntoa(ip[CTA_IP_V4_DST]), sport, dport)


def _counters(b: bytes | None) -> tuple[int, int]:
    if b is None:
        return 0, 0
    c = attrs(b)
    return _u64(c.get(CTA_COUNTERS_PACKETS, bytes(8))), _u64(c.get(CTA_COUNTERS_BYTES, bytes(8)))


@dataclass(frozen=True)
class CtEvent:
    """A conntrack event: a new flow or one that ended (with counters and timestamps)."""

    end: bool
    id: int
    orig: Tuple
    reply: Tuple
    mark: int
    packets_orig: int = 0
    bytes_orig: int = 0
    packets_reply: int = 0
    bytes_reply: int = 0
    start_ns: int = 0  # wall clock, ns; 0 without net.netfilter.nf_conntrack_timestamp
    stop_ns: int = 0


def ct_event(kind: int, payload: bytes) -> CtEvent | None:
    """Decode a conntrack event message (NEW or DELETE); None for anything else."""
    if kind >> 8 != NFNL_SUBSYS_CTNETLINK or kind & 0xFF not in (IPCTNL_MSG_CT_NEW,
                                                                   IPCTNL_MSG_CT_DELETE):
        return None
    a = attrs(payload, _NFGEN.size)
    orig, reply = _tuple(a.get(CTA_TUPLE_ORIG, b"")), _tuple(a.get(CTA_TUPLE_REPLY, b""))
    if orig is None or reply is None:
        return None
    po, bo = _counters(a.get(CTA_COUNTERS_ORIG))
    pr, br = _counters(a.get(CTA_COUNTERS_REPLY))
    ts = attrs(a.get(CTA_TIMESTAMP, b""))
    return CtEvent(
        end=kind & 0xFF == IPCTNL_MSG_CT_DELETE, id=_u32(a.get(CTA_ID, bytes(4))),
        orig=orig, reply=reply, mark=_u32(a.get(CTA_MARK, bytes(4))),
        packets_orig=po, bytes_orig=bo, packets_reply=pr, bytes_reply=br,
        start_ns=_u64(ts.get(CTA_TIMESTAMP_START, bytes(8))),
        stop_ns=_u64(ts.get(CTA_TIMESTAMP_STOP, bytes(8))))


@dataclass(frozen=True)
class LogPacket:
    """A packet nflog copied to us: why (the rule's prefix), from where, and its bytes."""

    prefix: str
    family: int  # of the hook: AF_INET(2), AF_BRIDGE(7), ...
    ethertype: int
    hwaddr: str  # source MAC, "" when the device has none
    ifindex: int  # the input port: the bridge port for bridged frames
    time: float  # the packet's timestamp, or 0.0
    payload: bytes  # from the network header on


def log_packet(kind: int, payload: bytes) -> LogPacket | None:
    if kind != (NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_PACKET):
        return None
    family = payload[0] if payload else 0
    a = attrs(payload, _NFGEN.size)
    hdr = a.get(NFULA_PACKET_HDR, b"\0\0")
    hw = a.get(NFULA_HWADDR, b"")
    mac = ""
    if len(hw) >= 4 + 6 and _u16(hw) == 6:
        mac = ":".join(f"{x:02x}" for x in hw[4:10])
    ts = a.get(NFULA_TIMESTAMP)
    when = _u64(ts) + _u64(ts[8:]) / 1e6 if ts and len(ts) >= 16 else 0.0
    ifindex = _u32(a.get(NFULA_IFINDEX_PHYSINDEV) or a.get(NFULA_IFINDEX_INDEV) or bytes(4))
    return LogPacket(prefix=a.get(NFULA_PREFIX, b"").rstrip(b"\0").decode(errors="replace"),
                     family=family, ethertype=_u16(hdr), hwaddr=mac, ifindex=ifindex,
                     time=when, payload=a.get(NFULA_PAYLOAD, b""))


@dataclass(frozen=True)
class Packet:
    """The IPv4 header fields of a logged packet (ports 0 when it has none)."""

    proto: str
    src: str
    dst: str
    sport: int
    dport: int
    length: int
    l4: bytes  # the transport payload (after the UDP header for UDP)


def ipv4(data: bytes) -> Packet | None:
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    ihl = (data[0] & 0x0F) * 4
    total = _u16(data[2:4])
    num = data[9]
    sport = dport = 0
    body = data[ihl:]
    if num in (6, 17) and len(body) >= 4:
        sport, dport = _u16(body), _u16(body[2:4])
    elif num == 1 and len(body) >= 2:
        sport, dport = body[0], body[1]
    return Packet(PROTOCOLS.get(num, str(num)), socket.inet_ntoa(data[12:16]),
                  socket.inet_ntoa(data[16:20]), sport, dport, total,
                  body[8:] if num == 17 else body)


def _message(kind: int, flags: int, family: int, res_id: int, body: bytes, seq: int) -> bytes:
    return message(kind, flags, seq, _NFGEN.pack(family, 0, res_id) + body)


def nflog_bind(group: int, copy_range: int = 0xFFFF, seq: int = 1) -> list[bytes]:
    """The two config messages that make a socket receive nflog group `group` with payloads."""
    kind = NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_CONFIG
    flags = NLM_F_REQUEST | NLM_F_ACK
    bind = attr(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_BIND]))
    mode = attr(NFULA_CFG_MODE, struct.pack("!IBB", copy_range, NFULNL_COPY_PACKET, 0))
    return [_message(kind, flags, socket.AF_UNSPEC, group, bind, seq),
            _message(kind, flags, socket.AF_UNSPEC, group, mode, seq + 1)]


def ct_dump_request(seq: int = 1) -> bytes:
    """A dump of the conntrack table: the kernel also kills the entries that have expired
    on the way (and so sends their end events) instead of waiting for its GC."""
    kind = NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET
    return _message(kind, NLM_F_REQUEST | NLM_F_DUMP, socket.AF_INET, 0, b"", seq)


def ct_flow(payload: bytes) -> tuple[int, bytes] | None:
    """(conntrack ID, original tuple as the kernel sent it) of a conntrack message: what a
    lookup of that flow (ct_get_request) sends back. Only the top-level attributes are read:
    the collector sees every new flow of its NI."""
    if not payload or payload[0] != socket.AF_INET:
        return None  # the NI is IPv4: its flow log records IPv4 flows only
    a = attrs(payload, _NFGEN.size)
    orig, ident = a.get(CTA_TUPLE_ORIG), a.get(CTA_ID)
    if orig is None or ident is None:
        return None
    return _u32(ident), orig


def ct_get_request(orig: bytes, seq: int) -> bytes:
    """A lookup of one flow by its original tuple. The kernel drops the flow if it has
    expired (and sends its end event), as a dump would, but without walking the whole
    conntrack hash: a found flow is answered, a gone one with ENOENT."""
    kind = NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET
    return _message(kind, NLM_F_REQUEST, socket.AF_INET, 0,
                    attr(CTA_TUPLE_ORIG | NLA_F_NESTED, orig), seq)


def answers(buf: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(type, sequence number, payload) of each netlink message in a datagram: which
    request a message answers."""
    return ((kind, seq, payload) for kind, _flags, seq, payload in frames(buf))
