"""What switch NIs learn: their port tables' sets, and a wake-up when a lease is learned.

The port tables (runner.render.switch) learn in the kernel, with no process: DHCP
ACKs for an app's MAC into set `leases`, the app's ARP into set `seen`. The kernel
sends no nftables event for elements added from the packet path (checked: `nft
monitor` stays silent), so the rule that learns a lease also copies the ACK to
nflog group SWITCH_LEARN_GROUP. `Listener` holds one nflog socket per switch NI
netns (a netlink socket stays in the netns it was made in) and calls `on_learn(ni)`
for every ACK: the supervisor then reads that NI's sets (`read`) and routes the
new lease within milliseconds, without polling any NI.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable

from runner.drivers import netns as ns
from runner.drivers import nft
from runner.errors import NirunnerError
from runner.flowlog import netlink as nl
from runner.net import names
from runner.plan.facts import Binding
from runner.render.switch import parse_learned

log = logging.getLogger("nirunner.learn")

COPY = 16  # bytes of each logged ACK: nothing of it is read, it is only a wake-up


class LearnError(NirunnerError):
    pass


def read(netns: str) -> tuple[Binding, ...]:
    """Everything the port tables of switch NI netns `netns` learned (one nft process);
    nothing when there is no such netns."""
    if not ns.exists(netns):
        return ()
    learned = parse_learned(nft.list_sets(netns))
    return tuple(b for table in sorted(learned) for b in learned[table])


def _open(netns: str, group: int) -> socket.socket:
    """An nflog socket of `group`, made inside `netns` and bound there."""
    def make() -> socket.socket:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nl.NETLINK_NETFILTER)
        try:
            s.bind((0, 0))
            for msg in nl.nflog_bind(group, COPY):
                s.send(msg)
            acks, deadline = 0, time.monotonic() + 2
            while acks < 2:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([s], [], [], left)[0]:
                    raise OSError(errno.ETIMEDOUT, "no answer to the nflog bind")
                for kind, _flags, payload in nl.messages(s.recv(65536)):
                    err = nl.ack_error(kind, payload)
                    if err:
                        raise OSError(err, os.strerror(err))
                    if err == 0:
                        acks += 1
            s.setblocking(False)
            return s
        except BaseException:
            s.close()
            raise

    try:
        return ns.run_in(netns, make)
    except OSError as e:
        raise LearnError(f"listen for learned leases in {netns}: nflog group {group}: "
                         f"{e.strerror or e}") from None


class Listener:
    """One thread, one epoll over an nflog socket per switch NI netns."""

    def __init__(self, on_learn: Callable[[str], None],
                 group: int = names.SWITCH_LEARN_GROUP) -> None:
        self.on_learn = on_learn
        self.group = group
        self._lock = threading.Lock()
        self._socks: dict[str, tuple[int, socket.socket]] = {}  # ni -> (netns inode, socket)
        self._by_fd: dict[int, str] = {}
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe()
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._stop = False
        self._thread: threading.Thread | None = None

    def watch(self, ni: str, netns: str) -> bool:
        """Listen in `netns` for NI `ni`: True if a socket was made now (idempotent; a new
        netns of the NI replaces its socket). LearnError when it cannot be made there."""
        inode = ns.inode(netns)
        with self._lock:
            old = self._socks.get(ni)
            if old is not None and old[0] == inode:
                return False
        if inode is None:
            raise LearnError(f"listen for learned leases in {netns}: no such netns")
        s = _open(netns, self.group)
        with self._lock:
            if ni in self._socks:
                self._drop(ni)
            self._socks[ni] = (inode, s)
            self._by_fd[s.fileno()] = ni
            self._epoll.register(s.fileno(), select.EPOLLIN)
        self._start()
        return True

    def unwatch(self, ni: str) -> None:
        with self._lock:
            self._drop(ni)

    def watched(self) -> set[str]:
        with self._lock:
            return set(self._socks)

    def _drop(self, ni: str) -> None:
        found = self._socks.pop(ni, None)
        if found is None:
            return
        s = found[1]
        self._by_fd.pop(s.fileno(), None)
        try:
            self._epoll.unregister(s.fileno())
        except (OSError, ValueError):
            pass
        s.close()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, daemon=True, name="learn")
            self._thread.start()

    def stop(self) -> None:
        self._stop = True
        os.write(self._wake_w, b"x")
        with self._lock:
            for ni in list(self._socks):
                self._drop(ni)

    def run(self) -> None:
        while not self._stop:
            try:
                ready = self._epoll.poll(1.0)
            except InterruptedError:
                continue
            for fd, _ in ready:
                if fd == self._wake_r:
                    os.read(self._wake_r, 64)
                    continue
                with self._lock:
                    ni = self._by_fd.get(fd)
                    found = self._socks.get(ni) if ni else None
                if ni is None or found is None:
                    continue
                if self._drain(found[1]):
                    try:
                        self.on_learn(ni)
                    except Exception as e:  # never let a callback stop the listener
                        log.warning("learned lease of NI %s: %s", ni, e)

    @staticmethod
    def _drain(s: socket.socket) -> bool:
        """Read what is waiting; True if a packet (or a lost one) was among it."""
        seen = False
        while True:
            try:
                data = s.recv(1 << 16)
            except BlockingIOError:
                return seen
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # some were lost: the sets still hold them
                    seen = True
                    continue
                return seen
            seen = seen or any(kind == (nl.NFNL_SUBSYS_ULOG << 8 | nl.NFULNL_MSG_PACKET)
                               for kind, _f, _p in nl.messages(data))
