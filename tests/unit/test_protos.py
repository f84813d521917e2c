"""The generated stubs in runner/pb are fresh and wire-compatible with containerd.

The expected names and field numbers below were checked against containerd
1.6.20's api/ protos and containerd/cgroups 1.0.4's metrics protos (they are
unchanged in containerd 2.x, which only adds fields/methods), and against etcd's
api/etcdserverpb/rpc.proto, api/mvccpb/kv.proto and api/authpb/auth.proto (3.4
to 3.6 agree on them). They are hard-coded on purpose: the reference protos are
not available in CI.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from runner.pb.containerd.cgroups.v1 import metrics_pb2 as cgroups_v1
from runner.pb.containerd.cgroups.v2 import metrics_pb2 as cgroups_v2
from runner.pb.containerd.events import container_pb2 as container_events
from runner.pb.containerd.events import image_pb2 as image_events
from runner.pb.containerd.events import task_pb2 as task_events
from runner.pb.containerd.runc.options import oci_pb2
from runner.pb.containerd.services.containers.v1 import containers_pb2
from runner.pb.containerd.services.content.v1 import content_pb2
from runner.pb.containerd.services.diff.v1 import diff_pb2
from runner.pb.containerd.services.events.v1 import events_pb2
from runner.pb.containerd.services.images.v1 import images_pb2
from runner.pb.containerd.services.introspection.v1 import introspection_pb2
from runner.pb.containerd.services.leases.v1 import leases_pb2
from runner.pb.containerd.services.namespaces.v1 import namespaces_pb2
from runner.pb.containerd.services.snapshots.v1 import snapshots_pb2
from runner.pb.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from runner.pb.containerd.services.version.v1 import version_pb2
from runner.pb.containerd.types import descriptor_pb2, metrics_pb2, mount_pb2, platform_pb2
from runner.pb.containerd.types.task import task_pb2
from runner.pb.etcd.authpb import auth_pb2
from runner.pb.etcd.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from runner.pb.etcd.mvccpb import kv_pb2
from runner.pb.nirunner.v1 import nirunner_pb2, nirunner_pb2_grpc

REPO = Path(__file__).resolve().parents[2]

T = FieldDescriptor  # field type constants: T.TYPE_STRING, ...


def fields(desc: Descriptor) -> dict[str, tuple[int, int]]:
    """name -> (number, type) of a message's fields."""
    return {f.name: (f.number, f.type) for f in desc.fields}


def test_generated_stubs_are_fresh() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "genproto.py"), "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_generated_into_other_dir(tmp_path: Path) -> None:
    out = tmp_path / "pb"
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "genproto.py"), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tasks = (out / "containerd/services/tasks/v1/tasks_pb2_grpc.py").read_text()
    assert "from runner.pb.containerd.services.tasks.v1 import tasks_pb2" in tasks
    assert (out / "__init__.py").read_text().startswith('"""Generated')
    assert (out / "containerd/services/tasks/__init__.py").exists()


# Service name -> (module, methods in declaration order).
SERVICES = {
    "containerd.services.tasks.v1.Tasks": (
        tasks_pb2,
        [
            "Create", "Start", "Delete", "DeleteProcess", "Get", "List", "Kill", "Exec",
            "ResizePty", "CloseIO", "Pause", "Resume", "ListPids", "Checkpoint", "Update",
            "Metrics", "Wait",
        ],
    ),
    "containerd.services.containers.v1.Containers": (
        containers_pb2,
        ["Get", "List", "ListStream", "Create", "Update", "Delete"],
    ),
    "containerd.services.content.v1.Content": (
        content_pb2,
        ["Info", "Update", "List", "Delete", "Read", "Status", "ListStatuses", "Write", "Abort"],
    ),
    "containerd.services.diff.v1.Diff": (diff_pb2, ["Apply", "Diff"]),
    "containerd.services.events.v1.Events": (events_pb2, ["Publish", "Forward", "Subscribe"]),
    "containerd.services.images.v1.Images": (
        images_pb2,
        ["Get", "List", "Create", "Update", "Delete"],
    ),
    "containerd.services.introspection.v1.Introspection": (
        introspection_pb2,
        ["Plugins", "Server"],
    ),
    "containerd.services.leases.v1.Leases": (
        leases_pb2,
        ["Create", "Delete", "List", "AddResource", "DeleteResource", "ListResources"],
    ),
    "containerd.services.namespaces.v1.Namespaces": (
        namespaces_pb2,
        ["Get", "List", "Create", "Update", "Delete"],
    ),
    "containerd.services.snapshots.v1.Snapshots": (
        snapshots_pb2,
        [
            "Prepare", "View", "Mounts", "Commit", "Remove", "Stat", "Update", "List",
            "Usage", "Cleanup",
        ],
    ),
    "containerd.services.version.v1.Version": (version_pb2, ["Version"]),
    "etcdserverpb.KV": (rpc_pb2, ["Range", "Put", "DeleteRange", "Txn", "Compact"]),
    "etcdserverpb.Watch": (rpc_pb2, ["Watch"]),
    "etcdserverpb.Lease": (
        rpc_pb2, ["LeaseGrant", "LeaseRevoke", "LeaseKeepAlive", "LeaseTimeToLive"]
    ),
    "etcdserverpb.Cluster": (rpc_pb2, ["MemberList"]),
    "etcdserverpb.Maintenance": (rpc_pb2, ["Status"]),
    "etcdserverpb.Auth": (
        rpc_pb2,
        ["AuthEnable", "UserAdd", "UserGet", "UserGrantRole", "RoleAdd", "RoleGet",
         "RoleGrantPermission"],
    ),
    "nirunner.v1.Supervisor": (
        nirunner_pb2, ["Version", "Apply", "Delete", "Status", "Attach", "Detach", "Events",
                       "AttachWorkload", "DetachWorkload", "CheckWorkload", "GcWorkloads",
                       "NiReady", "Reload", "Roll", "Flows"]
    ),
}  # fmt: skip


@pytest.mark.parametrize("full_name", sorted(SERVICES))
def test_service_methods(full_name: str) -> None:
    module, methods = SERVICES[full_name]
    service = module.DESCRIPTOR.services_by_name[full_name.rsplit(".", 1)[1]]
    assert service.full_name == full_name
    assert [m.name for m in service.methods] == methods


def test_streaming_methods() -> None:
    def streaming(full_name: str, method: str) -> tuple[bool, bool]:
        module, _ = SERVICES[full_name]
        svc = module.DESCRIPTOR.services_by_name[full_name.rsplit(".", 1)[1]]
        m = svc.methods_by_name[method]
        return m.client_streaming, m.server_streaming

    assert streaming("containerd.services.events.v1.Events", "Subscribe") == (False, True)
    assert streaming("containerd.services.content.v1.Content", "Write") == (True, True)
    assert streaming("containerd.services.content.v1.Content", "Read") == (False, True)
    assert streaming("containerd.services.snapshots.v1.Snapshots", "List") == (False, True)
    assert streaming("containerd.services.containers.v1.Containers", "ListStream") == (False, True)
    assert streaming("containerd.services.tasks.v1.Tasks", "Create") == (False, False)
    assert streaming("etcdserverpb.Watch", "Watch") == (True, True)
    assert streaming("etcdserverpb.Lease", "LeaseKeepAlive") == (True, True)
    assert streaming("etcdserverpb.KV", "Range") == (False, False)
    assert streaming("nirunner.v1.Supervisor", "Flows") == (False, True)


def test_grpc_method_paths() -> None:
    # The HTTP/2 path is what containerd routes on.
    import grpc

    channel = grpc.insecure_channel("unix:///nonexistent")
    try:
        stub = tasks_pb2_grpc.TasksStub(channel)
        assert stub.Create._method == b"/containerd.services.tasks.v1.Tasks/Create"
        sup = nirunner_pb2_grpc.SupervisorStub(channel)
        assert sup.Version._method == b"/nirunner.v1.Supervisor/Version"
        assert rpc_pb2_grpc.KVStub(channel).Range._method == b"/etcdserverpb.KV/Range"
        assert rpc_pb2_grpc.WatchStub(channel).Watch._method == b"/etcdserverpb.Watch/Watch"
    finally:
        channel.close()


def test_tasks_messages() -> None:
    assert fields(tasks_pb2.CreateTaskRequest.DESCRIPTOR) == {
        "container_id": (1, T.TYPE_STRING),
        "rootfs": (3, T.TYPE_MESSAGE),
        "stdin": (4, T.TYPE_STRING),
        "stdout": (5, T.TYPE_STRING),
        "stderr": (6, T.TYPE_STRING),
        "terminal": (7, T.TYPE_BOOL),
        "checkpoint": (8, T.TYPE_MESSAGE),
        "options": (9, T.TYPE_MESSAGE),
        "runtime_path": (10, T.TYPE_STRING),
    }
    rootfs = tasks_pb2.CreateTaskRequest.DESCRIPTOR.fields_by_name["rootfs"]
    assert rootfs.message_type.full_name == "containerd.types.Mount"
    assert fields(tasks_pb2.KillRequest.DESCRIPTOR) == {
        "container_id": (1, T.TYPE_STRING),
        "exec_id": (2, T.TYPE_STRING),
        "signal": (3, T.TYPE_UINT32),
        "all": (4, T.TYPE_BOOL),
    }
    assert fields(tasks_pb2.ExecProcessRequest.DESCRIPTOR)["spec"] == (6, T.TYPE_MESSAGE)
    assert fields(tasks_pb2.ExecProcessRequest.DESCRIPTOR)["exec_id"] == (7, T.TYPE_STRING)
    assert fields(tasks_pb2.DeleteResponse.DESCRIPTOR) == {
        "id": (1, T.TYPE_STRING),
        "pid": (2, T.TYPE_UINT32),
        "exit_status": (3, T.TYPE_UINT32),
        "exited_at": (4, T.TYPE_MESSAGE),
    }
    assert fields(tasks_pb2.WaitResponse.DESCRIPTOR) == {
        "exit_status": (1, T.TYPE_UINT32),
        "exited_at": (2, T.TYPE_MESSAGE),
    }
    assert fields(tasks_pb2.UpdateTaskRequest.DESCRIPTOR)["resources"] == (2, T.TYPE_MESSAGE)
    assert (
        tasks_pb2.GetResponse.DESCRIPTOR.fields_by_name["process"].message_type.full_name
        == "containerd.v1.types.Process"
    )


def test_types() -> None:
    assert fields(mount_pb2.Mount.DESCRIPTOR) == {
        "type": (1, T.TYPE_STRING),
        "source": (2, T.TYPE_STRING),
        "target": (3, T.TYPE_STRING),
        "options": (4, T.TYPE_STRING),
    }
    assert fields(descriptor_pb2.Descriptor.DESCRIPTOR) == {
        "media_type": (1, T.TYPE_STRING),
        "digest": (2, T.TYPE_STRING),
        "size": (3, T.TYPE_INT64),
        "annotations": (5, T.TYPE_MESSAGE),
    }
    assert fields(platform_pb2.Platform.DESCRIPTOR) == {
        "os": (1, T.TYPE_STRING),
        "architecture": (2, T.TYPE_STRING),
        "variant": (3, T.TYPE_STRING),
    }
    assert fields(metrics_pb2.Metric.DESCRIPTOR) == {
        "timestamp": (1, T.TYPE_MESSAGE),
        "id": (2, T.TYPE_STRING),
        "data": (3, T.TYPE_MESSAGE),
    }
    assert task_pb2.DESCRIPTOR.package == "containerd.v1.types"
    assert fields(task_pb2.Process.DESCRIPTOR) == {
        "container_id": (1, T.TYPE_STRING),
        "id": (2, T.TYPE_STRING),
        "pid": (3, T.TYPE_UINT32),
        "status": (4, T.TYPE_ENUM),
        "stdin": (5, T.TYPE_STRING),
        "stdout": (6, T.TYPE_STRING),
        "stderr": (7, T.TYPE_STRING),
        "terminal": (8, T.TYPE_BOOL),
        "exit_status": (9, T.TYPE_UINT32),
        "exited_at": (10, T.TYPE_MESSAGE),
    }
    assert {v.name: v.number for v in task_pb2.Status.DESCRIPTOR.values} == {
        "UNKNOWN": 0, "CREATED": 1, "RUNNING": 2, "STOPPED": 3, "PAUSED": 4, "PAUSING": 5,
    }  # fmt: skip


def test_containers_messages() -> None:
    assert fields(containers_pb2.Container.DESCRIPTOR) == {
        "id": (1, T.TYPE_STRING),
        "labels": (2, T.TYPE_MESSAGE),
        "image": (3, T.TYPE_STRING),
        "runtime": (4, T.TYPE_MESSAGE),
        "spec": (5, T.TYPE_MESSAGE),
        "snapshotter": (6, T.TYPE_STRING),
        "snapshot_key": (7, T.TYPE_STRING),
        "created_at": (8, T.TYPE_MESSAGE),
        "updated_at": (9, T.TYPE_MESSAGE),
        "extensions": (10, T.TYPE_MESSAGE),
    }
    assert fields(containers_pb2.Container.Runtime.DESCRIPTOR) == {
        "name": (1, T.TYPE_STRING),
        "options": (2, T.TYPE_MESSAGE),
    }


def test_other_services_irregular_numbers() -> None:
    # Places where upstream skips numbers; easy to get wrong by hand.
    assert fields(images_pb2.Image.DESCRIPTOR) == {
        "name": (1, T.TYPE_STRING),
        "labels": (2, T.TYPE_MESSAGE),
        "target": (3, T.TYPE_MESSAGE),
        "created_at": (7, T.TYPE_MESSAGE),
        "updated_at": (8, T.TYPE_MESSAGE),
    }
    assert fields(diff_pb2.DiffResponse.DESCRIPTOR) == {"diff": (3, T.TYPE_MESSAGE)}
    assert fields(leases_pb2.CreateRequest.DESCRIPTOR) == {
        "id": (1, T.TYPE_STRING),
        "labels": (3, T.TYPE_MESSAGE),
    }
    assert fields(snapshots_pb2.Info.DESCRIPTOR)["labels"] == (6, T.TYPE_MESSAGE)
    assert fields(content_pb2.WriteContentRequest.DESCRIPTOR)["labels"] == (7, T.TYPE_MESSAGE)
    assert fields(version_pb2.VersionResponse.DESCRIPTOR) == {
        "version": (1, T.TYPE_STRING),
        "revision": (2, T.TYPE_STRING),
    }
    init_err = introspection_pb2.Plugin.DESCRIPTOR.fields_by_name["init_err"]
    assert (init_err.number, init_err.message_type.full_name) == (7, "google.rpc.Status")
    assert fields(namespaces_pb2.ListNamespacesRequest.DESCRIPTOR) == {"filter": (1, T.TYPE_STRING)}


def test_events() -> None:
    assert fields(events_pb2.Envelope.DESCRIPTOR) == {
        "timestamp": (1, T.TYPE_MESSAGE),
        "namespace": (2, T.TYPE_STRING),
        "topic": (3, T.TYPE_STRING),
        "event": (4, T.TYPE_MESSAGE),
    }
    assert task_events.TaskExit.DESCRIPTOR.full_name == "containerd.events.TaskExit"
    assert fields(task_events.TaskExit.DESCRIPTOR) == {
        "container_id": (1, T.TYPE_STRING),
        "id": (2, T.TYPE_STRING),
        "pid": (3, T.TYPE_UINT32),
        "exit_status": (4, T.TYPE_UINT32),
        "exited_at": (5, T.TYPE_MESSAGE),
    }
    assert fields(task_events.TaskDelete.DESCRIPTOR)["id"] == (5, T.TYPE_STRING)
    assert task_events.TaskOOM.DESCRIPTOR.full_name == "containerd.events.TaskOOM"
    assert fields(task_events.TaskStart.DESCRIPTOR) == {
        "container_id": (1, T.TYPE_STRING),
        "pid": (2, T.TYPE_UINT32),
    }
    assert container_events.ContainerDelete.DESCRIPTOR.full_name == (
        "containerd.events.ContainerDelete"
    )
    # Upstream quirk: image events live in the images service package.
    assert image_events.ImageCreate.DESCRIPTOR.full_name == (
        "containerd.services.images.v1.ImageCreate"
    )


def test_event_any_roundtrip() -> None:
    # containerd (typeurl) sets Any.type_url to the bare full name, without the
    # "type.googleapis.com/" prefix, and Python's Any.Is()/Unpack() require a
    # "/" in the URL -- so decode by comparing type_url and parsing the value.
    exit_event = task_events.TaskExit(container_id="ni1", id="ni1", pid=42, exit_status=137)
    envelope = events_pb2.Envelope(namespace="nirunner", topic="/tasks/exit")
    envelope.event.type_url = "containerd.events.TaskExit"
    envelope.event.value = exit_event.SerializeToString()
    decoded = events_pb2.Envelope.FromString(envelope.SerializeToString())
    assert decoded.event.type_url == task_events.TaskExit.DESCRIPTOR.full_name
    assert task_events.TaskExit.FromString(decoded.event.value) == exit_event


def test_cgroups_metrics() -> None:
    assert cgroups_v1.DESCRIPTOR.package == "io.containerd.cgroups.v1"
    v1 = fields(cgroups_v1.Metrics.DESCRIPTOR)
    assert v1["hugetlb"] == (1, T.TYPE_MESSAGE)
    assert v1["pids"] == (2, T.TYPE_MESSAGE)
    assert v1["cpu"] == (3, T.TYPE_MESSAGE)
    assert v1["memory"] == (4, T.TYPE_MESSAGE)
    assert v1["blkio"] == (5, T.TYPE_MESSAGE)
    assert v1["network"] == (7, T.TYPE_MESSAGE)
    assert v1["memory_oom_control"] == (9, T.TYPE_MESSAGE)
    assert fields(cgroups_v1.CPUUsage.DESCRIPTOR)["total"] == (1, T.TYPE_UINT64)
    mem1 = fields(cgroups_v1.MemoryStat.DESCRIPTOR)
    assert mem1["cache"] == (1, T.TYPE_UINT64)
    assert mem1["rss"] == (2, T.TYPE_UINT64)
    assert mem1["total_rss"] == (19, T.TYPE_UINT64)
    assert mem1["usage"] == (33, T.TYPE_MESSAGE)
    assert mem1["kernel_tcp"] == (36, T.TYPE_MESSAGE)
    assert fields(cgroups_v1.MemoryEntry.DESCRIPTOR) == {
        "limit": (1, T.TYPE_UINT64),
        "usage": (2, T.TYPE_UINT64),
        "max": (3, T.TYPE_UINT64),
        "failcnt": (4, T.TYPE_UINT64),
    }
    assert fields(cgroups_v1.PidsStat.DESCRIPTOR) == {
        "current": (1, T.TYPE_UINT64),
        "limit": (2, T.TYPE_UINT64),
    }

    assert cgroups_v2.DESCRIPTOR.package == "io.containerd.cgroups.v2"
    assert fields(cgroups_v2.Metrics.DESCRIPTOR) == {
        "pids": (1, T.TYPE_MESSAGE),
        "cpu": (2, T.TYPE_MESSAGE),
        "memory": (4, T.TYPE_MESSAGE),
        "rdma": (5, T.TYPE_MESSAGE),
        "io": (6, T.TYPE_MESSAGE),
        "hugetlb": (7, T.TYPE_MESSAGE),
        "memory_events": (8, T.TYPE_MESSAGE),
    }
    assert fields(cgroups_v2.CPUStat.DESCRIPTOR)["usage_usec"] == (1, T.TYPE_UINT64)
    mem2 = fields(cgroups_v2.MemoryStat.DESCRIPTOR)
    assert mem2["anon"] == (1, T.TYPE_UINT64)
    assert mem2["file"] == (2, T.TYPE_UINT64)
    assert mem2["usage"] == (32, T.TYPE_UINT64)
    assert mem2["usage_limit"] == (33, T.TYPE_UINT64)
    assert mem2["swap_usage"] == (34, T.TYPE_UINT64)
    assert mem2["swap_limit"] == (35, T.TYPE_UINT64)
    assert fields(cgroups_v2.MemoryEvents.DESCRIPTOR)["oom_kill"] == (5, T.TYPE_UINT64)


def test_runc_options() -> None:
    assert oci_pb2.Options.DESCRIPTOR.full_name == "containerd.runc.v1.Options"
    opts = fields(oci_pb2.Options.DESCRIPTOR)
    assert opts["binary_name"] == (6, T.TYPE_STRING)
    assert opts["root"] == (7, T.TYPE_STRING)
    assert opts["systemd_cgroup"] == (9, T.TYPE_BOOL)
    assert opts["io_uid"] == (4, T.TYPE_UINT32)
    assert opts["shim_cgroup"] == (3, T.TYPE_STRING)


def test_nirunner_supervisor() -> None:
    assert fields(nirunner_pb2.VersionResponse.DESCRIPTOR) == {
        "version": (1, T.TYPE_STRING),
        "containerd_version": (2, T.TYPE_STRING),
    }
    # the workload calls the CNI plugin makes: an installed plugin may be older or newer
    assert fields(nirunner_pb2.WorkloadKey.DESCRIPTOR) == {
        "network": (1, T.TYPE_STRING), "container_id": (2, T.TYPE_STRING),
        "ifname": (3, T.TYPE_STRING),
    }  # fmt: skip
    req = fields(nirunner_pb2.AttachWorkloadRequest.DESCRIPTOR)
    assert req == {
        "ni": (1, T.TYPE_STRING), "key": (2, T.TYPE_MESSAGE), "netns": (3, T.TYPE_STRING),
        "interface": (4, T.TYPE_STRING), "mac": (5, T.TYPE_STRING),
        "hostname": (6, T.TYPE_STRING), "app": (7, T.TYPE_STRING),
        "port_mappings": (8, T.TYPE_MESSAGE), "lease_timeout_ms": (9, T.TYPE_UINT32),
    }  # fmt: skip
    att = fields(nirunner_pb2.Attachment.DESCRIPTOR)
    assert att["address"] == (8, T.TYPE_STRING) and att["port_mappings"] == (12, T.TYPE_MESSAGE)
    assert fields(nirunner_pb2.CheckWorkloadResponse.DESCRIPTOR) == {
        "known": (1, T.TYPE_BOOL), "intended": (2, T.TYPE_MESSAGE),
        "problems": (3, T.TYPE_STRING),
    }  # fmt: skip
    assert fields(nirunner_pb2.NiReadyResponse.DESCRIPTOR) == {
        "ready": (1, T.TYPE_BOOL), "reason": (2, T.TYPE_STRING), "degraded": (3, T.TYPE_BOOL),
    }  # fmt: skip


def test_etcd_kv() -> None:
    assert kv_pb2.DESCRIPTOR.package == "mvccpb"
    assert fields(kv_pb2.KeyValue.DESCRIPTOR) == {
        "key": (1, T.TYPE_BYTES),
        "create_revision": (2, T.TYPE_INT64),
        "mod_revision": (3, T.TYPE_INT64),
        "version": (4, T.TYPE_INT64),
        "value": (5, T.TYPE_BYTES),
        "lease": (6, T.TYPE_INT64),
    }
    assert fields(kv_pb2.Event.DESCRIPTOR) == {
        "type": (1, T.TYPE_ENUM),
        "kv": (2, T.TYPE_MESSAGE),
        "prev_kv": (3, T.TYPE_MESSAGE),
    }
    assert {v.name: v.number for v in kv_pb2.Event.EventType.DESCRIPTOR.values} == {
        "PUT": 0, "DELETE": 1,
    }  # fmt: skip


def test_etcd_requests() -> None:
    assert fields(rpc_pb2.ResponseHeader.DESCRIPTOR) == {
        "cluster_id": (1, T.TYPE_UINT64),
        "member_id": (2, T.TYPE_UINT64),
        "revision": (3, T.TYPE_INT64),
        "raft_term": (4, T.TYPE_UINT64),
    }
    rng = fields(rpc_pb2.RangeRequest.DESCRIPTOR)
    assert rng["range_end"] == (2, T.TYPE_BYTES)
    assert rng["revision"] == (4, T.TYPE_INT64)
    assert rng["serializable"] == (7, T.TYPE_BOOL)
    assert rng["count_only"] == (9, T.TYPE_BOOL)
    assert fields(rpc_pb2.RangeResponse.DESCRIPTOR) == {
        "header": (1, T.TYPE_MESSAGE),
        "kvs": (2, T.TYPE_MESSAGE),
        "more": (3, T.TYPE_BOOL),
        "count": (4, T.TYPE_INT64),
    }
    assert fields(rpc_pb2.PutRequest.DESCRIPTOR)["lease"] == (3, T.TYPE_INT64)
    assert fields(rpc_pb2.DeleteRangeResponse.DESCRIPTOR)["deleted"] == (2, T.TYPE_INT64)
    cmp = fields(rpc_pb2.Compare.DESCRIPTOR)
    assert cmp["mod_revision"] == (6, T.TYPE_INT64)
    assert cmp["value"] == (7, T.TYPE_BYTES)
    assert cmp["range_end"] == (64, T.TYPE_BYTES)
    assert {v.name: v.number for v in rpc_pb2.Compare.CompareTarget.DESCRIPTOR.values} == {
        "VERSION": 0, "CREATE": 1, "MOD": 2, "VALUE": 3, "LEASE": 4,
    }  # fmt: skip
    assert fields(rpc_pb2.RequestOp.DESCRIPTOR) == {
        "request_range": (1, T.TYPE_MESSAGE),
        "request_put": (2, T.TYPE_MESSAGE),
        "request_delete_range": (3, T.TYPE_MESSAGE),
    }


def test_etcd_watch_lease_auth() -> None:
    create = fields(rpc_pb2.WatchCreateRequest.DESCRIPTOR)
    assert create["start_revision"] == (3, T.TYPE_INT64)
    assert create["progress_notify"] == (4, T.TYPE_BOOL)
    assert create["watch_id"] == (7, T.TYPE_INT64)
    assert fields(rpc_pb2.WatchRequest.DESCRIPTOR)["progress_request"] == (3, T.TYPE_MESSAGE)
    resp = fields(rpc_pb2.WatchResponse.DESCRIPTOR)
    assert resp["compact_revision"] == (5, T.TYPE_INT64)
    assert resp["cancel_reason"] == (6, T.TYPE_STRING)
    assert resp["events"] == (11, T.TYPE_MESSAGE)
    assert fields(rpc_pb2.LeaseGrantRequest.DESCRIPTOR) == {
        "TTL": (1, T.TYPE_INT64),
        "ID": (2, T.TYPE_INT64),
    }
    assert fields(rpc_pb2.LeaseKeepAliveResponse.DESCRIPTOR)["TTL"] == (3, T.TYPE_INT64)
    assert fields(rpc_pb2.AuthUserAddRequest.DESCRIPTOR)["options"] == (3, T.TYPE_MESSAGE)
    assert fields(auth_pb2.Permission.DESCRIPTOR) == {
        "permType": (1, T.TYPE_ENUM),
        "key": (2, T.TYPE_BYTES),
        "range_end": (3, T.TYPE_BYTES),
    }
    assert {v.name: v.number for v in auth_pb2.Permission.Type.DESCRIPTOR.values} == {
        "READ": 0, "WRITE": 1, "READWRITE": 2,
    }  # fmt: skip
    assert fields(rpc_pb2.StatusResponse.DESCRIPTOR)["leader"] == (4, T.TYPE_UINT64)
