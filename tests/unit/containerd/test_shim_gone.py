"""A shared shim that goes away under a call: told apart, and the call asked again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from runner.containerd import tasks
from runner.containerd.errors import ContainerdError, NotFound, ShimGone, from_rpc
from runner.pb.containerd.services.snapshots.v1 import snapshots_pb2
from runner.pb.containerd.services.tasks.v1 import tasks_pb2

CLOSED = "failed to delete task: ttrpc: closed"
DIALLED = ("failed to start shim: start failed: dial unix /run/containerd/s/3be1: "
           "connect: no such file or directory")


class RpcError(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(("code", "details", "kind"), [
    (grpc.StatusCode.UNKNOWN, CLOSED, ShimGone),
    (grpc.StatusCode.UNKNOWN, f"failed to create shim task: {CLOSED[22:]}: unknown", ShimGone),
    (grpc.StatusCode.UNKNOWN, DIALLED, ShimGone),
    (grpc.StatusCode.UNKNOWN, "failed to delete task: permission denied", ContainerdError),
    (grpc.StatusCode.NOT_FOUND, "task ni-a not found: ttrpc: closed", NotFound),
])
def test_a_shim_gone_is_told_apart(code: grpc.StatusCode, details: str,
                                   kind: type[ContainerdError]) -> None:
    err = from_rpc("delete task ni-a", RpcError(code, details), "/run/c.sock")
    assert type(err) is kind
    assert str(err) == f"delete task ni-a: {details}"


MOUNTS = snapshots_pb2.MountsResponse()


class Client:
    """Answers each call by its operation's first word, from a script of results."""

    def __init__(self, **script: list[Any]) -> None:
        self.script = script
        self.calls: list[str] = []
        self.tasks = self.snapshots = self  # methods are not called: `call` answers
        self.snapshotter = "overlayfs"

    def __getattr__(self, name: str) -> None:  # c.tasks.Delete and such: never called
        return None

    def call(self, op: str, method: Any, request: Any, **kw: Any) -> Any:
        self.calls.append(op)
        out = self.script[op.split()[0]].pop(0)
        if isinstance(out, BaseException):
            raise out
        return out


def test_a_delete_the_shim_did_not_answer_is_asked_again() -> None:
    c = Client(delete=[ShimGone(CLOSED), NotFound("task ni-a not found")],
               signal=[NotFound("no process")])
    assert tasks.stop_task(c, "ni-a") is None  # type: ignore[arg-type]
    assert c.calls == ["signal 15 to task ni-a", "delete task ni-a", "delete task ni-a"]


def test_a_second_shim_gone_on_delete_is_an_error() -> None:
    c = Client(delete=[ShimGone(CLOSED), ShimGone(CLOSED)])
    with pytest.raises(ShimGone):
        tasks.delete_task(c, "ni-a")  # type: ignore[arg-type]


def _start(c: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(tasks.time, "sleep", slept.append)
    tasks.start_task(c, "ni-a", str(tmp_path / "ni-a.log"))  # type: ignore[arg-type]
    return slept


def test_a_task_joining_a_stopping_shim_is_created_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = Client(get=[MOUNTS],
               create=[ShimGone(CLOSED), ShimGone(DIALLED), tasks_pb2.CreateTaskResponse()],
               start=[tasks_pb2.StartResponse(pid=42)])
    assert _start(c, tmp_path, monkeypatch) == list(tasks.SHIM_GONE_PAUSES[:2])
    assert c.calls.count("create task ni-a") == 3


def test_a_shim_that_stays_gone_fails_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = len(tasks.SHIM_GONE_PAUSES) + 1
    c = Client(get=[MOUNTS], create=[ShimGone(CLOSED)] * n)
    with pytest.raises(ShimGone):
        _start(c, tmp_path, monkeypatch)
    assert c.calls.count("create task ni-a") == n


def test_other_errors_of_a_create_are_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = Client(get=[MOUNTS],
               create=[ContainerdError("create task ni-a: permission denied")])
    with pytest.raises(ContainerdError, match="permission denied"):
        _start(c, tmp_path, monkeypatch)
    assert c.calls.count("create task ni-a") == 1
