"""Network namespaces: create, remove, enter (per thread), sysctls inside them."""

from __future__ import annotations

import ctypes
import functools
import os
import queue
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from runner.drivers import readcache
from runner.errors import NirunnerError

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)
_here = threading.local()  # the netns a run_in thread entered, for error messages


class NetnsError(NirunnerError):
    pass


def path(name: str) -> str:
    return str(NETNS_DIR / name)


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def inode(name: str) -> int | None:
    """The identity of the netns behind the name (a re-created one has another)."""
    return inode_of_path(path(name))


def inode_of_path(netns_path: str) -> int | None:
    try:
        return os.stat(netns_path).st_ino
    except FileNotFoundError:
        return None


def list_names(prefix: str = "") -> list[str]:
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


# `ip netns add/del` rather than pyroute2's netns module: that one forks the
# (multi-threaded, gRPC-serving) supervisor, which is unsafe; ip also keeps
# /run/netns a shared mount, so containerd and runc see the new namespaces.
def _ip_netns(action: str, name: str) -> None:
    res = subprocess.run(["ip", "netns", action, name], capture_output=True, text=True,
                         timeout=30)
    if res.returncode != 0:
        raise NetnsError(f"{action} netns {name}: {res.stderr.strip()}")


def ensure(name: str) -> bool:
    """Create the named netns if missing; True if it was created."""
    if exists(name):
        return False
    _ip_netns("add", name)
    return True


def remove(name: str) -> None:
    if exists(name):
        _ip_netns("del", name)


def where() -> str:
    """" in <netns>" inside a run_in thread, else "": errors say where they happened."""
    name = getattr(_here, "name", "")
    return f" in {name}" if name else ""


class NoSuchNetns(NetnsError):
    pass


def _enter(name_or_path: str, target: str) -> None:
    """setns(2) of the calling thread into `target`."""
    try:
        fd = os.open(target, os.O_RDONLY)
    except FileNotFoundError:
        raise NoSuchNetns(f"netns {name_or_path} does not exist") from None
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetnsError(f"enter netns {name_or_path}: {os.strerror(err)}")
    finally:
        os.close(fd)
    _here.name = name_or_path.removeprefix(str(NETNS_DIR) + "/")


Outcome = tuple[bool, Any]  # (True, what a call returned) or (False, what it raised)


def _outcome(fn: Callable[[], Any]) -> Outcome:
    """Run fn in a netns thread; what it returned or raised, for the caller's thread."""
    try:
        return True, fn()
    except BaseException as e:  # handed to the caller's thread
        return False, e


def _entered(name_or_path: str, target: str, fn: Callable[[], T]) -> T:
    """fn() in the netns `target`, entered first (a kept thread's call)."""
    _enter(name_or_path, target)
    return fn()


def _ask(inbox: queue.SimpleQueue[Any], *call: Any) -> Any:
    """Hand a call to a netns thread (its `inbox`) and wait: its result, or its error."""
    reply: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
    inbox.put((*call, reply))
    ok, value = reply.get()
    if not ok:
        raise value
    return value


class _Resident:
    """A thread that entered a netns and stays there to run calls (a batch of reads)."""

    def __init__(self, name_or_path: str, target: str) -> None:
        self.calls: queue.SimpleQueue[tuple[Callable[[], Any], queue.SimpleQueue[Any]] | None]
        self.calls = queue.SimpleQueue()
        entered: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()

        def serve() -> None:
            try:
                _enter(name_or_path, target)
            except BaseException as e:
                entered.put(e)
                return
            entered.put(None)
            while (call := self.calls.get()) is not None:
                fn, reply = call
                reply.put(_outcome(fn))

        threading.Thread(target=serve, name=f"netns:{target}", daemon=True).start()
        error = entered.get()
        if error is not None:
            raise error

    def run(self, fn: Callable[[], T]) -> T:
        return _ask(self.calls, fn)  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.calls.put(None)


def run_in(name_or_path: str, fn: Callable[[], T]) -> T:
    """Run fn in a thread that has entered the netns.

    setns(2) changes only the calling thread, so the supervisor's own threads
    stay in the device netns. NoSuchNetns if it does not exist. Inside a read batch
    (runner.drivers.readcache) the thread stays for the batch's next calls there;
    otherwise it is one of a few kept threads that come back after each call.
    """
    target = name_or_path if name_or_path.startswith("/") else path(name_or_path)
    residents = readcache.residents()
    if residents is not None:
        if target not in residents:
            residents[target] = _Resident(name_or_path, target)
        return residents[target].run(fn)  # type: ignore[no-any-return]
    return _hoppers.run(name_or_path, target, fn)


class _Hoppers:
    """Threads that enter a netns for one call and come back to the process's own netns.

    A thread made and joined per call cost ~0.3 ms of the supervisor's CPU and a third of
    an attach's time; these are kept (a few idle ones) instead. A thread that could not
    come back ends: a thread left in a netns would keep that netns, and its links, alive.
    """

    KEEP_IDLE = 4

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[Any]] = []
        self._home: int | None = None

    def _home_fd(self) -> int:
        with self._lock:
            if self._home is None:  # the main thread's netns: where the process lives
                self._home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            return self._home

    def run(self, name_or_path: str, target: str, fn: Callable[[], T]) -> T:
        home = self._home_fd()
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(inbox, home), name="netns-hop",
                             daemon=True).start()
        return _ask(inbox, name_or_path, target, fn)  # type: ignore[no-any-return]

    def _serve(self, inbox: queue.SimpleQueue[Any], home: int) -> None:
        while True:
            name_or_path, target, fn, reply = inbox.get()
            result = _outcome(functools.partial(_entered, name_or_path, target, fn))
            _here.name = ""
            back = _libc.setns(home, CLONE_NEWNET) == 0
            reply.put(result)
            if not back:
                return
            with self._lock:
                if len(self._idle) >= self.KEEP_IDLE:
                    return
                self._idle.append(inbox)


_hoppers = _Hoppers()


def set_sysctls(values: dict[str, str], netns: str | None = None,
                missing_ok: bool = False) -> list[str]:
    """Write sysctls, keyed by their path under /proc/sys (read first: write what differs).

    Returns the keys that do not exist (e.g. of an uplink not plugged yet) when
    missing_ok; otherwise a missing key is an error.
    """
    missing: list[str] = []

    def apply() -> list[str]:
        for key, value in values.items():
            p = Path("/proc/sys") / key
            try:
                if p.read_text().strip() != value:
                    p.write_text(value)
            except FileNotFoundError:
                if not missing_ok:
                    raise NetnsError(f"set sysctl {key}{where()}: no such setting") from None
                missing.append(key)
            except OSError as e:
                raise NetnsError(f"set sysctl {key}={value}{where()}: {e.strerror}") from e
        return missing

    return apply() if netns is None else run_in(netns, apply)


def read_sysctls(keys: list[str], netns: str | None = None) -> dict[str, str]:
    """The current values of the keys that exist."""
    def read() -> dict[str, str]:
        out = {}
        for key in keys:
            try:
                out[key] = (Path("/proc/sys") / key).read_text().strip()
            except OSError:
                pass
        return out

    return read() if netns is None else run_in(netns, read)
