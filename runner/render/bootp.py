"""nft matches on the DHCP server's answers, shared by the app edge and switch NIs.

BOOTP in a UDP packet, as raw offsets from the UDP header (@th, in bits): op at 64
(2: a reply), yiaddr at 192, chaddr at 288; options from 1984, where servers
(dnsmasq, and every one met on a segment so far) put the message type first
(0x35 0x01 0x05: an ACK).
"""

from __future__ import annotations

ACK = "udp sport 67 udp dport 68 @th,64,8 2 @th,1984,24 0x350105"
CHADDR = "@th,288,48"  # the client's MAC: the first 48 bits of the 16-byte field
YIADDR = "@th,192,32"  # the address given


def mac_int(mac: str) -> str | None:
    """A MAC as the integer a raw 48-bit match compares with; None if it is not one."""
    try:
        octets = bytes(int(o, 16) for o in mac.split(":"))
    except ValueError:
        return None
    return "0x" + octets.hex() if len(octets) == 6 else None
