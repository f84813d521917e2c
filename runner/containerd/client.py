"""A containerd client over gRPC, built on stubs generated from our own protos.

Every call carries the `containerd-namespace` header and, when given, a
`containerd-lease` header, and every gRPC failure is re-raised as a
ContainerdError that names the operation.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
import grpc.experimental
from google.protobuf import empty_pb2

from runner.containerd.errors import ContainerdError, Unavailable, from_rpc
from runner.defaults import CONTAINERD_ADDRESS, CONTAINERD_NAMESPACE
from runner.pb.containerd.services.containers.v1 import containers_pb2_grpc
from runner.pb.containerd.services.content.v1 import content_pb2_grpc
from runner.pb.containerd.services.diff.v1 import diff_pb2_grpc
from runner.pb.containerd.services.events.v1 import events_pb2_grpc
from runner.pb.containerd.services.images.v1 import images_pb2_grpc
from runner.pb.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
from runner.pb.containerd.services.namespaces.v1 import namespaces_pb2, namespaces_pb2_grpc
from runner.pb.containerd.services.snapshots.v1 import snapshots_pb2_grpc
from runner.pb.containerd.services.tasks.v1 import tasks_pb2_grpc
from runner.pb.containerd.services.version.v1 import version_pb2_grpc

DEFAULT_ADDRESS = CONTAINERD_ADDRESS
DEFAULT_NAMESPACE = CONTAINERD_NAMESPACE
DEFAULT_SNAPSHOTTER = "overlayfs"
RUNTIME = "io.containerd.runc.v2"

T = TypeVar("T")


class Client:
    """One gRPC channel to containerd, scoped to one containerd namespace."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        namespace: str = DEFAULT_NAMESPACE,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.address = address
        self.namespace = namespace
        self.snapshotter = snapshotter
        self.timeout = timeout
        if not os.path.exists(address):
            raise Unavailable(f"containerd is not reachable at {address}: no such socket")
        self._channel = grpc.insecure_channel(
            f"unix://{address}",
            options=[
                ("grpc.max_receive_message_length", 16 << 20),
                ("grpc.max_send_message_length", 16 << 20),
                # containerd restarts in well under a second: reconnect quickly
                # (gRPC's default backoff grows to two minutes)
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 250),  # a local socket: retries are cheap
                # streams (task exits) read in their own thread, waiting in gRPC's core:
                # the default iterator wakes every 0.1 s, with a spin thread besides
                # (0.15 % of a core for one idle subscription)
                (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1),
            ],
        )
        try:
            grpc.channel_ready_future(self._channel).result(timeout=connect_timeout)
        except grpc.FutureTimeoutError:
            self._channel.close()
            raise Unavailable(
                f"containerd is not reachable at {address} (no answer in {connect_timeout:g}s)"
            ) from None
        ch = self._channel
        self.containers = containers_pb2_grpc.ContainersStub(ch)
        self.content = content_pb2_grpc.ContentStub(ch)
        self.diff = diff_pb2_grpc.DiffStub(ch)
        self.events = events_pb2_grpc.EventsStub(ch)
        self.images = images_pb2_grpc.ImagesStub(ch)
        self.leases = leases_pb2_grpc.LeasesStub(ch)
        self.snapshots = snapshots_pb2_grpc.SnapshotsStub(ch)
        self.tasks = tasks_pb2_grpc.TasksStub(ch)
        self.version_svc = version_pb2_grpc.VersionStub(ch)
        self.namespaces_svc = namespaces_pb2_grpc.NamespacesStub(ch)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def metadata(self, lease: str | None = None) -> list[tuple[str, str]]:
        md = [("containerd-namespace", self.namespace)]
        if lease:
            md.append(("containerd-lease", lease))
        return md

    def call(
        self,
        op: str,
        method: Callable[..., T],
        request: Any,
        *,
        lease: str | None = None,
        timeout: float | None = None,
    ) -> T:
        """Call a unary method; `op` names what is being done, for the error message."""
        try:
            return method(
                request,
                metadata=self.metadata(lease),
                timeout=self.timeout if timeout is None else timeout,
            )
        except grpc.RpcError as e:
            raise from_rpc(op, e, self.address) from None

    def namespaces(self) -> list[str]:
        resp = self.call("list namespaces", self.namespaces_svc.List,
                         namespaces_pb2.ListNamespacesRequest())
        return [ns.name for ns in resp.namespaces]

    def version(self) -> str:
        resp = self.call("get containerd version", self.version_svc.Version, empty_pb2.Empty())
        return str(resp.version)

    @contextlib.contextmanager
    def lease(self, purpose: str, expire: dt.timedelta = dt.timedelta(hours=1)) -> Iterator[str]:
        """A temporary lease: what is created under it is safe from GC until it ends."""
        lease_id = f"nirunner-{purpose}-{uuid.uuid4().hex[:12]}"
        until = dt.datetime.now(dt.UTC) + expire
        req = leases_pb2.CreateRequest(
            id=lease_id,
            labels={"containerd.io/gc.expire": until.strftime("%Y-%m-%dT%H:%M:%SZ")},
        )
        self.call(f"create lease {lease_id}", self.leases.Create, req)
        try:
            yield lease_id
        finally:
            with contextlib.suppress(ContainerdError):
                self.call(
                    f"delete lease {lease_id}",
                    self.leases.Delete,
                    leases_pb2.DeleteRequest(id=lease_id, sync=False),
                )
