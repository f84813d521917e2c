"""A DHCP client without I/O: frames in, frames out, timers as numbers.

`Exchange` takes a lease: DISCOVER -> OFFER -> REQUEST -> ACK (or, with
`reboot=`, a REQUEST for an address held already -> ACK: how a pinned
reservation's new lease time is fetched). The caller owns the socket and the
clock: it sends what `start`, `on_frame` and `on_timer` return and calls
`on_timer` when `deadline` passes, until `done`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface

from runner.dhcp import packet as p
from runner.dhcp.packet import Frame, Message, MessageType, Opt

PARAMS = bytes((Opt.SUBNET_MASK, Opt.ROUTER, Opt.DNS, Opt.DOMAIN, Opt.MTU, Opt.LEASE_TIME,
                Opt.RENEW_T1, Opt.REBIND_T2))


@dataclass(frozen=True)
class Lease:
    address: IPv4Interface  # e.g. 10.1.0.57/24
    server: IPv4Address  # the server identifier (option 54)
    server_mac: str  # where unicasts to the server go
    lease_time: int  # seconds; packet.INFINITE for a pinned one
    routers: tuple[IPv4Address, ...] = ()
    dns: tuple[IPv4Address, ...] = ()
    domain: str = ""
    mtu: int | None = None

    @property
    def infinite(self) -> bool:
        return self.lease_time == p.INFINITE

    @property
    def gateway(self) -> IPv4Address | None:
        return self.routers[0] if self.routers else None


def lease_from(ack: Message, server_mac: str) -> Lease:
    mask = p.addrs(ack.opt(Opt.SUBNET_MASK))
    prefix = IPv4Interface(f"0.0.0.0/{mask[0]}").network.prefixlen if mask else 24
    server = p.addrs(ack.opt(Opt.SERVER_ID))
    lt = ack.opt(Opt.LEASE_TIME)
    mtu = ack.opt(Opt.MTU)
    return Lease(
        address=IPv4Interface(f"{ack.yiaddr}/{prefix}"),
        server=server[0] if server else ack.siaddr,
        server_mac=server_mac,
        lease_time=int.from_bytes(lt, "big") if lt and len(lt) == 4 else p.INFINITE,
        routers=p.addrs(ack.opt(Opt.ROUTER)),
        dns=p.addrs(ack.opt(Opt.DNS)),
        domain=p.text(ack.opt(Opt.DOMAIN)),
        mtu=int.from_bytes(mtu, "big") if mtu and len(mtu) == 2 else None,
    )


@dataclass
class Exchange:
    mac: str
    xid: int
    hostname: str = ""
    reboot: IPv4Address | None = None  # ask for this address again (INIT-REBOOT)
    interval: float = 0.5  # first retransmission; doubles up to 4 s (RFC 2131 4.1)
    attempts: int = 6  # per message before giving up
    state: str = "init"  # init, selecting, requesting, bound, failed
    lease: Lease | None = None
    error: str = ""
    deadline: float = 0.0
    _last: bytes = field(default=b"", repr=False)
    _tries: int = 0
    _start: float = 0.0

    @property
    def done(self) -> bool:
        return self.state in ("bound", "failed")

    def start(self, now: float) -> list[bytes]:
        self._start = now
        if self.reboot is not None:
            self.state = "requesting"
            return self._send(now, self._message(MessageType.REQUEST, (
                (Opt.REQUESTED_IP, self.reboot.packed),)))
        self.state = "selecting"
        return self._send(now, self._message(MessageType.DISCOVER))

    def on_timer(self, now: float) -> list[bytes]:
        if self.done or now < self.deadline:
            return []
        if self._tries >= self.attempts:
            what = "OFFER" if self.state == "selecting" else "ACK"
            self._fail(f"no DHCP {what} after {self._tries} tries ({now - self._start:.1f}s)")
            return []
        return self._resend(now)

    def on_frame(self, raw: bytes, now: float) -> list[bytes]:
        if self.done:
            return []
        f = p.parse_frame(raw)
        if f is None or f.dst_port != p.CLIENT_PORT or f.src_port != p.SERVER_PORT:
            return []
        try:
            m = p.decode(f.payload)
        except p.DhcpError:
            return []
        if m.op != 2 or m.xid != self.xid or m.chaddr != self.mac:
            return []  # someone else's exchange
        if self.state == "selecting" and m.type is MessageType.OFFER:
            self.state = "requesting"
            return self._send(now, self._message(MessageType.REQUEST, (
                (Opt.REQUESTED_IP, m.yiaddr.packed),
                (Opt.SERVER_ID, m.opt(Opt.SERVER_ID) or m.siaddr.packed))))
        if self.state == "requesting" and m.type is MessageType.ACK:
            self.lease = lease_from(m, f.src_mac)
            self.state = "bound"
            return []
        if self.state == "requesting" and m.type is MessageType.NAK:
            self._fail(f"DHCP NAK from {f.src_ip}: {p.text(m.opt(Opt.MESSAGE)) or 'no reason'}")
        return []

    # -- building -----------------------------------------------------------------

    def _message(self, kind: MessageType, extra: tuple[tuple[int, bytes], ...] = ()) -> Message:
        opts: list[tuple[int, bytes]] = [(Opt.MESSAGE_TYPE, bytes((kind,))),
                                         (Opt.CLIENT_ID, b"\x01" + p.mac_bytes(self.mac)),
                                         *extra]
        if self.hostname:
            opts.append((Opt.HOSTNAME, self.hostname.encode()))
        opts.append((Opt.PARAMS, PARAMS))
        return Message(op=1, xid=self.xid, chaddr=self.mac, options=tuple(opts))

    def _send(self, now: float, m: Message) -> list[bytes]:
        self._last = p.build_frame(Frame(self.mac, p.BROADCAST_MAC, p.ANY, p.BROADCAST,
                                         p.CLIENT_PORT, p.SERVER_PORT, p.encode(m)))
        self._tries = 0
        return self._resend(now)

    def _resend(self, now: float) -> list[bytes]:
        self.deadline = now + min(4.0, self.interval * 2 ** self._tries)
        self._tries += 1
        return [self._last]

    def _fail(self, why: str) -> None:
        self.state, self.error = "failed", why


def release(lease: Lease, mac: str, xid: int) -> Message:
    """A DHCPRELEASE of `lease` (unicast to the server; no answer comes)."""
    return Message(op=1, xid=xid, chaddr=mac, ciaddr=lease.address.ip, options=(
        (Opt.MESSAGE_TYPE, bytes((MessageType.RELEASE,))),
        (Opt.SERVER_ID, lease.server.packed),
        (Opt.CLIENT_ID, b"\x01" + p.mac_bytes(mac))))


def release_frame(lease: Lease, mac: str, xid: int) -> bytes:
    """The release as a frame from the client's own interface."""
    return p.build_frame(Frame(mac, lease.server_mac, lease.address.ip, lease.server,
                               p.CLIENT_PORT, p.SERVER_PORT, p.encode(release(lease, mac, xid))))
