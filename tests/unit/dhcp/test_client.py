"""The DHCP client as a script of frames and timers (no sockets)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface

from runner.dhcp import client
from runner.dhcp import packet as p
from runner.dhcp.client import Exchange
from runner.dhcp.packet import Frame, Message, MessageType, Opt

MAC = "02:00:00:00:00:21"
SERVER_MAC = "02:00:00:aa:00:01"
SERVER = IPv4Address("10.1.0.1")


def sent(frame: bytes) -> Message:
    f = p.parse_frame(frame)
    assert f is not None and (f.src_port, f.dst_port) == (68, 67)
    assert f.src_mac == MAC and f.dst_mac == p.BROADCAST_MAC and f.dst_ip == p.BROADCAST
    return p.decode(f.payload)


def reply(kind: MessageType, xid: int, yiaddr: str = "10.1.0.57", chaddr: str = MAC,
          lease_time: int = 3600, extra: tuple[tuple[int, bytes], ...] = ()) -> bytes:
    m = Message(op=2, xid=xid, chaddr=chaddr, yiaddr=IPv4Address(yiaddr), options=(
        (Opt.MESSAGE_TYPE, bytes((kind,))), (Opt.SERVER_ID, SERVER.packed),
        (Opt.LEASE_TIME, p.u32(lease_time)),
        (Opt.SUBNET_MASK, IPv4Address("255.255.255.0").packed),
        (Opt.ROUTER, SERVER.packed), (Opt.DNS, SERVER.packed),
        (Opt.DOMAIN, b"factory.lan"), (Opt.MTU, (1400).to_bytes(2, "big")), *extra))
    return p.build_frame(Frame(SERVER_MAC, MAC, SERVER, IPv4Address(yiaddr), 67, 68,
                               p.encode(m)))


def test_discover_offer_request_ack() -> None:
    ex = Exchange(mac=MAC, xid=42, hostname="web1")
    (frame,) = ex.start(0.0)
    d = sent(frame)
    assert d.type is MessageType.DISCOVER and d.xid == 42 and d.chaddr == MAC
    assert d.opt(Opt.HOSTNAME) == b"web1" and d.opt(Opt.CLIENT_ID) == b"\x01" + p.mac_bytes(MAC)
    # other clients' answers and stray traffic change nothing
    assert ex.on_frame(reply(MessageType.OFFER, 43), 0.1) == []
    assert ex.on_frame(reply(MessageType.OFFER, 42, chaddr="02:00:00:00:00:99"), 0.1) == []
    assert ex.on_frame(b"\x00" * 60, 0.1) == []
    assert ex.state == "selecting"
    (frame,) = ex.on_frame(reply(MessageType.OFFER, 42), 0.2)
    r = sent(frame)
    assert r.type is MessageType.REQUEST and r.xid == 42
    assert r.opt(Opt.REQUESTED_IP) == IPv4Address("10.1.0.57").packed
    assert r.opt(Opt.SERVER_ID) == SERVER.packed
    assert ex.on_frame(reply(MessageType.ACK, 42), 0.3) == []
    assert ex.done and ex.lease == client.Lease(
        address=IPv4Interface("10.1.0.57/24"), server=SERVER, server_mac=SERVER_MAC,
        lease_time=3600, routers=(SERVER,), dns=(SERVER,), domain="factory.lan", mtu=1400)
    assert ex.lease.gateway == SERVER and not ex.lease.infinite


def test_retransmits_with_backoff_then_gives_up() -> None:
    ex = Exchange(mac=MAC, xid=7, interval=0.5, attempts=3)
    (first,) = ex.start(0.0)
    assert ex.deadline == 0.5
    assert ex.on_timer(0.4) == []
    assert ex.on_timer(0.5) == [first]
    assert ex.deadline == 1.5  # 0.5, then 1.0, doubling
    assert ex.on_timer(1.5) == [first] and ex.deadline == 3.5
    assert ex.on_timer(3.5) == []
    assert ex.state == "failed" and "no DHCP OFFER after 3 tries" in ex.error


def test_nak_fails_the_exchange() -> None:
    ex = Exchange(mac=MAC, xid=9)
    ex.start(0.0)
    ex.on_frame(reply(MessageType.OFFER, 9), 0.1)
    ex.on_frame(reply(MessageType.NAK, 9, extra=((Opt.MESSAGE, b"wrong network"),)), 0.2)
    assert ex.state == "failed" and "wrong network" in ex.error and ex.lease is None


def test_reboot_asks_for_the_held_address() -> None:
    ex = Exchange(mac=MAC, xid=11, reboot=IPv4Address("10.1.0.57"))
    (frame,) = ex.start(0.0)
    r = sent(frame)
    assert r.type is MessageType.REQUEST and r.opt(Opt.SERVER_ID) is None
    assert r.opt(Opt.REQUESTED_IP) == IPv4Address("10.1.0.57").packed
    ex.on_frame(reply(MessageType.ACK, 11, lease_time=p.INFINITE), 0.1)
    assert ex.lease is not None and ex.lease.infinite


def test_release_goes_to_the_server() -> None:
    ex = Exchange(mac=MAC, xid=1)
    ex.start(0.0)
    ex.on_frame(reply(MessageType.OFFER, 1), 0.1)
    ex.on_frame(reply(MessageType.ACK, 1), 0.2)
    assert ex.lease is not None
    f = p.parse_frame(client.release_frame(ex.lease, MAC, 5))
    assert f is not None and f.dst_mac == SERVER_MAC and f.dst_ip == SERVER
    m = p.decode(f.payload)
    assert m.type is MessageType.RELEASE and m.ciaddr == IPv4Address("10.1.0.57")
    assert m.opt(Opt.SERVER_ID) == SERVER.packed
