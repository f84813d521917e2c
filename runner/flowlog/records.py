"""Conntrack events and nflog packets -> flow-log records (pure: no sockets, no clock).

Records are plain dicts, one JSON line each:
- `{"type": "flow", "verdict": "allow", ...}` when conntrack forgets a flow (its
  end; TCP flows linger in TIME_WAIT, so `end` is up to 2 min after the FIN),
  with packets and bytes each way from the app's side (`out` = sent by the app);
- `{"type": "flow", "verdict": "drop", ...}` for packets the ACLs or the
  anti-spoofing dropped (they never make a conntrack entry): the nflog samples of
  one 5-tuple and reason, aggregated until they stop for `drop_idle` seconds;
- `{"type": "dns", ...}` for each DNS reply the NI's dnsmasq sent to an app.
A `{"type": "start"}` record per new flow is optional (it doubles the work).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from runner.flowlog import dns
from runner.flowlog.netlink import CtEvent, LogPacket, Packet, Tuple, ipv4
from runner.render import appedge

ETH_P_ARP, ETH_P_IPV6 = 0x0806, 0x86DD
AF_BRIDGE = 7
Record = dict[str, Any]


@dataclass
class AppIndex:
    """Who is who in the NI: addresses (reserved and leased) and MACs of apps, by name."""

    by_ip: dict[str, str] = field(default_factory=dict)
    by_mac: dict[str, str] = field(default_factory=dict)


def _ts(ns: int) -> float:
    return round(ns / 1e9, 3)


@dataclass
class _Drop:
    first: float
    last: float
    packets: int = 0
    bytes: int = 0


class Recorder:
    def __init__(self, ni: str, apps: Callable[[], AppIndex], hosts: Sequence[str] = (),
                 rule_labels: dict[int, str] | None = None, starts: bool = False,
                 drop_idle: float = 5.0, host_grace: int = 5) -> None:
        self.ni, self.apps, self.hosts = ni, apps, tuple(hosts)
        self.rule_labels = rule_labels or {}
        self.starts, self.drop_idle, self.host_grace = starts, drop_idle, host_grace
        self._drops: dict[tuple[str, ...], _Drop] = {}
        self._host_expiry: dict[tuple[str, str], float] = {}

    # -- conntrack ----------------------------------------------------------------------

    def _side(self, o: Tuple, r: Tuple) -> tuple[str, str, Tuple, bool] | None:
        """(app, direction, the flow seen from outside in, whether counters swap)."""
        index = self.apps()
        app = index.by_ip.get(o.src)
        if app is not None:
            return app, "egress", o, False
        app = index.by_ip.get(r.src)  # DNATed to the app, or another app's flow to it
        if app is not None:
            return app, "ingress", Tuple(o.proto, o.src, r.src, o.sport, r.sport), True
        return None

    def ct(self, ev: CtEvent) -> list[Record]:
        side = self._side(ev.orig, ev.reply)
        if side is None:
            return []  # the NI's own flows (dnsmasq's upstream queries, ...)
        app, direction, t, swap = side
        rec: Record = {"type": "flow" if ev.end else "start", "ni": self.ni, "app": app,
                       "dir": direction, "proto": t.proto, "src": t.src, "sport": t.sport,
                       "dst": t.dst, "dport": t.dport, "start": _ts(ev.start_ns)}
        if ev.mark & 0xFFFF in self.rule_labels:
            rec["rule"] = self.rule_labels[ev.mark & 0xFFFF]
        if not ev.end:
            return [rec] if self.starts else []
        sent = (ev.packets_orig, ev.bytes_orig)
        got = (ev.packets_reply, ev.bytes_reply)
        if swap:
            sent, got = got, sent
        rec.update(end=_ts(ev.stop_ns), verdict="allow", pkts_out=sent[0], bytes_out=sent[1],
                   pkts_in=got[0], bytes_in=got[1])
        return [rec]

    # -- nflog: drops and DNS --------------------------------------------------------------

    def log(self, pkt: LogPacket, now: float) -> tuple[list[Record], str]:
        """Records to write now, and nft text that refreshes host-name sets (may be "")."""
        words = pkt.prefix.split()
        if words[:1] == ["dns"]:
            return self._dns(pkt, now)
        if words[:1] in (["acl"], ["edge"]):
            self._drop(pkt, words, now)
        return [], ""

    def _drop(self, pkt: LogPacket, words: list[str], now: float) -> None:
        reason = " ".join(words)
        app = words[1] if words[0] == "acl" and len(words) > 1 else \
            self.apps().by_mac.get(pkt.hwaddr, "")
        proto, src, dst, sport, dport, size = _five_tuple(pkt)
        key = (reason, app, pkt.hwaddr, proto, src, str(sport), dst, str(dport))
        d = self._drops.setdefault(key, _Drop(pkt.time or now, pkt.time or now))
        d.last = pkt.time or now
        d.packets += 1
        d.bytes += size

    @property
    def holding(self) -> bool:
        """Whether drops wait for `flush`."""
        return bool(self._drops)

    def flush(self, now: float, everything: bool = False) -> list[Record]:
        """Dropped flows that have been quiet for drop_idle seconds (or all of them)."""
        out = []
        for key, d in list(self._drops.items()):
            if everything or now - d.last >= self.drop_idle:
                reason, app, mac, proto, src, sport, dst, dport = key
                out.append({"type": "flow", "ni": self.ni, "app": app or None, "mac": mac,
                            "verdict": "drop", "reason": reason, "proto": proto,
                            "src": src, "sport": int(sport), "dst": dst, "dport": int(dport),
                            "start": round(d.first, 3), "end": round(d.last, 3),
                            "pkts_logged": d.packets, "bytes_logged": d.bytes})
                del self._drops[key]
        return out

    def _dns(self, pkt: LogPacket, now: float) -> tuple[list[Record], str]:
        p = ipv4(pkt.payload)
        if p is None or p.proto != "udp":
            return [], ""
        try:
            reply = dns.parse_reply(p.l4)
        except dns.DnsError:
            return [], ""
        rec: Record = {"type": "dns", "ni": self.ni, "app": self.apps().by_ip.get(p.dst),
                       "client": p.dst, "time": round(pkt.time or now, 3),
                       "query": reply.query, "qtype": reply.qtype, "rcode": reply.rcode,
                       "answers": [{"name": a.name, "type": a.type, "ttl": a.ttl, "data": a.data}
                                   for a in reply.answers]}
        return [rec], self._refresh(reply, now)

    def _refresh(self, reply: dns.Reply, now: float) -> str:
        """Keep a host's addresses allowed as long as the answer lets clients use them.

        dnsmasq's nftset= adds an address the moment it answers, with the set's
        default timeout, and never refreshes it; here each answer sets the
        timeout to its TTL (+ grace), but never shortens what another answer
        granted. An address no answer names anymore leaves within one TTL.
        """
        ips = reply.addresses()
        text = []
        for host in self.hosts:
            if not ips or not dns.under(reply.query, host):
                continue
            until = now + reply.ttl() + self.host_grace
            for ip in ips:
                key = (host, ip)
                until_ip = max(until, self._host_expiry.get(key, 0.0))
                self._host_expiry[key] = until_ip
                text.append(appedge.host_refresh(host, [IPv4Address(ip)],
                                                 math.ceil(until_ip - now)))
        for key, t in list(self._host_expiry.items()):
            if t < now:
                del self._host_expiry[key]
        return "".join(text)


def _five_tuple(pkt: LogPacket) -> tuple[str, str, str, int, int, int]:
    """(proto, src, dst, sport, dport, length) of a logged packet, whatever its kind."""
    data = pkt.payload
    if pkt.ethertype == ETH_P_ARP and len(data) >= 28:
        from socket import inet_ntoa
        return "arp", inet_ntoa(data[14:18]), inet_ntoa(data[24:28]), data[7], 0, len(data)
    if pkt.ethertype == ETH_P_IPV6 and len(data) >= 40:
        from socket import AF_INET6, inet_ntop
        nh = data[6]
        sport = data[40] if nh == 58 and len(data) > 40 else 0  # the ICMPv6 type
        return ("icmpv6" if nh == 58 else str(nh), inet_ntop(AF_INET6, data[8:24]),
                inet_ntop(AF_INET6, data[24:40]), sport, 0, 40 + int.from_bytes(data[4:6], "big"))
    p: Packet | None = ipv4(data)
    if p is None:
        return f"0x{pkt.ethertype:04x}", "", "", 0, 0, len(data)
    return p.proto, p.src, p.dst, p.sport, p.dport, p.length
