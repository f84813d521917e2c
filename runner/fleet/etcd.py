"""A small etcd v3 client over gRPC, on stubs generated from our own protos/etcd.

One `Etcd` talks to a cluster through a list of endpoints (`https://10.0.0.1:2379`),
with TLS client certificates; it uses one endpoint at a time and moves on to the
next when a call finds it unreachable, without a leader or too slow. With auth
enabled, etcd takes the user name from the client certificate's CN, so a device's
certificate is its credential: no passwords, no tokens.

Every failure is an EtcdError naming the operation, the key and the endpoint.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc

from runner.errors import NirunnerError
from runner.pb.etcd.authpb import auth_pb2
from runner.pb.etcd.etcdserverpb import rpc_pb2 as pb
from runner.pb.etcd.etcdserverpb import rpc_pb2_grpc as rpc
from runner.pb.etcd.mvccpb import kv_pb2

T = TypeVar("T")

# The channel notices a dead peer (a cut link, a frozen member) by HTTP/2 pings
# while a call is open: etcd accepts pings every 5 s at most (--grpc-keepalive-min-time).
_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 64 << 20),
    # a member that comes back is retried soon, not after gRPC's default 2 min
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1_000),
    # ... and not through a subchannel shared with earlier channels, still backing off
    ("grpc.use_local_subchannel_pool", 1),
]
WATCH_OPEN = 1.0  # seconds for a member to confirm a watch; then the next one is tried
# Watch streams ask etcd to cancel them when their member loses the leader, so a
# member cut off from the others does not keep a watch silently stale.
_REQUIRE_LEADER = (("hasleader", "true"),)
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class EtcdError(NirunnerError):
    """An etcd call failed; the message names the operation, the key and the endpoint."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class Unavailable(EtcdError):
    """No endpoint answered (all down, unreachable or without a leader)."""


class PermissionDenied(EtcdError):
    """etcd refused the call for this user (RBAC)."""


class Compacted(EtcdError):
    """The revision asked for was compacted away: read everything again."""

    def __init__(self, message: str, compact_revision: int) -> None:
        super().__init__(message, grpc.StatusCode.OUT_OF_RANGE)
        self.compact_revision = compact_revision


@dataclass(frozen=True)
class TlsFiles:
    ca: str  # PEM bundle that signs the members' certificates
    cert: str | None = None  # our client certificate (PEM); its CN is the etcd user
    key: str | None = None  # its private key (PEM)


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


@dataclass(frozen=True)
class Event:
    type: str  # "put" or "delete"
    kv: KeyValue  # for a delete: the key and the revision of the deletion


@dataclass(frozen=True)
class WatchBatch:
    revision: int  # the store's revision when etcd sent it
    events: tuple[Event, ...]


def prefix_end(prefix: str) -> bytes:
    """The range end that covers every key starting with `prefix`."""
    raw = bytearray(prefix.encode())
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\0"  # every key


def _kv(kv: kv_pb2.KeyValue) -> KeyValue:
    return KeyValue(kv.key.decode(errors="replace"), kv.value, kv.create_revision,
                    kv.mod_revision, kv.version, kv.lease)


def _target(endpoint: str) -> tuple[str, bool]:
    """(host:port, uses TLS) of `https://host:port`, `http://host:port` or `host:port`."""
    url = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    if url.scheme not in ("http", "https") or not url.hostname or url.port is None:
        raise EtcdError(f"etcd endpoint {endpoint!r} is not like https://HOST:PORT")
    host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
    return f"{host}:{url.port}", url.scheme == "https"


def _read(path: str | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise EtcdError(f"cannot read the etcd {what} {path}: {e.strerror}") from None


class Etcd:
    """A client of one etcd cluster; thread-safe (gRPC channels are)."""

    def __init__(self, endpoints: Sequence[str], tls: TlsFiles | None = None,
                 timeout: float = 5.0) -> None:
        if not endpoints:
            raise EtcdError("no etcd endpoints given")
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self._targets = [_target(e) for e in self.endpoints]
        self._creds: grpc.ChannelCredentials | None = None
        if any(secure for _, secure in self._targets):
            if tls is None:
                raise EtcdError("https etcd endpoints need TLS files (ca, cert, key)")
            self._creds = grpc.ssl_channel_credentials(
                root_certificates=_read(tls.ca, "CA file"),
                private_key=_read(tls.key, "key file"),
                certificate_chain=_read(tls.cert, "certificate file"))
        self._lock = threading.Lock()
        self._current = 0
        self._channels: dict[int, grpc.Channel] = {}

    # -- connections ---------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The endpoint calls go to now."""
        return self.endpoints[self._current]

    def _channel(self, index: int) -> grpc.Channel:
        with self._lock:
            ch = self._channels.get(index)
            if ch is None:
                target, secure = self._targets[index]
                ch = (grpc.secure_channel(target, self._creds, options=_OPTIONS)
                      if secure and self._creds else
                      grpc.insecure_channel(target, options=_OPTIONS))
                self._channels[index] = ch
            return ch

    def _failed(self, index: int) -> None:
        """Drop the endpoint's channel (the next use reconnects at once) and move on."""
        with self._lock:
            ch = self._channels.pop(index, None)
            if self._current == index:
                self._current = (index + 1) % len(self.endpoints)
        if ch is not None:
            ch.close()

    def close(self) -> None:
        with self._lock:
            channels, self._channels = list(self._channels.values()), {}
        for ch in channels:
            ch.close()

    def __enter__(self) -> Etcd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _failover(self, op: str, attempt: Callable[[int], T]) -> T:
        """`attempt(endpoint index)` on the current endpoint, then on the others while
        they are unreachable, without a leader or too slow."""
        tried: list[str] = []
        start = self._current
        for step in range(len(self.endpoints)):
            index = (start + step) % len(self.endpoints)
            try:
                result = attempt(index)
            except EtcdError as e:
                if e.code not in _RETRYABLE:
                    raise
                tried.append(str(e))
                self._failed(index)
                continue
            self._current = index
            return result
        raise Unavailable(f"{op}: no etcd endpoint answered ({'; '.join(tried)})",
                          grpc.StatusCode.UNAVAILABLE)

    def _call(self, op: str, call: Callable[[grpc.Channel, float], T]) -> T:
        """One unary call, `call(channel, timeout)`, with failover."""
        def attempt(index: int) -> T:
            try:
                return call(self._channel(index), self.timeout)
            except grpc.RpcError as e:
                raise wrap(op, e, self.endpoints[index]) from None
        return self._failover(op, attempt)

    # -- keys ----------------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        r = self._call(f"get {key}", lambda ch, t: rpc.KVStub(ch).Range(
            pb.RangeRequest(key=key.encode()), timeout=t))
        return _kv(r.kvs[0]) if r.kvs else None

    def get_prefix(self, prefix: str, revision: int = 0,
                   keys_only: bool = False) -> tuple[list[KeyValue], int]:
        """Every key under `prefix` (sorted) and the revision they were read at."""
        req = pb.RangeRequest(key=prefix.encode(), range_end=prefix_end(prefix),
                              revision=revision, keys_only=keys_only)
        r = self._call(f"list {prefix}", lambda ch, t: rpc.KVStub(ch).Range(req, timeout=t))
        return [_kv(kv) for kv in r.kvs], r.header.revision

    def put(self, key: str, value: bytes | str, lease: int = 0) -> int:
        """Store `value`; returns the new revision."""
        raw = value.encode() if isinstance(value, str) else value
        r = self._call(f"put {key}", lambda ch, t: rpc.KVStub(ch).Put(
            pb.PutRequest(key=key.encode(), value=raw, lease=lease), timeout=t))
        return int(r.header.revision)

    def delete(self, key: str, prefix: bool = False) -> int:
        """Delete `key` (or every key under it); returns how many were deleted."""
        req = pb.DeleteRangeRequest(key=key.encode(),
                                    range_end=prefix_end(key) if prefix else b"")
        r = self._call(f"delete {key}", lambda ch, t: rpc.KVStub(ch).DeleteRange(req, timeout=t))
        return int(r.deleted)

    def txn(self, compare: Sequence[pb.Compare], success: Sequence[pb.RequestOp],
            failure: Sequence[pb.RequestOp] = (), what: str = "txn") -> pb.TxnResponse:
        req = pb.TxnRequest(compare=compare, success=success, failure=failure)
        return self._call(what, lambda ch, t: rpc.KVStub(ch).Txn(req, timeout=t))

    def compact(self, revision: int) -> None:
        self._call(f"compact at {revision}", lambda ch, t: rpc.KVStub(ch).Compact(
            pb.CompactionRequest(revision=revision, physical=True), timeout=t))

    # -- leases --------------------------------------------------------------------

    def lease_grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: (id, TTL in seconds as granted)."""
        r = self._call(f"grant a lease of {ttl}s", lambda ch, t: rpc.LeaseStub(ch).LeaseGrant(
            pb.LeaseGrantRequest(TTL=ttl), timeout=t))
        if r.error:
            raise EtcdError(f"grant a lease of {ttl}s: {r.error}")
        return int(r.ID), int(r.TTL)

    def lease_keepalive(self, lease: int) -> int:
        """Renew the lease once; returns its new TTL, <= 0 when it has expired."""
        def once(ch: grpc.Channel, t: float) -> int:
            stream = rpc.LeaseStub(ch).LeaseKeepAlive(iter([pb.LeaseKeepAliveRequest(ID=lease)]),
                                                      timeout=t)
            try:
                for r in stream:
                    return int(r.TTL)
                return 0
            finally:
                stream.cancel()
        return self._call(f"keep lease {lease:x} alive", once)

    def lease_revoke(self, lease: int) -> None:
        self._call(f"revoke lease {lease:x}", lambda ch, t: rpc.LeaseStub(ch).LeaseRevoke(
            pb.LeaseRevokeRequest(ID=lease), timeout=t))

    def lease_ttl(self, lease: int) -> int:
        """Seconds left on the lease; -1 when it has expired or never existed."""
        r = self._call(f"read lease {lease:x}", lambda ch, t: rpc.LeaseStub(ch).LeaseTimeToLive(
            pb.LeaseTimeToLiveRequest(ID=lease), timeout=t))
        return int(r.TTL)

    # -- cluster, auth -------------------------------------------------------------

    def status(self) -> pb.StatusResponse:
        """The current endpoint's member status (version, leader, revision)."""
        return self._call("status", lambda ch, t: rpc.MaintenanceStub(ch).Status(
            pb.StatusRequest(), timeout=t))

    def members(self) -> list[pb.Member]:
        return list(self._call("list members", lambda ch, t: rpc.ClusterStub(ch).MemberList(
            pb.MemberListRequest(), timeout=t)).members)

    def auth(self, op: str, method: str, request: Any) -> Any:
        """One call of etcd's Auth service, e.g. auth("add role x", "RoleAdd", req)."""
        return self._call(op, lambda ch, t: getattr(rpc.AuthStub(ch), method)(request, timeout=t))

    # -- watch ---------------------------------------------------------------------

    def watch(self, prefix: str, start_revision: int) -> Watch:
        """Watch every key under `prefix` from `start_revision` (inclusive) on one endpoint.

        Raises Compacted when that revision is gone, Unavailable when no endpoint
        takes the watch; the returned Watch raises the same when it ends.
        """
        def attempt(index: int) -> Watch:
            w = Watch(self, index, prefix, start_revision)
            # short: while a link is down, each try waits for a connection that may have
            # just become possible; the next try starts a fresh one at once
            w.open(min(self.timeout, WATCH_OPEN))
            return w
        return self._failover(f"watch {prefix} from revision {start_revision}", attempt)


class Watch:
    """One watch stream on one endpoint. Iterate for batches of events; `cancel()` ends it."""

    def __init__(self, etcd: Etcd, index: int, prefix: str, start_revision: int) -> None:
        self._etcd, self._index = etcd, index
        self.endpoint = etcd.endpoints[index]
        self.prefix, self.start_revision = prefix, start_revision
        self._requests: queue.Queue[pb.WatchRequest | None] = queue.Queue()
        self._call: Any = None
        self._cancelled = threading.Event()

    def _op(self) -> str:
        return f"watch {self.prefix} from revision {self.start_revision}"

    def _outgoing(self) -> Iterator[pb.WatchRequest]:
        while True:
            req = self._requests.get()
            if req is None:
                return
            yield req

    def open(self, timeout: float) -> None:
        """Start the stream and wait (at most `timeout`) until etcd confirms the watch."""
        self._requests.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(
            key=self.prefix.encode(), range_end=prefix_end(self.prefix),
            start_revision=self.start_revision, progress_notify=True)))
        stub = rpc.WatchStub(self._etcd._channel(self._index))
        self._call = stub.Watch(self._outgoing(), metadata=_REQUIRE_LEADER)
        timer = threading.Timer(timeout, self._call.cancel)
        timer.start()
        try:
            first = self._first(timer, timeout)
            self._check(first)
            if not first.created:
                raise EtcdError(f"{self._op()}: {self.endpoint} sent no confirmation",
                                grpc.StatusCode.UNAVAILABLE)
        except BaseException:
            self.cancel()
            raise
        finally:
            timer.cancel()

    def _first(self, timer: threading.Timer, timeout: float) -> pb.WatchResponse:
        try:
            return next(self._call)
        except StopIteration:
            raise EtcdError(f"{self._op()}: {self.endpoint} closed the stream",
                            grpc.StatusCode.UNAVAILABLE) from None
        except grpc.RpcError as e:
            if not timer.is_alive():
                raise EtcdError(f"{self._op()}: {self.endpoint} did not answer in {timeout:g}s",
                                grpc.StatusCode.DEADLINE_EXCEEDED) from None
            raise wrap(self._op(), e, self.endpoint) from None

    def _check(self, r: pb.WatchResponse) -> None:
        if r.compact_revision:
            raise Compacted(f"{self._op()}: revision {self.start_revision} is compacted "
                            f"(oldest kept: {r.compact_revision})", int(r.compact_revision))
        if r.canceled:
            why = r.cancel_reason or "canceled by the server"
            code = (grpc.StatusCode.PERMISSION_DENIED if "permission denied" in why
                    else grpc.StatusCode.UNAVAILABLE)
            cls = PermissionDenied if code == grpc.StatusCode.PERMISSION_DENIED else EtcdError
            raise cls(f"{self._op()} on {self.endpoint}: {why}", code)

    def __iter__(self) -> Iterator[WatchBatch]:
        try:
            yield from self._batches()
        finally:
            self.cancel()  # whatever ended the iteration, the stream is done

    def _batches(self) -> Iterator[WatchBatch]:
        try:
            for r in self._call:
                self._check(r)
                yield WatchBatch(int(r.header.revision), tuple(
                    Event("delete" if e.type == kv_pb2.Event.DELETE else "put", _kv(e.kv))
                    for e in r.events))
        except grpc.RpcError as e:
            if self._cancelled.is_set():
                return
            self._etcd._failed(self._index)
            raise wrap(self._op(), e, self.endpoint) from None
        if not self._cancelled.is_set():
            self._etcd._failed(self._index)
            raise EtcdError(f"{self._op()}: {self.endpoint} ended the stream",
                            grpc.StatusCode.UNAVAILABLE)

    def cancel(self) -> None:
        self._cancelled.set()
        self._requests.put(None)
        if self._call is not None:
            self._call.cancel()


def _details(e: grpc.RpcError) -> str:
    if isinstance(e, grpc.Call):
        return e.details() or e.code().name.lower()
    return str(e)


def wrap(op: str, e: grpc.RpcError, endpoint: str) -> EtcdError:
    """The EtcdError for a failed call, with the operation and the endpoint."""
    code = e.code() if isinstance(e, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = _details(e)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDenied(f"{op}: etcd at {endpoint} refused it: {details}", code)
    if code == grpc.StatusCode.OUT_OF_RANGE and "compacted" in details:
        return Compacted(f"{op}: {details}", 0)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return EtcdError(f"{op}: etcd at {endpoint} did not answer in time", code)
    return EtcdError(f"{op}: etcd at {endpoint}: {details}", code)


# -- transaction building blocks ------------------------------------------------------


def put_op(key: str, value: bytes | str, lease: int = 0) -> pb.RequestOp:
    raw = value.encode() if isinstance(value, str) else value
    return pb.RequestOp(request_put=pb.PutRequest(key=key.encode(), value=raw, lease=lease))


def delete_op(key: str, prefix: bool = False) -> pb.RequestOp:
    return pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(
        key=key.encode(), range_end=prefix_end(key) if prefix else b""))


def unchanged_since(key: str, mod_revision: int) -> pb.Compare:
    """Holds while `key` was last changed at `mod_revision` (0: while it does not exist)."""
    return pb.Compare(result=pb.Compare.EQUAL, target=pb.Compare.MOD, key=key.encode(),
                      mod_revision=mod_revision)


def permission(kind: str, key: str, prefix: bool = True) -> auth_pb2.Permission:
    """An RBAC permission on `key` (a prefix by default): kind read, write or readwrite."""
    types = {"read": auth_pb2.Permission.READ, "write": auth_pb2.Permission.WRITE,
             "readwrite": auth_pb2.Permission.READWRITE}
    return auth_pb2.Permission(permType=types[kind], key=key.encode(),
                               range_end=prefix_end(key) if prefix else b"")

