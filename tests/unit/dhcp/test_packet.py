from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest

from runner.dhcp import packet as p
from runner.dhcp.packet import DhcpError, Frame, Message, MessageType, Opt


def test_message_round_trip() -> None:
    m = Message(op=2, xid=0xDEADBEEF, chaddr="02:00:00:00:00:21", yiaddr=IPv4Address("10.1.0.7"),
                flags=p.FLAG_BROADCAST, options=((Opt.MESSAGE_TYPE, bytes((MessageType.ACK,))),
                                                 (Opt.ROUTER, IPv4Address("10.1.0.1").packed),
                                                 (Opt.DOMAIN, b"factory.lan")))
    raw = p.encode(m)
    assert len(raw) >= 300 and raw[236:240] == p.MAGIC
    back = p.decode(raw)
    assert back == m and back.type is MessageType.ACK
    assert p.addrs(back.opt(Opt.ROUTER)) == (IPv4Address("10.1.0.1"),)
    assert p.text(back.opt(Opt.DOMAIN)) == "factory.lan" and back.opt(Opt.MTU) is None


def test_decode_refuses_what_is_not_dhcp() -> None:
    good = p.encode(Message(op=1, xid=1, chaddr="02:00:00:00:00:01",
                            options=((Opt.HOSTNAME, b"x"),)))
    with pytest.raises(DhcpError, match="magic"):
        p.decode(good[:200])
    with pytest.raises(DhcpError, match="magic"):
        p.decode(good[:236] + b"\0\0\0\0" + good[240:])
    # an option whose length runs past the end
    with pytest.raises(DhcpError, match="runs past"):
        p.decode(good[:240] + bytes((Opt.HOSTNAME, 40)) + b"abc")
    with pytest.raises(DhcpError, match="not a MAC"):
        p.mac_bytes("02:00:00")


def _sum16(data: bytes) -> int:
    data += b"\0" * (len(data) % 2)
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def test_frame_round_trip_with_valid_checksums() -> None:
    f = Frame("02:00:00:00:00:21", p.BROADCAST_MAC, p.ANY, p.BROADCAST, 68, 67, b"hello dhcp")
    raw = p.build_frame(f)
    assert raw[:6] == b"\xff" * 6 and raw[12:14] == b"\x08\x00"
    assert _sum16(raw[14:34]) == 0xFFFF  # IPv4 header checksum
    udp = raw[34:]
    pseudo = raw[26:34] + struct.pack("!BBH", 0, 17, len(udp))
    assert _sum16(pseudo + udp) == 0xFFFF  # UDP checksum over the pseudo header
    assert p.parse_frame(raw) == f


def test_parse_frame_skips_other_traffic() -> None:
    raw = bytearray(p.build_frame(Frame("02:00:00:00:00:21", p.BROADCAST_MAC, p.ANY,
                                        p.BROADCAST, 68, 67, b"x")))
    arp = bytes(raw[:12]) + b"\x08\x06" + bytes(raw[14:])
    assert p.parse_frame(arp) is None
    tcp = bytearray(raw)
    tcp[23] = 6
    assert p.parse_frame(bytes(tcp)) is None
    assert p.parse_frame(bytes(raw[:30])) is None
