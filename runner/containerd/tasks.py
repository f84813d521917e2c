"""Containers and tasks of NIs: create, start, stop, exec, update, metrics, remove.

A container's rootfs is a read-only *view* snapshot of the image's top layer,
keyed by the container id, so removing a container removes exactly one snapshot.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal as signals
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2, field_mask_pb2

from runner.containerd import spec as oci
from runner.containerd.client import RUNTIME, Client
from runner.containerd.errors import (
    AlreadyExists,
    ContainerdError,
    NotFound,
    ShimGone,
    from_rpc,
)
from runner.containerd.images import resolve_image
from runner.pb.containerd.events import task_pb2 as task_events
from runner.pb.containerd.services.containers.v1 import containers_pb2
from runner.pb.containerd.services.events.v1 import events_pb2
from runner.pb.containerd.services.snapshots.v1 import snapshots_pb2
from runner.pb.containerd.services.tasks.v1 import tasks_pb2
from runner.pb.containerd.types.task import task_pb2

_TASK_EXIT = task_events.TaskExit.DESCRIPTOR.full_name
SIGHUP = 1
SIGKILL = 9
SIGTERM = 15
SHIM_GONE_PAUSES = (0.05, 0.1, 0.2, 0.4, 0.8)  # s, before each new create of a task whose
#                                              shared shim was stopping


@dataclass(frozen=True)
class TaskInfo:
    container_id: str
    pid: int
    status: str  # created | running | stopped | paused | pausing | unknown
    exit_status: int


@dataclass(frozen=True)
class ExecResult:
    exit_status: int
    output: str


@dataclass(frozen=True)
class TaskExit:
    container_id: str
    pid: int
    exit_status: int
    exec_id: str


def _any(type_url: str, obj: dict[str, Any]) -> any_pb2.Any:
    return any_pb2.Any(type_url=type_url, value=oci.to_json(obj))


def create_container(
    c: Client, image: str, spec: oci.TaskSpec, labels: dict[str, str]
) -> None:
    """Create the container record and its rootfs snapshot, or neither."""
    cid = spec.container_id
    img = resolve_image(c, image)
    with c.lease("create") as lease:
        view = snapshots_pb2.ViewSnapshotRequest(
            snapshotter=c.snapshotter, key=cid, parent=img.chain_id
        )
        try:
            c.call(f"create rootfs snapshot of {cid}", c.snapshots.View, view, lease=lease)
        except AlreadyExists:
            raise AlreadyExists(f"container {cid} exists already (its snapshot does)") from None
        container = containers_pb2.Container(
            id=cid,
            labels=labels,
            image=image,
            runtime=containers_pb2.Container.Runtime(name=RUNTIME),
            spec=_any(oci.SPEC_TYPE_URL, oci.build(spec)),
            snapshotter=c.snapshotter,
            snapshot_key=cid,
        )
        try:
            c.call(
                f"create container {cid}",
                c.containers.Create,
                containers_pb2.CreateContainerRequest(container=container),
                lease=lease,
            )
        except ContainerdError as e:
            _remove_snapshot(c, cid)
            if isinstance(e, AlreadyExists):
                raise AlreadyExists(f"container {cid} exists already") from None
            raise


def get_container(c: Client, cid: str) -> containers_pb2.Container:
    resp = c.call(
        f"get container {cid}", c.containers.Get, containers_pb2.GetContainerRequest(id=cid)
    )
    return resp.container


def list_containers(c: Client, *filters: str) -> list[containers_pb2.Container]:
    resp = c.call(
        "list containers",
        c.containers.List,
        containers_pb2.ListContainersRequest(filters=list(filters)),
    )
    return list(resp.containers)


def container_spec(container: containers_pb2.Container) -> dict[str, Any]:
    return json.loads(container.spec.value)


def start_task(c: Client, cid: str, log_path: str) -> int:
    """Create and start the container's task, stdout and stderr appended to log_path."""
    mounts = c.call(
        f"get rootfs mounts of {cid}",
        c.snapshots.Mounts,
        snapshots_pb2.MountsRequest(snapshotter=c.snapshotter, key=cid),
    ).mounts
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    uri = f"file://{log_path}"
    req = tasks_pb2.CreateTaskRequest(container_id=cid, rootfs=mounts, stdout=uri, stderr=uri)
    for pause in (*SHIM_GONE_PAUSES, None):
        try:
            c.call(f"create task {cid}", c.tasks.Create, req)
            break
        except ShimGone:
            # the task joined a shared shim as it stopped (its last task just deleted):
            # the task was not made; once the shim is gone a create starts a new one
            if pause is None:
                raise
            time.sleep(pause)
    try:
        resp = c.call(f"start task {cid}", c.tasks.Start, tasks_pb2.StartRequest(container_id=cid))
    except ContainerdError:
        with contextlib.suppress(ContainerdError):
            delete_task(c, cid)
        raise
    return int(resp.pid)


def get_task(c: Client, cid: str) -> TaskInfo:
    p = c.call(f"get task {cid}", c.tasks.Get, tasks_pb2.GetRequest(container_id=cid)).process
    return TaskInfo(cid, p.pid, task_pb2.Status.Name(p.status).lower(), p.exit_status)


def list_tasks(c: Client) -> list[TaskInfo]:
    resp = c.call("list tasks", c.tasks.List, tasks_pb2.ListTasksRequest())
    return [
        TaskInfo(p.id or p.container_id, p.pid, task_pb2.Status.Name(p.status).lower(),
                 p.exit_status)
        for p in resp.tasks
    ]


def kill_task(c: Client, cid: str, signal: int = SIGTERM, exec_id: str = "",
              all_processes: bool = True) -> None:
    """Signal the task's processes (all of them, or only its init / the exec process)."""
    req = tasks_pb2.KillRequest(container_id=cid, exec_id=exec_id, signal=signal,
                                all=all_processes and not exec_id)
    c.call(f"signal {signal} to task {cid}", c.tasks.Kill, req)


def wait_task(c: Client, cid: str, timeout: float, exec_id: str = "") -> int:
    """Block until the task (or exec process) exits; returns its exit status."""
    req = tasks_pb2.WaitRequest(container_id=cid, exec_id=exec_id)
    return int(c.call(f"wait for task {cid}", c.tasks.Wait, req, timeout=timeout).exit_status)


def delete_task(c: Client, cid: str) -> int:
    req = tasks_pb2.DeleteTaskRequest(container_id=cid)
    try:
        resp = c.call(f"delete task {cid}", c.tasks.Delete, req)
    except ShimGone:
        # the shim stopped before it answered; containerd cleans the task up all the
        # same, so asking again says NotFound (or deletes what is left)
        resp = c.call(f"delete task {cid}", c.tasks.Delete, req)
    return int(resp.exit_status)


def signal_init(pid: int, cgroup: str, signo: int) -> bool:
    """Signal a task's init process ourselves, without containerd; False if not sure it is.

    containerd's Kill costs a shim round trip and a `runc kill` exec (~20 ms of CPU).
    A pidfd pins the process, and its cgroup (`cgroup`, the spec's cgroupsPath) proves
    it is still the task's: a reused PID fails the check. Init passes the signal on to
    its services, and when init exits the kernel ends the rest of its PID namespace."""
    if pid <= 0 or not cgroup:
        return False
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            if not any(ln.rstrip("\n").split(":", 2)[-1] == cgroup for ln in f):
                return False
        signals.pidfd_send_signal(fd, signo)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def stop_task(c: Client, cid: str, grace: float = 5.0, pid: int = 0,
              cgroup: str = "") -> int | None:
    """SIGTERM, then SIGKILL after `grace` seconds; delete the task. None if there was none.

    No status is asked first: a task that is gone or has exited says so to the signal.
    With the task's `pid` and `cgroup` known, SIGTERM goes to its init directly."""
    try:
        if not signal_init(pid, cgroup, SIGTERM):
            kill_task(c, cid, SIGTERM)
    except (NotFound, ShimGone):
        pass  # no task, its process exited or its shim went: the delete says which
    else:
        try:
            wait_task(c, cid, timeout=grace)
        except ContainerdError:
            with contextlib.suppress(NotFound, ShimGone):
                kill_task(c, cid, SIGKILL)
                wait_task(c, cid, timeout=10)
    try:
        return delete_task(c, cid)
    except NotFound:
        return None


def remove_container(c: Client, cid: str, pid: int = 0, cgroup: str = "") -> None:
    """Remove the task, the container and its snapshot; missing parts are fine."""
    stop_task(c, cid, pid=pid, cgroup=cgroup)
    with contextlib.suppress(NotFound):
        c.call(
            f"delete container {cid}",
            c.containers.Delete,
            containers_pb2.DeleteContainerRequest(id=cid),
        )
    _remove_snapshot(c, cid)


def _remove_snapshot(c: Client, key: str) -> None:
    with contextlib.suppress(NotFound):
        c.call(
            f"remove snapshot {key}",
            c.snapshots.Remove,
            snapshots_pb2.RemoveSnapshotRequest(snapshotter=c.snapshotter, key=key),
        )


def exec_in(
    c: Client, cid: str, args: list[str], output_path: str, timeout: float = 30.0
) -> ExecResult:
    """Run a command inside the running task (same caps and cgroup), wait for it."""
    exec_id = f"exec-{uuid.uuid4().hex[:10]}"
    uri = f"file://{output_path}"
    req = tasks_pb2.ExecProcessRequest(
        container_id=cid,
        exec_id=exec_id,
        stdout=uri,
        stderr=uri,
        spec=_any(oci.PROCESS_TYPE_URL, oci.process(args)),
    )
    c.call(f"exec {args[0]} in {cid}", c.tasks.Exec, req)
    try:
        c.call(f"start {args[0]} in {cid}", c.tasks.Start,
               tasks_pb2.StartRequest(container_id=cid, exec_id=exec_id))
        status = wait_task(c, cid, timeout=timeout, exec_id=exec_id)
    finally:
        with contextlib.suppress(ContainerdError):
            c.call(f"delete exec {exec_id}", c.tasks.DeleteProcess,
                   tasks_pb2.DeleteProcessRequest(container_id=cid, exec_id=exec_id))
    try:
        with open(output_path, encoding="utf-8", errors="replace") as f:
            out = f.read()
    except FileNotFoundError:
        out = ""
    return ExecResult(status, out)


def update_limits(c: Client, cid: str, limits: oci.Limits) -> None:
    """Change a running task's cgroup limits in place (no restart), and record them
    in the container's spec so that `ctr containers info` shows what is in force."""
    req = tasks_pb2.UpdateTaskRequest(
        container_id=cid, resources=_any(oci.RESOURCES_TYPE_URL, limits.to_oci())
    )
    c.call(f"update limits of {cid}", c.tasks.Update, req)
    container = get_container(c, cid)
    spec = container_spec(container)
    devices = spec["linux"]["resources"].get("devices", [])
    spec["linux"]["resources"] = {**limits.to_oci(), "devices": devices}
    container.spec.CopyFrom(_any(oci.SPEC_TYPE_URL, spec))
    c.call(f"record limits of {cid}", c.containers.Update,
           containers_pb2.UpdateContainerRequest(
               container=container, update_mask=field_mask_pb2.FieldMask(paths=["spec"])))


def limits_of(container: containers_pb2.Container) -> oci.Limits:
    """The limits recorded in a container's spec."""
    res = container_spec(container)["linux"].get("resources", {})
    cpu = res.get("cpu", {})
    return oci.Limits(
        memory_bytes=res.get("memory", {}).get("limit"),
        cpu_quota_us=cpu.get("quota"),
        cpu_period_us=cpu.get("period", 100_000),
        pids=res.get("pids", {}).get("limit"),
    )


def task_metrics(c: Client, cid: str) -> any_pb2.Any:
    resp = c.call(
        f"get metrics of {cid}", c.tasks.Metrics, tasks_pb2.MetricsRequest(filters=[f"id=={cid}"])
    )
    if not resp.metrics:
        raise NotFound(f"get metrics of {cid}: no running task")
    return resp.metrics[0].data


def all_metrics(c: Client) -> dict[str, any_pb2.Any]:
    """The metrics of every task of the namespace, by container id: one call."""
    resp = c.call("get task metrics", c.tasks.Metrics, tasks_pb2.MetricsRequest())
    return {m.id: m.data for m in resp.metrics}


class TaskExits:
    """A live subscription to this namespace's task-exit events.

    Iterate it in one thread; `cancel()` from another ends the iteration.
    """

    def __init__(self, c: Client) -> None:
        self._address = c.address
        req = events_pb2.SubscribeRequest(
            filters=[f'topic=="/tasks/exit",namespace=={c.namespace}']
        )
        self._stream = c.events.Subscribe(req, metadata=c.metadata())

    def __iter__(self) -> Iterator[TaskExit]:
        try:
            for env in self._stream:
                # bare type name, no "type.googleapis.com/" prefix: Any.Unpack() won't do
                if env.event.type_url.rsplit("/", 1)[-1] != _TASK_EXIT:
                    continue
                ev = task_events.TaskExit.FromString(env.event.value)
                exec_id = "" if ev.id == ev.container_id else ev.id
                yield TaskExit(ev.container_id, ev.pid, ev.exit_status, exec_id)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED:
                return
            raise from_rpc("subscribe to task events", e, self._address) from None

    def cancel(self) -> None:
        self._stream.cancel()
