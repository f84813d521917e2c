"""The CLI's side of nirunner's API: one call per command, clear errors."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import grpc

from runner.defaults import API_SOCKET
from runner.errors import NirunnerError
from runner.pb.nirunner.v1 import nirunner_pb2 as pb
from runner.pb.nirunner.v1 import nirunner_pb2_grpc as pb_grpc

DEFAULT_SOCKET = API_SOCKET


class ApiError(NirunnerError):
    pass


class ApiClient:
    def __init__(self, socket: str = DEFAULT_SOCKET, timeout: float = 300.0) -> None:
        self.socket = socket
        self.timeout = timeout
        if not os.path.exists(socket):
            raise ApiError(f"the supervisor is not running (no API socket at {socket}); "
                           f"start it with `nirunner supervise --config FILE`")
        self._channel = grpc.insecure_channel(f"unix://{socket}")
        self._stub = pb_grpc.SupervisorStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=self.timeout)
        except grpc.RpcError as e:
            code = e.code() if isinstance(e, grpc.Call) else None
            details = e.details() if isinstance(e, grpc.Call) else str(e)
            if code == grpc.StatusCode.UNAVAILABLE:
                raise ApiError(f"the supervisor is not answering on {self.socket}") from None
            from runner.api import problems  # only on an error: it imports the model

            refused = problems.decode(e.trailing_metadata()) if isinstance(e, grpc.Call) else None
            if refused is not None:  # invalid input: the same problems as `validate`
                raise refused from None
            raise ApiError(details or str(code)) from None

    def version(self) -> pb.VersionResponse:
        return self._call("Version", pb.VersionRequest())

    def apply(self, docs: list[tuple[str, str]], dry_run: bool = False,
              verbose: bool = False) -> pb.ApplyResponse:
        req = pb.ApplyRequest(documents=[pb.Document(source=s, yaml=t) for s, t in docs],
                              dry_run=dry_run, verbose=verbose)
        return self._call("Apply", req)

    def delete(self, names: list[str]) -> pb.DeleteResponse:
        return self._call("Delete", pb.DeleteRequest(names=names))

    def status(self, names: list[str], detail: bool = False) -> list[dict[str, Any]]:
        return self.status_and_source(names, detail)[0]

    def status_and_source(self, names: list[str], detail: bool = False
                          ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """The NIs' status and, when the desired state comes from a fleet, the source's."""
        resp = self._call("Status", pb.StatusRequest(names=names, detail=detail))
        source = json.loads(resp.source_json) if resp.source_json else None
        return [json.loads(s) for s in resp.ni_json], source

    def attach(self, ni: str, netns: str, ifname: str = "", mac: str = "",
               hostname: str = "", app: str = "") -> pb.AttachResponse:
        return self._call("Attach", pb.AttachRequest(ni=ni, netns=netns, ifname=ifname,
                                                      mac=mac, hostname=hostname, app=app))

    def events(self, follow: bool = False) -> Iterator[pb.Event]:
        try:
            yield from self._stub.Events(pb.EventsRequest(follow=follow),
                                         timeout=None if follow else self.timeout)
        except grpc.RpcError as e:
            if isinstance(e, grpc.Call) and e.code() == grpc.StatusCode.CANCELLED:
                return
            raise ApiError(f"events: {e.details() if isinstance(e, grpc.Call) else e}") from None

    def reload(self) -> pb.ReloadResponse:
        return self._call("Reload", pb.ReloadRequest())

    def roll(self, names: list[str]) -> pb.RollResponse:
        return self._call("Roll", pb.RollRequest(names=names))

    def flows(self, ni: str, follow: bool = False, app: str = "", last: int = 0
              ) -> Iterator[dict[str, Any]]:
        """An NI's flow-log records: those kept, then (follow) new ones as they come."""
        req = pb.FlowsRequest(ni=ni, follow=follow, app=app, last=last)
        try:
            for r in self._stub.Flows(req, timeout=None if follow else self.timeout):
                yield json.loads(r.json)
        except grpc.RpcError as e:
            if isinstance(e, grpc.Call) and e.code() == grpc.StatusCode.CANCELLED:
                return
            if isinstance(e, grpc.Call) and e.code() == grpc.StatusCode.UNAVAILABLE:
                raise ApiError(f"the supervisor is not answering on {self.socket}") from None
            raise ApiError(f"flows: {e.details() if isinstance(e, grpc.Call) else e}") from None

    def detach(self, ni: str, netns: str, ifname: str = "") -> None:
        self._call("Detach", pb.DetachRequest(ni=ni, netns=netns, ifname=ifname))

    def attach_interface(self, ni: str, interface: str) -> pb.Attachment:
        """Take a device interface (a VM's tap) into the NI's bridge."""
        req = pb.AttachWorkloadRequest(ni=ni, key=pb.WorkloadKey(ifname=interface),
                                       interface=interface)
        return self._call("AttachWorkload", req).attachment

    def detach_interface(self, ni: str, interface: str) -> bool:
        """Give a taken interface back to the device netns; False if it was not taken."""
        req = pb.DetachWorkloadRequest(ni=ni, key=pb.WorkloadKey(ifname=interface))
        return bool(self._call("DetachWorkload", req).removed)
