"""The CNI plugin's Backend over the supervisor's gRPC API (loaded only when a verb talks).

Today's API has no CNI calls yet (they come with the item reconciler: see
protos/nirunner/v1/cni_sketch.proto.txt): readiness is answered from `Status`,
the other calls report that this supervisor does not support them.

Errors: the sketch has the server put an `ErrorKind` value in the trailing
metadata `nirunner-error-kind`; without it the gRPC status code decides.
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

# gRPC status code name -> what it means to the plugin, when the server named no kind
_BY_STATUS = {
    "UNAVAILABLE": ErrorKind.UNAVAILABLE,
    "DEADLINE_EXCEEDED": ErrorKind.UNAVAILABLE,
    "NOT_FOUND": ErrorKind.NOT_FOUND,
    "FAILED_PRECONDITION": ErrorKind.NOT_READY,
    "INVALID_ARGUMENT": ErrorKind.INVALID,
    "ALREADY_EXISTS": ErrorKind.EXISTS,
    "RESOURCE_EXHAUSTED": ErrorKind.NO_LEASE,
    "UNIMPLEMENTED": ErrorKind.UNSUPPORTED,
    "ABORTED": ErrorKind.CONFLICT,
}


def error_kind(status: str, metadata: Sequence[tuple[str, Any]] = ()) -> ErrorKind:
    """The ErrorKind of a failed call, from its trailing metadata or its status code."""
    for key, value in metadata:
        if key == ERROR_KIND_KEY:
            try:
                return ErrorKind(value.decode() if isinstance(value, bytes) else value)
            except ValueError:
                break
    return _BY_STATUS.get(status, ErrorKind.FAILED)


def readiness(st: dict[str, Any]) -> Readiness:
    """An NI's readiness from its `status` object: its task and dnsmasq run.

    Not ready while apps are plugged in means they lost DHCP and DNS: degraded.
    """
    services = st.get("services") or {}
    running = st.get("state") == "running" or (
        st.get("state") == "degraded" and services.get("dnsmasq") == "running")
    if running:
        return Readiness(True)
    plugged = bool(st.get("attached") or st.get("apps"))
    reason = f"{st.get('state', 'unknown')}: {st.get('reason') or 'no reason given'}"
    return Readiness(False, reason, degraded=plugged)


class GrpcBackend:
    def __init__(self, socket: str, timeout: float) -> None:
        if not os.path.exists(socket):
            raise BackendError(ErrorKind.UNAVAILABLE,
                               f"the nirunner supervisor is not running (no API socket {socket})")
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        import grpc

        from runner.pb.nirunner.v1 import nirunner_pb2 as pb
        from runner.pb.nirunner.v1 import nirunner_pb2_grpc as pb_grpc

        self._grpc, self._pb = grpc, pb
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

    def _unsupported(self, what: str) -> NoReturn:
        raise BackendError(ErrorKind.UNSUPPORTED,
                           f"this supervisor's API has no {what} call yet (issue 12)")

    def attach(self, req: AttachRequest) -> Attachment:
        self._unsupported("CNI attach")

    def detach(self, ni: str, key: AttachmentKey) -> bool:
        self._unsupported("CNI detach")

    def check(self, ni: str, key: AttachmentKey) -> CheckReport:
        self._unsupported("CNI check")

    def gc(self, ni: str, network: str, valid: Sequence[AttachmentKey]) -> GcReport:
        self._unsupported("CNI gc")

    def ready(self, ni: str) -> Readiness:
        import json

        try:
            resp = self._stub.Status(self._pb.StatusRequest(names=[ni]), timeout=self.timeout)
        except self._grpc.RpcError as e:
            # today's server answers FAILED_PRECONDITION "no such NI: x" for an unknown NI
            if isinstance(e, self._grpc.Call) and "no such NI" in (e.details() or ""):
                raise BackendError(ErrorKind.NOT_FOUND, e.details()) from None
            self._fail(e)
        if not resp.ni_json:
            raise BackendError(ErrorKind.NOT_FOUND, f"no such NI: {ni}")
        return readiness(json.loads(resp.ni_json[0]))
