"""Errors of the containerd client: one message a person can act on, no gRPC tracebacks."""

from __future__ import annotations

import re

import grpc

from runner.errors import NirunnerError


class ContainerdError(NirunnerError):
    """A containerd call failed; the message names the operation and the object."""


class Unavailable(ContainerdError):
    """containerd does not answer on its socket."""


class NotFound(ContainerdError):
    """The object (image, container, task, snapshot...) does not exist."""


class AlreadyExists(ContainerdError):
    """An object of that name or digest exists already."""


class FailedPrecondition(ContainerdError):
    """The object is in the wrong state for the operation (e.g. a running task)."""


class ShimGone(ContainerdError):
    """The task's shim went away under the call: it closed its connection before it
    answered ("ttrpc: closed"), or its socket went as containerd dialled it.

    A shared shim stops once its last task is deleted, and containerd 1.6 lets that stop
    overtake its answer to another delete of the group (the task is removed all the same)
    or a task joining the group (the task is not made)."""


# containerd's texts for a shim connection that closed, and for a shim socket that was
# there when the shim was chosen and gone when containerd dialled it
_SHIM_GONE = re.compile(r"ttrpc: closed|start failed: dial unix \S+: connect: "
                        r"(no such file or directory|connection refused)")


_BY_CODE: dict[grpc.StatusCode, type[ContainerdError]] = {
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
}


def from_rpc(op: str, err: grpc.RpcError, address: str) -> ContainerdError:
    """Turn a gRPC error into the matching ContainerdError, with context."""
    code = err.code() if isinstance(err, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (err.details() if isinstance(err, grpc.Call) else str(err)) or code.name.lower()
    if code == grpc.StatusCode.UNAVAILABLE:
        return Unavailable(f"containerd is not reachable at {address}: {details}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Unavailable(f"{op}: containerd at {address} did not answer in time")
    cls = _BY_CODE.get(code, ContainerdError)
    if cls is ContainerdError and _SHIM_GONE.search(details):
        cls = ShimGone
    return cls(f"{op}: {details}")
