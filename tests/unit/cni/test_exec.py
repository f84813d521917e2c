"""The installed plugin as an executable, run exactly as a runtime runs it (no root)."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent import futures
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from runner.api import client as api_client
from runner.api.server import Servicer
from runner.cni import api, plugin
from runner.cni.api import BackendError, ErrorKind
from runner.cni.grpc_backend import ERROR_KIND_KEY, STATUS_OF, error_kind
from runner.pb.nirunner.v1 import nirunner_pb2_grpc as pb_grpc
from runner.supervisor.workloads import WorkloadError
from tests.unit.cni.fake import FakeNI, FakeSupervisor


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cni-bin")
    out = subprocess.run([sys.executable, "-m", "runner.cni.plugin", "install", "--dir", str(d)],
                         capture_output=True, text=True, check=True)
    path = d / "nirunner"
    assert out.stdout.strip() == f"installed {path}"
    assert path.stat().st_mode & 0o777 == 0o755
    return path


def exec_plugin(path: Path, env: dict[str, str], stdin: Any) -> tuple[dict[str, Any] | None,
                                                                       int, str]:
    raw = stdin if isinstance(stdin, bytes) else json.dumps(stdin).encode()
    p = subprocess.run([str(path)], input=raw, capture_output=True, env=env, timeout=30)
    out = p.stdout.decode()
    return (json.loads(out) if out.strip() else None), p.returncode, p.stderr.decode()


def netconf(socket: str, **extra: Any) -> dict[str, Any]:
    return {"cniVersion": "1.1.0", "name": "factory", "type": "nirunner", "ni": "factory",
            "socket": socket, **extra}


ADD = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/x",
       "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}


def test_version_and_errors_through_the_executable(installed: Path, tmp_path: Path) -> None:
    doc, rc, err = exec_plugin(installed, {"CNI_COMMAND": "VERSION"}, {"cniVersion": "1.1.0"})
    assert rc == 0 and doc == {"cniVersion": "1.1.0",
                               "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]}
    doc, rc, err = exec_plugin(installed, ADD, b"{{{")
    assert rc == 1 and doc is not None and doc["code"] == 6 and "Traceback" not in err
    doc, rc, err = exec_plugin(installed, {"CNI_COMMAND": "ADD"}, netconf("/x.sock"))
    assert rc == 1 and doc is not None and doc["code"] == 4
    assert "CNI_CONTAINERID" in doc["msg"] and "CNI_NETNS" in doc["msg"]
    stopped = str(tmp_path / "no-supervisor.sock")
    doc, rc, err = exec_plugin(installed, ADD, netconf(stopped))
    assert rc == 1 and doc is not None and doc["code"] == 11 and stopped in doc["msg"]
    status = {"CNI_COMMAND": "STATUS", "CNI_PATH": "/opt/cni/bin"}
    doc, rc, err = exec_plugin(installed, status, netconf(stopped))
    assert rc == 1 and doc is not None and doc["code"] == 50
    assert err == ""


def test_version_does_not_load_grpc() -> None:
    code = ("import io, sys, os; os.environ['CNI_COMMAND'] = 'VERSION';"
            "sys.stdin = io.TextIOWrapper(io.BytesIO(b''));"
            "from runner.cni.plugin import main; main([]);"
            "print('', 'grpc' in sys.modules, 'yaml' in sys.modules, 'pyroute2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-3:] == ["False", "False", "False"]


def test_default_socket_is_the_supervisors() -> None:
    assert api.DEFAULT_SOCKET == api_client.DEFAULT_SOCKET


def test_cli_version_and_launcher() -> None:
    p = subprocess.run([sys.executable, "-m", "runner.cni.plugin", "version"],
                       capture_output=True, text=True)
    assert p.returncode == 0 and "1.1.0" in p.stdout
    assert plugin.launcher("/usr/bin/python3").startswith("#!/usr/bin/python3 -I\n")


# -- the gRPC binding: the real API server, a stand-in for the supervisor's workloads ----

class _Workloads:
    """The supervisor's workloads as the server sees them: the in-memory supervisor of
    the plugin's unit tests, its refusals turned into the server's WorkloadError."""

    def __init__(self, fake: FakeSupervisor) -> None:
        self.fake = fake

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.fake, name)

        def call(*args: Any) -> Any:
            try:
                return method(*args)
            except BackendError as e:
                raise WorkloadError(e.kind, str(e)) from None

        return call


@pytest.fixture
def api_server(tmp_path: Path) -> Any:
    sock = str(tmp_path / "api.sock")
    fake = FakeSupervisor(nis={"factory": FakeNI(uplink_ports={("tcp", 8080)}),
                               "lab": FakeNI(ready=False)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_SupervisorServicer_to_server(
        Servicer(SimpleNamespace(workloads=_Workloads(fake))), server)  # type: ignore[arg-type]
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    yield sock, fake
    server.stop(None)


def test_every_verb_through_grpc(installed: Path, api_server: tuple[str, Any]) -> None:
    sock, fake = api_server
    rc = {"runtimeConfig": {"portMappings": [{"hostPort": 9090, "containerPort": 80,
                                              "protocol": "tcp"}]}}
    doc, code, err = exec_plugin(installed, ADD, netconf(sock, **rc))
    assert code == 0, (doc, err)
    assert doc is not None and doc["ips"] == [{"address": "10.1.0.100/24", "interface": 0,
                                               "gateway": "10.1.0.1"}]
    assert doc["interfaces"][0]["sandbox"] == "/run/netns/x" and doc["dns"]["nameservers"] == [
        "10.1.0.1"]
    (att,) = fake.attachments.values()
    assert att.port_mappings == (api.PortMapping(9090, 80, "tcp"),)
    check = {**ADD, "CNI_COMMAND": "CHECK"}
    assert exec_plugin(installed, check, netconf(sock, prevResult=doc))[:2] == (None, 0)
    fake.drift[att.key] = ["plug ap0011aabb: missing"]
    doc2, code, _ = exec_plugin(installed, check, netconf(sock, prevResult=doc))
    assert code == 1 and doc2 is not None and doc2["code"] == 100
    assert "missing" in doc2["details"]
    # the server's error kinds reach the plugin: exists, conflict, not found, not ready
    doc2, code, _ = exec_plugin(installed, ADD, netconf(sock))
    assert code == 1 and doc2 is not None and doc2["code"] == 102
    other = {**ADD, "CNI_CONTAINERID": "c2"}
    taken = {"runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80}]}}
    assert exec_plugin(installed, other, netconf(sock, **taken))[0]["code"] == 101
    assert exec_plugin(installed, ADD, netconf(sock, ni="nosuch"))[0]["code"] == 7
    assert exec_plugin(installed, ADD, netconf(sock, ni="lab"))[0]["code"] == 11
    status = {"CNI_COMMAND": "STATUS", "CNI_PATH": "/opt/cni/bin"}
    assert exec_plugin(installed, status, netconf(sock))[:2] == (None, 0)
    doc2, code, _ = exec_plugin(installed, status, netconf(sock, ni="lab"))
    assert code == 1 and doc2 is not None and doc2["code"] == 50 and "task exited" in doc2["msg"]
    gc = {"CNI_COMMAND": "GC", "CNI_PATH": "/opt/cni/bin"}
    keep = netconf(sock, **{"cni.dev/valid-attachments": [{"containerID": "c1",
                                                            "ifname": "eth0"}]})
    assert exec_plugin(installed, gc, keep)[:2] == (None, 0)
    assert fake.attachments
    delete = {**ADD, "CNI_COMMAND": "DEL"}
    assert exec_plugin(installed, delete, netconf(sock))[:2] == (None, 0)
    assert not fake.attachments
    assert exec_plugin(installed, delete, netconf(sock))[:2] == (None, 0)  # idempotent
    assert exec_plugin(installed, delete, netconf(sock, ni="nosuch"))[:2] == (None, 0)


def test_an_older_supervisor_lacks_the_calls(installed: Path, tmp_path: Path) -> None:
    sock = str(tmp_path / "old.sock")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    pb_grpc.add_SupervisorServicer_to_server(pb_grpc.SupervisorServicer(), server)
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    try:
        doc, code, _ = exec_plugin(installed, ADD, netconf(sock))
        assert code == 1 and doc is not None and doc["code"] == 104
    finally:
        server.stop(None)


def test_error_kind_from_metadata_or_status() -> None:
    assert error_kind("ABORTED", [(ERROR_KIND_KEY, "conflict")]) is ErrorKind.CONFLICT
    assert error_kind("ABORTED", [(ERROR_KIND_KEY, b"no-lease")]) is ErrorKind.NO_LEASE
    assert error_kind("NOT_FOUND", [(ERROR_KIND_KEY, "bogus")]) is ErrorKind.NOT_FOUND
    assert error_kind("UNAVAILABLE") is ErrorKind.UNAVAILABLE
    assert error_kind("UNIMPLEMENTED") is ErrorKind.UNSUPPORTED
    assert error_kind("ABORTED") is ErrorKind.CONFLICT
    assert error_kind("INTERNAL") is ErrorKind.FAILED
    for kind, status in STATUS_OF.items():  # what the server sends, the plugin reads back
        assert error_kind(status) is kind
