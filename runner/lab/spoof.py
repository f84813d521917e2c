"""What a misbehaving app sends, for lab checks of the app edge (run inside an app netns).

    python -m runner.lab.spoof arp IFNAME --sender-ip IP [--target-ip IP] [--to MAC] [--reply]
    python -m runner.lab.spoof dhcp-offer IFNAME --yiaddr IP       # UDP 67 -> 68, broadcast
    python -m runner.lab.spoof ra IFNAME                           # ICMPv6 router advertisement

Frames are built by hand (no scapy): an ARP packet on an AF_PACKET socket, a
DHCP OFFER on a UDP socket bound to port 67, and an RA on a raw ICMPv6 socket
(the kernel fills in the ICMPv6 checksum). Each is sent a few times.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import time

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6


def mac_bytes(mac: str) -> bytes:
    return bytes(int(b, 16) for b in mac.split(":"))


def own_mac(ifname: str) -> bytes:
    with open(f"/sys/class/net/{ifname}/address") as f:
        return mac_bytes(f.read().strip())


def arp_frame(src_mac: bytes, sender_ip: str, target_ip: str, dst_mac: bytes = BROADCAST,
              reply: bool = False) -> bytes:
    """An Ethernet ARP frame; a gratuitous one when sender and target IP are the same."""
    op = 2 if reply else 1
    target_mac = dst_mac if reply else b"\0" * 6
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, src_mac,
                      socket.inet_aton(sender_ip), target_mac, socket.inet_aton(target_ip))
    return dst_mac + src_mac + struct.pack("!H", ETH_P_ARP) + arp


def send_arp(ifname: str, sender_ip: str, target_ip: str, to: str | None, reply: bool,
             count: int = 3) -> None:
    frame = arp_frame(own_mac(ifname), sender_ip, target_ip,
                      mac_bytes(to) if to else BROADCAST, reply)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((ifname, 0))
        for _ in range(count):
            s.send(frame)
            time.sleep(0.05)


def dhcp_offer(yiaddr: str, chaddr: bytes = b"\0" * 6) -> bytes:
    """A minimal BOOTP reply with a DHCP OFFER option."""
    fixed = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 2, 1, 6, 0, 0x1234, 0, 0x8000,
                        b"\0" * 4, socket.inet_aton(yiaddr), b"\0" * 4, b"\0" * 4,
                        chaddr.ljust(16, b"\0"), b"", b"")
    return fixed + b"\x63\x82\x53\x63" + b"\x35\x01\x02" + b"\xff"


def send_dhcp_offer(ifname: str, yiaddr: str, count: int = 3) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        s.bind(("0.0.0.0", 67))
        for _ in range(count):
            s.sendto(dhcp_offer(yiaddr), ("255.255.255.255", 68))
            time.sleep(0.05)


def router_advert(lifetime: int = 1800) -> bytes:
    """ICMPv6 type 134 (checksum left to the kernel): a default router for `lifetime` s."""
    return struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, lifetime, 0, 0)


def send_ra(ifname: str, count: int = 3) -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        scope = socket.if_nametoindex(ifname)
        for _ in range(count):
            s.sendto(router_advert(), ("ff02::1", 0, 0, scope))
            time.sleep(0.05)


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("arp")
    a.add_argument("ifname")
    a.add_argument("--sender-ip", required=True)
    a.add_argument("--target-ip")
    a.add_argument("--to", help="destination MAC (default broadcast)")
    a.add_argument("--reply", action="store_true")
    d = sub.add_parser("dhcp-offer")
    d.add_argument("ifname")
    d.add_argument("--yiaddr", required=True)
    r = sub.add_parser("ra")
    r.add_argument("ifname")
    args = ap.parse_args()
    if args.cmd == "arp":
        send_arp(args.ifname, args.sender_ip, args.target_ip or args.sender_ip, args.to,
                 args.reply)
    elif args.cmd == "dhcp-offer":
        send_dhcp_offer(args.ifname, args.yiaddr)
    else:
        send_ra(args.ifname)
    return 0


if __name__ == "__main__":
    sys.exit(main())
