"""nftables over netlink, the little nirunner needs without spawning nft.

- `table_comment`: one NFT_MSG_GETTABLE request, the table's comment back;
- `rule_comments`: one NFT_MSG_GETRULE dump of a chain, its rules' comments back;
- `parse`: nftables event messages (from a socket bound to NFNLGRP_NFTABLES) as
  (message type, table name, PID of the process behind a batch) tuples.

Called in the calling thread's netns (see runner.drivers.netns.run_in).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from runner.drivers import nlmsg
from runner.drivers.nlmsg import ack_error, attr, frames, message

NETLINK_NETFILTER = 12
NFNLGRP_NFTABLES = 7
NFNL_SUBSYS_NFTABLES = 10
NLM_F_REQUEST = 1

NFT_MSG_NEWTABLE, NFT_MSG_GETTABLE, NFT_MSG_DELTABLE = 0, 1, 2
NFT_MSG_NEWCHAIN, NFT_MSG_DELCHAIN = 3, 5
NFT_MSG_NEWRULE, NFT_MSG_DELRULE = 6, 8
NFT_MSG_NEWSET, NFT_MSG_DELSET = 9, 11
NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM = 12, 14
NFT_MSG_NEWGEN = 15
NFT_MSG_GETRULE = 7
NLM_F_DUMP = 0x300
NLMSG_DONE = 3
NFTA_TABLE_NAME, NFTA_TABLE_USERDATA = 1, 6
NFTA_RULE_TABLE, NFTA_RULE_CHAIN, NFTA_RULE_USERDATA = 1, 2, 7
NFTA_GEN_PROC_PID = 2
NFTNL_UDATA_TABLE_COMMENT = 0

FAMILIES = {"ip": 2, "inet": 1, "ip6": 10, "arp": 3, "bridge": 7, "netdev": 5}

_GEN = struct.Struct("=BBH")  # nfgenmsg: family, version, res_id (big endian, unused)


class NfnlError(OSError):
    pass


def _comment(userdata: bytes) -> str:
    at = 0
    while at + 2 <= len(userdata):
        kind, length = userdata[at], userdata[at + 1]
        if kind == NFTNL_UDATA_TABLE_COMMENT:
            return userdata[at + 2: at + 2 + length].rstrip(b"\0").decode(errors="replace")
        at += 2 + length
    return ""


def table_comment(family: str, table: str) -> str | None:
    """The comment of table `family table` here ("" if none), None if there is no such table."""
    msg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE
    body = _GEN.pack(FAMILIES[family], 0, 0) + attr(NFTA_TABLE_NAME, table.encode() + b"\0")
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as s:
        s.settimeout(5)
        s.bind((0, 0))
        s.send(message(msg_type, NLM_F_REQUEST, 1, body))
        data = s.recv(65536)
    for kind, _, _, payload in frames(data):
        code = ack_error(kind, payload)
        if code == errno.ENOENT:
            return None
        if code is not None:
            raise NfnlError(code, f"get nft table {family} {table}: {os.strerror(code)}")
        attrs = nlmsg.attrs(payload, _GEN.size)
        return _comment(attrs.get(NFTA_TABLE_USERDATA, b""))
    raise NfnlError(errno.EPROTO, f"get nft table {family} {table}: no answer")


def rule_comments(family: str, table: str, chain: str) -> list[str] | None:
    """The comments of the rules of one chain, in order; None if there is no such table
    or chain. One dump request, no nft process."""
    msg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE
    body = (_GEN.pack(FAMILIES[family], 0, 0) + attr(NFTA_RULE_TABLE, table.encode() + b"\0")
            + attr(NFTA_RULE_CHAIN, chain.encode() + b"\0"))
    out: list[str] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as s:
        s.settimeout(5)
        s.bind((0, 0))
        s.send(message(msg_type, NLM_F_REQUEST | NLM_F_DUMP, 1, body))
        while True:
            for kind, _, _, payload in frames(s.recv(1 << 16)):
                if kind == NLMSG_DONE:
                    return out
                code = ack_error(kind, payload)
                if code == errno.ENOENT:
                    return None
                if code:
                    raise NfnlError(code, f"list rules of {family} {table} {chain}: "
                                          f"{os.strerror(code)}")
                if code == 0:
                    return out
                attrs = nlmsg.attrs(payload, _GEN.size)
                out.append(_comment(attrs.get(NFTA_RULE_USERDATA, b"")))


@dataclass(frozen=True)
class NftEvent:
    msg: int  # NFT_MSG_*
    family: int
    table: str  # "" for NEWGEN
    pid: int  # NEWGEN only: the process that made the batch


def parse(data: bytes) -> Iterator[NftEvent]:
    """The nftables messages in one datagram read from an event socket."""
    for kind, _, _, payload in frames(data):
        if kind >> 8 != NFNL_SUBSYS_NFTABLES or not payload:
            continue
        family = payload[0]
        attrs = nlmsg.attrs(payload, _GEN.size)
        msg = kind & 0xFF
        if msg == NFT_MSG_NEWGEN:
            pid = struct.unpack(">I", attrs.get(NFTA_GEN_PROC_PID, b"\0\0\0\0")[:4])[0]
            yield NftEvent(msg, family, "", pid)
        else:
            name = attrs.get(1, b"").rstrip(b"\0").decode(errors="replace")
            yield NftEvent(msg, family, name, 0)


def event_socket() -> socket.socket:
    """A socket for the calling thread's netns that receives its nftables changes."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    s.bind((0, 1 << (NFNLGRP_NFTABLES - 1)))
    return s
