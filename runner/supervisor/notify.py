"""systemd's notify protocol, spoken by the supervisor itself (no systemd library).

Under `Type=notify` systemd passes `$NOTIFY_SOCKET`, a Unix datagram socket (a
leading '@' names an abstract one), and with `WatchdogSec=` also `$WATCHDOG_USEC`
(and `$WATCHDOG_PID`, the process it is meant for). Each message is one datagram
of `KEY=value` lines: READY=1 once the service is up, STATUS=... for `systemctl
status`, WATCHDOG=1 keep-alives, STOPPING=1 when it shuts down.

The watchdog pings from a thread of its own, at half the interval systemd asks
for, but only while the supervisor's main loop is not stuck: a pass that has
been busy for longer than the whole interval stops the pings, so that systemd
restarts a hung supervisor (which then adopts the running NI tasks).

Without `$NOTIFY_SOCKET` every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field

log = logging.getLogger("nirunner.notify")

_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


@dataclass
class Notifier:
    address: bytes | None  # None: not started by systemd with Type=notify
    watchdog_usec: int | None = None  # only when the watchdog is meant for this process
    _sock: socket.socket | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _failed: bool = field(default=False, repr=False)

    @classmethod
    def from_env(cls, env: MutableMapping[str, str] | None = None, pid: int | None = None,
                 unset: bool = True) -> Notifier:
        """Read (and by default remove, so child processes do not inherit them) the
        variables systemd sets; bad values are logged and ignored."""
        env = os.environ if env is None else env
        raw = {k: env.get(k, "") for k in _VARS}
        if unset:
            for k in _VARS:
                env.pop(k, None)
        path = raw["NOTIFY_SOCKET"]
        address: bytes | None = None
        if path.startswith("/"):
            address = path.encode()
        elif path.startswith("@") and len(path) > 1:
            address = b"\0" + path[1:].encode()  # an abstract socket name
        elif path:
            log.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract name; "
                        "not notifying systemd", path)
        return cls(address, _watchdog_usec(raw, os.getpid() if pid is None else pid))

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pings: half of what systemd waits for."""
        if self.address is None or not self.watchdog_usec:
            return None
        return self.watchdog_usec / 2e6

    def send(self, *lines: str) -> bool:
        """One datagram; False (logged once) if it could not be sent. Never raises:
        the supervisor keeps running when systemd's socket goes away."""
        if self.address is None:
            return False
        data = "\n".join(lines).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX,
                                               socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(data, self.address)
            except OSError as e:
                if not self._failed:
                    log.warning("cannot notify systemd at %r: %s", self.address, e)
                    self._failed = True
                return False
        self._failed = False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *_status(status))

    def status(self, status: str) -> bool:
        return self.send(*_status(status))

    def stopping(self, status: str = "") -> bool:
        return self.send("STOPPING=1", *_status(status))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _status(text: str) -> list[str]:
    # one line: a newline would start another KEY=value
    return [f"STATUS={' '.join(text.split())}"] if text else []


def _watchdog_usec(raw: dict[str, str], pid: int) -> int | None:
    usec, wpid = raw["WATCHDOG_USEC"], raw["WATCHDOG_PID"]
    if not usec:
        return None
    if wpid and wpid != str(pid):
        return None  # meant for another process (e.g. our parent)
    try:
        value = int(usec)
    except ValueError:
        value = 0
    if value <= 0:
        log.warning("WATCHDOG_USEC=%r is not a positive number; no watchdog pings", usec)
        return None
    return value


class Watchdog:
    """WATCHDOG=1 every `notifier.watchdog_interval` seconds while the loop is healthy.

    The main loop calls busy() when a pass starts and idle() when it waits; the
    pings stop while one pass has been busy for longer than the watchdog interval
    systemd set (`stall_limit`, default the whole WATCHDOG_USEC)."""

    def __init__(self, notifier: Notifier, stall_limit: float | None = None) -> None:
        self.notifier = notifier
        self.interval = notifier.watchdog_interval
        usec = notifier.watchdog_usec
        self.stall_limit = stall_limit if stall_limit is not None else \
            (usec / 1e6 if usec else 0.0)
        self._busy_since: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False

    def busy(self) -> None:
        if self._busy_since is None:
            self._busy_since = time.monotonic()

    def idle(self) -> None:
        self._busy_since = None
        self._warned = False

    def healthy(self) -> bool:
        since = self._busy_since
        if since is None or time.monotonic() - since < self.stall_limit:
            return True
        if not self._warned:
            log.error("a reconcile pass has been busy for %.0fs: no more watchdog pings; "
                      "systemd will restart the supervisor", time.monotonic() - since)
            self._warned = True
        return False

    def start(self) -> None:
        """Start pinging (nothing to do when systemd set no watchdog)."""
        if self.interval is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self.interval is not None
        while True:
            if self.healthy():
                self.notifier.watchdog()
            if self._stop.wait(self.interval):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
