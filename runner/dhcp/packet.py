"""DHCPv4 messages (RFC 2131/2132) and the Ethernet/IPv4/UDP frames that carry them.

Pure encoding and decoding: no sockets here. A client that has no address yet
must speak in whole frames (from 0.0.0.0 to the broadcast address), so the
frame layer is part of the codec.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from runner.errors import NirunnerError

CLIENT_PORT, SERVER_PORT = 68, 67
MAGIC = b"\x63\x82\x53\x63"
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
ANY = IPv4Address("0.0.0.0")
BROADCAST = IPv4Address("255.255.255.255")
INFINITE = 0xFFFFFFFF  # lease time "infinite" (RFC 2132 9.2)
FLAG_BROADCAST = 0x8000
_FIXED = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")  # the BOOTP header, 236 bytes
ETH_P_IP = 0x0800


class DhcpError(NirunnerError):
    pass


class MessageType(enum.IntEnum):
    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


class Opt(enum.IntEnum):
    SUBNET_MASK = 1
    ROUTER = 3
    DNS = 6
    HOSTNAME = 12
    DOMAIN = 15
    MTU = 26
    REQUESTED_IP = 50
    LEASE_TIME = 51
    MESSAGE_TYPE = 53
    SERVER_ID = 54
    PARAMS = 55
    MESSAGE = 56
    RENEW_T1 = 58
    REBIND_T2 = 59
    CLIENT_ID = 61
    END = 255
    PAD = 0


@dataclass(frozen=True)
class Message:
    op: int  # 1 request, 2 reply
    xid: int
    chaddr: str  # the client's MAC, "02:00:..."
    ciaddr: IPv4Address = ANY
    yiaddr: IPv4Address = ANY
    siaddr: IPv4Address = ANY
    giaddr: IPv4Address = ANY
    flags: int = 0
    secs: int = 0
    options: tuple[tuple[int, bytes], ...] = field(default=())

    def opt(self, code: int) -> bytes | None:
        return next((v for c, v in self.options if c == code), None)

    @property
    def type(self) -> MessageType | None:
        raw = self.opt(Opt.MESSAGE_TYPE)
        try:
            return MessageType(raw[0]) if raw else None
        except ValueError:
            return None


def mac_bytes(mac: str) -> bytes:
    try:
        raw = bytes(int(x, 16) for x in mac.split(":"))
    except ValueError:
        raw = b""
    if len(raw) != 6:
        raise DhcpError(f"{mac!r} is not a MAC address")
    return raw


def mac_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw[:6])


def encode(m: Message) -> bytes:
    head = _FIXED.pack(m.op, 1, 6, 0, m.xid, m.secs, m.flags, m.ciaddr.packed,
                       m.yiaddr.packed, m.siaddr.packed, m.giaddr.packed,
                       mac_bytes(m.chaddr).ljust(16, b"\0"), b"", b"")
    body = bytearray(MAGIC)
    for code, value in m.options:
        if len(value) > 255:
            raise DhcpError(f"DHCP option {code} is longer than 255 bytes")
        body += bytes((code, len(value))) + value
    body.append(Opt.END)
    raw = head + bytes(body)
    return raw.ljust(300, b"\0")  # BOOTP's minimum; some servers insist


def decode(raw: bytes) -> Message:
    if len(raw) < _FIXED.size + 4 or raw[_FIXED.size:_FIXED.size + 4] != MAGIC:
        raise DhcpError("not a DHCP message (short, or no magic cookie)")
    (op, htype, hlen, _hops, xid, secs, flags, ci, yi, si, gi, ch, _sname,
     _file) = _FIXED.unpack_from(raw)
    if htype != 1 or hlen != 6:
        raise DhcpError(f"hardware type {htype}/{hlen} is not Ethernet")
    options: list[tuple[int, bytes]] = []
    i = _FIXED.size + 4
    while i < len(raw):
        code = raw[i]
        if code == Opt.END:
            break
        if code == Opt.PAD:
            i += 1
            continue
        if i + 1 >= len(raw) or i + 2 + raw[i + 1] > len(raw):
            raise DhcpError(f"DHCP option {code} runs past the end of the message")
        options.append((code, raw[i + 2:i + 2 + raw[i + 1]]))
        i += 2 + raw[i + 1]
    return Message(op=op, xid=xid, chaddr=mac_str(ch), ciaddr=IPv4Address(ci),
                   yiaddr=IPv4Address(yi), siaddr=IPv4Address(si), giaddr=IPv4Address(gi),
                   flags=flags, secs=secs, options=tuple(options))


# -- options ------------------------------------------------------------------------------

def u32(value: int) -> bytes:
    return struct.pack("!I", value)


def addrs(raw: bytes | None) -> tuple[IPv4Address, ...]:
    if not raw:
        return ()
    return tuple(IPv4Address(raw[i:i + 4]) for i in range(0, len(raw) - 3, 4))


def text(raw: bytes | None) -> str:
    return (raw or b"").rstrip(b"\0").decode("ascii", "replace")


# -- frames -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Frame:
    """An Ethernet frame with an IPv4 UDP datagram inside."""

    src_mac: str
    dst_mac: str
    src_ip: IPv4Address
    dst_ip: IPv4Address
    src_port: int
    dst_port: int
    payload: bytes


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def build_frame(f: Frame) -> bytes:
    udp_len = 8 + len(f.payload)
    pseudo = f.src_ip.packed + f.dst_ip.packed + struct.pack("!BBH", 0, 17, udp_len)
    udp = struct.pack("!HHHH", f.src_port, f.dst_port, udp_len, 0) + f.payload
    csum = _checksum(pseudo + udp) or 0xFFFF  # 0 would mean "no checksum"
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0x10, 20 + udp_len, 0, 0, 64, 17, 0,
                     f.src_ip.packed, f.dst_ip.packed)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return mac_bytes(f.dst_mac) + mac_bytes(f.src_mac) + struct.pack("!H", ETH_P_IP) + ip + udp


def parse_frame(raw: bytes) -> Frame | None:
    """The UDP datagram in an Ethernet frame; None for anything else.

    Checksums are not verified: a packet socket sees frames from the local
    stack with checksums left to offload (CHECKSUM_PARTIAL), and the DHCP
    layer checks xid and MAC anyway.
    """
    if len(raw) < 14 + 20 + 8 or struct.unpack_from("!H", raw, 12)[0] != ETH_P_IP:
        return None
    ihl = (raw[14] & 0x0F) * 4
    if raw[14] >> 4 != 4 or raw[23] != 17 or len(raw) < 14 + ihl + 8:
        return None
    total = struct.unpack_from("!H", raw, 16)[0]
    sport, dport, ulen = struct.unpack_from("!HHH", raw, 14 + ihl)
    end = min(len(raw), 14 + total, 14 + ihl + ulen)
    return Frame(src_mac=mac_str(raw[6:12]), dst_mac=mac_str(raw[0:6]),
                 src_ip=IPv4Address(raw[26:30]), dst_ip=IPv4Address(raw[30:34]),
                 src_port=sport, dst_port=dport, payload=raw[14 + ihl + 8:end])
