"""The installed plugin as an executable, run exactly as a runtime runs it (no root)."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from runner.api import client as api_client
from runner.cni import api, plugin
from runner.cni.api import ErrorKind
from runner.cni.grpc_backend import ERROR_KIND_KEY, error_kind, readiness
from runner.pb.nirunner.v1 import nirunner_pb2 as pb
from runner.pb.nirunner.v1 import nirunner_pb2_grpc as pb_grpc


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


# -- the gRPC binding, against a stand-in supervisor serving the Status call -------------

class _Status(pb_grpc.SupervisorServicer):
    def __init__(self, nis: dict[str, dict[str, Any]]) -> None:
        self.nis = nis

    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext
               ) -> pb.StatusResponse:
        unknown = [n for n in request.names if n not in self.nis]
        if unknown:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"no such NI: {unknown[0]}")
        return pb.StatusResponse(ni_json=[json.dumps(self.nis[n]) for n in request.names])


@pytest.fixture
def status_server(tmp_path: Path) -> Any:
    sock = str(tmp_path / "api.sock")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    nis = {"factory": {"state": "running", "services": {"dnsmasq": "running"}},
           "lab": {"state": "pending", "reason": "task exited", "attached": [{"netns": "/x"}]},
           "quiet": {"state": "pending", "reason": "task missing"}}
    pb_grpc.add_SupervisorServicer_to_server(_Status(nis), server)
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    yield sock
    server.stop(None)


def test_status_through_grpc(installed: Path, status_server: str) -> None:
    env = {"CNI_COMMAND": "STATUS", "CNI_PATH": "/opt/cni/bin"}
    assert exec_plugin(installed, env, netconf(status_server))[:2] == (None, 0)
    doc, rc, _ = exec_plugin(installed, env, netconf(status_server, ni="lab"))
    assert rc == 1 and doc is not None and doc["code"] == 51 and "task exited" in doc["msg"]
    doc, rc, _ = exec_plugin(installed, env, netconf(status_server, ni="quiet"))
    assert rc == 1 and doc is not None and doc["code"] == 50
    doc, rc, _ = exec_plugin(installed, env, netconf(status_server, ni="nosuch"))
    assert rc == 1 and doc is not None and doc["code"] == 50 and "no such NI" in doc["msg"]
    # the verbs today's API lacks say so, with their own code
    doc, rc, _ = exec_plugin(installed, ADD, netconf(status_server))
    assert rc == 1 and doc is not None and doc["code"] == 104


def test_error_kind_from_metadata_or_status() -> None:
    assert error_kind("ABORTED", [(ERROR_KIND_KEY, "conflict")]) is ErrorKind.CONFLICT
    assert error_kind("ABORTED", [(ERROR_KIND_KEY, b"no-lease")]) is ErrorKind.NO_LEASE
    assert error_kind("NOT_FOUND", [(ERROR_KIND_KEY, "bogus")]) is ErrorKind.NOT_FOUND
    assert error_kind("UNAVAILABLE") is ErrorKind.UNAVAILABLE
    assert error_kind("UNIMPLEMENTED") is ErrorKind.UNSUPPORTED
    assert error_kind("ABORTED") is ErrorKind.CONFLICT
    assert error_kind("INTERNAL") is ErrorKind.FAILED


def test_readiness_from_status() -> None:
    assert readiness({"state": "running"}).ready
    assert readiness({"state": "degraded", "services": {"dnsmasq": "running"}}).ready
    r = readiness({"state": "degraded", "reason": "dnsmasq backoff",
                   "services": {"dnsmasq": "backoff"}, "apps": [{"ip": "10.1.0.5"}]})
    assert not r.ready and r.degraded and "dnsmasq backoff" in r.reason
    assert not readiness({"state": "failed"}).degraded
