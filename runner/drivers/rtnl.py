"""A few rtnetlink requests on a plain socket: the links an attach and an NI's bring-up make.

pyroute2's IPRoute costs ~0.6 ms to make (it sets up an asyncio loop) and some 0.3 ms
of Python per request on top of the kernel's work; an attach's plug made 4 requests
through 2 of them, ~3 ms in all. Its message classes alone still cost ~0.3 ms to encode
a link set up (a third of the GIL an attach held after the first step). These requests
are a header and a few attributes, packed here with struct (the layouts of
linux/netlink.h, linux/rtnetlink.h and linux/if_link.h); replies are read only for
their error code or a link's index. Everything else keeps pyroute2.

Errors are pyroute2's NetlinkError (errno as `code`), as IPRoute raises them, so callers
handle both alike (runner.drivers.links.call).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from ipaddress import IPv4Interface
from types import TracebackType

from pyroute2.netlink.exceptions import NetlinkError

from runner.drivers.nlmsg import ack_error, attr, frames, message

NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_NEWROUTE, RTM_DELROUTE, RTM_DELRULE = 20, 21, 24, 25, 33
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_LINKINFO, IFLA_NET_NS_FD, IFLA_EXT_MASK = 18, 28, 29
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFF_UP = 1
RTEXT_FILTER_SKIP_STATS = 1 << 3  # a link's answer without its counters: smaller
IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBi")  # ifaddrmsg: family, prefixlen, flags, scope, index


def _str(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def _u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def _mac(value: str) -> bytes:
    return bytes.fromhex(value.replace(":", ""))


def link_msg(index: int = 0, up: bool = False, *attrs: bytes) -> bytes:
    """An ifinfomsg (family AF_UNSPEC) with its attributes; `up` sets IFF_UP."""
    flags = IFF_UP if up else 0
    return IFINFO.pack(0, 0, index, flags, flags) + b"".join(attrs)


class Rtnl:
    """One NETLINK_ROUTE socket of the calling thread's netns, for requests one at a time."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   socket.NETLINK_ROUTE)
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def request(self, kind: int, body: bytes, flags: int = 0) -> bytes:
        """Send a `kind` request and return the body of the kernel's answer: b"" for an
        acknowledged change; NetlinkError for an error answer."""
        self._seq += 1
        self._sock.sendto(message(kind, NLM_F_REQUEST | flags, self._seq, body), (0, 0))
        while True:
            for typ, _, seq, answer in frames(self._sock.recv(65536)):
                if seq != self._seq:
                    continue  # an answer to an earlier request (none here, but be sure)
                code = ack_error(typ, answer)
                if code:
                    raise NetlinkError(code, os.strerror(code))
                return b"" if code == 0 else answer

    def link_index(self, ifname: str) -> int | None:
        """The index of link `ifname` (one RTM_GETLINK by name), None if there is none."""
        try:
            answer = self.request(RTM_GETLINK, link_msg(0, False, _str(IFLA_IFNAME, ifname),
                                  _u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)))
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                return None
            raise
        return int(IFINFO.unpack_from(answer)[2])

    def new_veth(self, name: str, peer: str, peer_netns_fd: int, mtu: int,
                 peer_mac: str | None = None, up: bool = False,
                 master: int | None = None) -> None:
        """A veth pair: `name` here (up, on bridge index `master`, if asked), `peer` made
        directly in the netns of `peer_netns_fd`. The peer cannot be set up in the same
        request: the kernel configures it before the pair is joined (ENOTCONN)."""
        peer_attrs = [_str(IFLA_IFNAME, peer), _u32(IFLA_MTU, mtu),
                      _u32(IFLA_NET_NS_FD, peer_netns_fd)]
        if peer_mac:
            peer_attrs.append(attr(IFLA_ADDRESS, _mac(peer_mac)))
        info = attr(IFLA_LINKINFO, _str(IFLA_INFO_KIND, "veth") + attr(
            IFLA_INFO_DATA, attr(VETH_INFO_PEER, link_msg(0, False, *peer_attrs))))
        attrs = [_str(IFLA_IFNAME, name), _u32(IFLA_MTU, mtu)]
        if master is not None:
            attrs.append(_u32(IFLA_MASTER, master))
        self.request(RTM_NEWLINK, link_msg(0, up, *attrs, info),
                     NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)

    def set_up(self, ifname: str = "", index: int = 0) -> None:
        """Link `ifname` (or `index`) up: one request, the kernel looks the name up."""
        body = link_msg(index, True) if index else link_msg(0, True, _str(IFLA_IFNAME, ifname))
        self.request(RTM_SETLINK, body, NLM_F_ACK)

    def add_address(self, index: int, addr: IPv4Interface) -> None:
        ip = addr.ip.packed  # no broadcast, as IPRoute's addr("add") made them
        body = _IFADDR.pack(socket.AF_INET, addr.network.prefixlen, 0, 0, index) + attr(
            IFA_LOCAL, ip) + attr(IFA_ADDRESS, ip)
        self.request(RTM_NEWADDR, body, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
