"""The CNI plugin's Backend over the supervisor's gRPC API (loaded only when a verb talks).

Errors: the server puts an `ErrorKind` value in the trailing metadata
`nirunner-error-kind`; without it (an older server) the gRPC status code
decides, and a call the server does not know is UNSUPPORTED (CNI error 104).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, NoReturn

from runner.cni.api import (
    Attachment,
    AttachmentKey,
    AttachRequest,
    BackendError,
    CheckReport,
    ErrorKind,
    GcReport,
    Readiness,
)

ERROR_KIND_KEY = "nirunner-error-kind"

# what each kind is as a gRPC status code (the server's side)
STATUS_OF = {
    ErrorKind.UNAVAILABLE: "UNAVAILABLE",
    ErrorKind.NOT_FOUND: "NOT_FOUND",
    ErrorKind.NOT_READY: "FAILED_PRECONDITION",
    ErrorKind.INVALID: "INVALID_ARGUMENT",
    ErrorKind.CONFLICT: "ABORTED",
    ErrorKind.EXISTS: "ALREADY_EXISTS",
    ErrorKind.NO_LEASE: "RESOURCE_EXHAUSTED",
    ErrorKind.UNSUPPORTED: "UNIMPLEMENTED",
    ErrorKind.FAILED: "INTERNAL",
}
# gRPC status code name -> what it means to the plugin, when the server named no kind
_BY_STATUS = {**{v: k for k, v in STATUS_OF.items()}, "DEADLINE_EXCEEDED": ErrorKind.UNAVAILABLE}


def error_kind(status: str, metadata: Sequence[tuple[str, Any]] = ()) -> ErrorKind:
    """The ErrorKind of a failed call, from its trailing metadata or its status code."""
    for key, value in metadata:
        if key == ERROR_KIND_KEY:
            try:
                return ErrorKind(value.decode() if isinstance(value, bytes) else value)
            except ValueError:
                break
    return _BY_STATUS.get(status, ErrorKind.FAILED)


class GrpcBackend:
    def __init__(self, socket: str, timeout: float) -> None:
        if not os.path.exists(socket):
            raise BackendError(ErrorKind.UNAVAILABLE,
                               f"the nirunner supervisor is not running (no API socket {socket})")
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        import grpc

        from runner.cni import wire
        from runner.pb.nirunner.v1 import nirunner_pb2 as pb
        from runner.pb.nirunner.v1 import nirunner_pb2_grpc as pb_grpc

        self._grpc, self._pb, self._wire = grpc, pb, wire
        self.socket, self.timeout = socket, timeout
        self._channel = grpc.insecure_channel(f"unix://{socket}")
        self._stub = pb_grpc.SupervisorStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def _fail(self, e: Exception) -> NoReturn:
        grpc = self._grpc
        if not isinstance(e, grpc.Call):
            raise BackendError(ErrorKind.FAILED, f"API call failed: {e}") from None
        kind = error_kind(e.code().name, e.trailing_metadata() or ())
        if kind is ErrorKind.UNAVAILABLE:
            raise BackendError(kind, f"the nirunner supervisor is not answering on "
                               f"{self.socket}") from None
        raise BackendError(kind, e.details() or e.code().name) from None

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=self.timeout)
        except self._grpc.RpcError as e:
            self._fail(e)

    def attach(self, req: AttachRequest) -> Attachment:
        resp = self._call("AttachWorkload", self._wire.request_msg(req))
        return self._wire.attachment_of(resp.attachment)

    def detach(self, ni: str, key: AttachmentKey) -> bool:
        req = self._pb.DetachWorkloadRequest(ni=ni, key=self._wire.key_msg(key))
        return bool(self._call("DetachWorkload", req).removed)

    def check(self, ni: str, key: AttachmentKey) -> CheckReport:
        resp = self._call("CheckWorkload", self._pb.CheckWorkloadRequest(
            ni=ni, key=self._wire.key_msg(key)))
        if not resp.known:
            return CheckReport(None)
        return CheckReport(self._wire.attachment_of(resp.intended), tuple(resp.problems))

    def gc(self, ni: str, network: str, valid: Sequence[AttachmentKey]) -> GcReport:
        resp = self._call("GcWorkloads", self._pb.GcWorkloadsRequest(
            ni=ni, network=network, valid=[self._wire.key_msg(k) for k in valid]))
        return GcReport(tuple(self._wire.key_of(k) for k in resp.removed), tuple(resp.errors))

    def ready(self, ni: str) -> Readiness:
        resp = self._call("NiReady", self._pb.NiReadyRequest(ni=ni))
        return Readiness(resp.ready, resp.reason, resp.degraded)
