"""A few rtnetlink requests on a plain socket: the links an attach and an NI's bring-up make.

pyroute2's IPRoute costs ~0.6 ms to make (it sets up an asyncio loop) and some 0.3 ms
of Python per request on top of the kernel's work; an attach's plug made 4 requests
through 2 of them, ~3 ms in all, against ~1.3 ms here. pyroute2 still encodes the
messages (its ifinfmsg and ifaddrmsg): only the transport is ours, a socket made in the
calling thread's netns that sends one request and reads the kernel's answer.

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

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, nlmsg_base
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_GETLINK, RTM_NEWADDR, RTM_NEWLINK, RTM_SETLINK
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

NLMSG_ERROR = 2
IFF_UP = 1
RTEXT_FILTER_SKIP_STATS = 1 << 3  # a link's answer without its counters: smaller
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, port
_IFINDEX = struct.Struct("=i")  # ifinfomsg.ifi_index, 4 bytes into the message's body


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

    def request(self, msg: nlmsg_base, kind: int, flags: int = 0) -> bytes:
        """Send `msg` as a `kind` request and return the body of the kernel's answer:
        b"" for an acknowledged change; NetlinkError for an error answer."""
        self._seq += 1
        msg["header"]["type"] = kind
        msg["header"]["flags"] = NLM_F_REQUEST | flags
        msg["header"]["sequence_number"] = self._seq
        msg.encode()
        self._sock.sendto(msg.data, (0, 0))
        while True:
            data = self._sock.recv(65536)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, typ, _, seq, _ = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size:
                    raise NetlinkError(errno.EPROTO, "a netlink answer too short")
                body = data[offset + _HEADER.size:offset + length]
                offset += (length + 3) & ~3
                if seq != self._seq:
                    continue  # an answer to an earlier request (none here, but be sure)
                if typ == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", body)[0]
                    if code:
                        raise NetlinkError(code, os.strerror(code))
                    return b""
                return body

    def link_index(self, ifname: str) -> int | None:
        """The index of link `ifname` (one RTM_GETLINK by name), None if there is none."""
        msg = ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", ifname), ("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)]
        try:
            body = self.request(msg, RTM_GETLINK)
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                return None
            raise
        return int(_IFINDEX.unpack_from(body, 4)[0])

    def new_veth(self, name: str, peer: str, peer_netns_fd: int, mtu: int,
                 peer_mac: str | None = None, up: bool = False,
                 master: int | None = None) -> None:
        """A veth pair: `name` here (up, on bridge index `master`, if asked), `peer` made
        directly in the netns of `peer_netns_fd`. The peer cannot be set up in the same
        request: the kernel configures it before the pair is joined (ENOTCONN)."""
        spec: list[tuple[str, object]] = [("IFLA_IFNAME", peer), ("IFLA_MTU", mtu),
                                          ("IFLA_NET_NS_FD", peer_netns_fd)]
        if peer_mac:
            spec.append(("IFLA_ADDRESS", peer_mac))
        msg = ifinfmsg()
        if up:
            msg["flags"] = msg["change"] = IFF_UP
        msg["attrs"] = [("IFLA_IFNAME", name), ("IFLA_MTU", mtu)]
        if master is not None:
            msg["attrs"].append(("IFLA_MASTER", master))
        msg["attrs"].append(("IFLA_LINKINFO", {"attrs": [
            ("IFLA_INFO_KIND", "veth"),
            ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": spec})]})]}))
        self.request(msg, RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)

    def set_up(self, ifname: str = "", index: int = 0) -> None:
        """Link `ifname` (or `index`) up: one request, the kernel looks the name up."""
        msg = ifinfmsg()
        msg["flags"] = msg["change"] = IFF_UP
        if index:
            msg["index"] = index
        else:
            msg["attrs"] = [("IFLA_IFNAME", ifname)]
        self.request(msg, RTM_SETLINK, NLM_F_ACK)

    def add_address(self, index: int, addr: IPv4Interface) -> None:
        msg = ifaddrmsg()
        msg["family"] = socket.AF_INET
        msg["prefixlen"] = addr.network.prefixlen
        msg["index"] = index
        ip = str(addr.ip)
        msg["attrs"] = [("IFA_LOCAL", ip), ("IFA_ADDRESS", ip)]  # no broadcast, as before
        self.request(msg, RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
