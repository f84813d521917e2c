from __future__ import annotations

import struct

from runner.flowlog import netlink as nl
from tests.unit.flowlog import messages as m


def _one(data: bytes) -> tuple[int, int, bytes]:
    msgs = list(nl.messages(data))
    assert len(msgs) == 1
    return msgs[0]


def test_conntrack_end_event_is_decoded() -> None:
    data = m.ct_event(m.tuple_(6, "10.1.0.10", "192.0.2.20", 40000, 80),
                      m.tuple_(6, "192.0.2.20", "198.51.100.2", 80, 40000), mark=0x43FF0003)
    ev = nl.ct_event(*_one(data)[::2])
    assert ev is not None and ev.end and ev.id == 42 and ev.mark == 0x43FF0003
    assert ev.orig == nl.Tuple("tcp", "10.1.0.10", "192.0.2.20", 40000, 80)
    assert ev.reply.dst == "198.51.100.2"
    assert (ev.packets_orig, ev.bytes_orig, ev.packets_reply, ev.bytes_reply) == (
        10, 1000, 8, 4000)
    assert ev.stop_ns - ev.start_ns == 2_500_000_000


def test_new_event_and_icmp() -> None:
    data = m.ct_event(m.tuple_(1, "10.1.0.10", "192.0.2.20", 8, 0),
                      m.tuple_(1, "192.0.2.20", "10.1.0.10", 0, 0), end=False)
    ev = nl.ct_event(*_one(data)[::2])
    assert ev is not None and not ev.end and ev.orig.proto == "icmp" and ev.orig.sport == 8


def test_other_messages_are_not_events() -> None:
    kind, _, payload = _one(m.log_packet("dns ", b""))
    assert nl.ct_event(kind, payload) is None
    assert nl.log_packet(nl.NFNL_SUBSYS_CTNETLINK << 8, payload) is None


def test_a_truncated_attribute_ends_the_walk() -> None:
    assert nl.attrs(struct.pack("=HH", 2, 1) + b"junk") == {}
    assert nl.attrs(m.attr(1, b"ab") + b"\x01") == {1: b"ab"}


def test_nflog_packet_is_decoded() -> None:
    pkt_bytes = m.ipv4_udp("10.1.0.66", "10.1.0.255", 67, 68, b"offer")
    kind, _, payload = _one(m.log_packet("edge dhcp_server ", pkt_bytes, family=7))
    pkt = nl.log_packet(kind, payload)
    assert pkt is not None and pkt.prefix == "edge dhcp_server " and pkt.family == 7
    assert pkt.hwaddr == "02:00:00:00:00:66" and pkt.ifindex == 7
    assert pkt.time == 1_700_000_000.5
    ip = nl.ipv4(pkt.payload)
    assert ip is not None and (ip.proto, ip.src, ip.sport, ip.dport, ip.l4) == (
        "udp", "10.1.0.66", 67, 68, b"offer")


def test_nflog_bind_messages_and_acks() -> None:
    bind, mode = nl.nflog_bind(7)
    kind, flags, payload = _one(bind)
    assert kind == nl.NFNL_SUBSYS_ULOG << 8 | nl.NFULNL_MSG_CONFIG
    assert flags & nl.NLM_F_ACK and payload[2:4] == b"\x00\x07"  # the group, big endian
    assert nl.attrs(payload, 4)[nl.NFULA_CFG_CMD][0] == nl.NFULNL_CFG_CMD_BIND
    assert nl.attrs(_one(mode)[2], 4)[nl.NFULA_CFG_MODE][4] == nl.NFULNL_COPY_PACKET
    assert nl.ack_error(nl.NLMSG_ERROR, struct.pack("=i", -1)) == 1
    assert nl.ack_error(nl.NLMSG_ERROR, struct.pack("=i", 0)) == 0
    assert nl.ack_error(nl.NLMSG_DONE, b"") is None
