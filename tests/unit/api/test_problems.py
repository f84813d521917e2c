"""A refused apply reaches the client as the same problems `validate` reports,
through a real gRPC server on a Unix socket (the supervisor faked behind it)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from runner.api import problems as wire
from runner.api.client import ApiClient, ApiError
from runner.api.server import Servicer
from runner.errors import NirunnerError
from runner.model.errors import ConfigError, ManifestError, Problem
from runner.model.manifest import parse_documents
from runner.pb.nirunner.v1 import nirunner_pb2_grpc as pb_grpc


class FakeSupervisor:
    """Parses like the supervisor does; other failures on demand."""

    def __init__(self) -> None:
        self.fail: NirunnerError | None = None

    def apply(self, docs: Sequence[Any], dry_run: bool = False, verbose: bool = False) -> Any:
        from runner.supervisor.core import Report

        if self.fail is not None:
            raise self.fail
        for d in docs:
            parse_documents(d.text, d.source)
        return Report((), ())


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[ApiClient, FakeSupervisor]]:
    sup = FakeSupervisor()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_SupervisorServicer_to_server(Servicer(sup), server)  # type: ignore[arg-type]
    sock = str(tmp_path / "api.sock")
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    client = ApiClient(sock, timeout=10)
    try:
        yield client, sup
    finally:
        client.close()
        server.stop(0)


def test_problems_come_back_with_file_ni_path_and_line(
        api: tuple[ApiClient, FakeSupervisor]) -> None:
    client, _ = api
    text = ("apiVersion: nirunner/v1\nkind: NetworkInstance\nmetadata: {name: x}\n"
            "spec: {type: local, subnet: 224.0.0.0/24}\n")
    with pytest.raises(ManifestError) as err:
        client.apply([("site.yaml", text)])
    (p,) = err.value.problems
    assert p == Problem("site.yaml", "x", "spec.subnet",
                        "224.0.0.0/24 is multicast (224.0.0.0/4): for groups, not hosts", 4)


def test_a_control_character_and_a_2_mib_payload_are_problems(
        api: tuple[ApiClient, FakeSupervisor]) -> None:
    client, _ = api
    with pytest.raises(ManifestError) as err:
        client.apply([("bad.yaml", "a: 1\nb: \x1b[31m\n")])
    assert [(p.source, p.line) for p in err.value.problems] == [("bad.yaml", 2)]
    assert "control character U+001B" in str(err.value)
    with pytest.raises(ManifestError, match=r"^big.yaml: is larger than 1048576 bytes"):
        client.apply([("big.yaml", "# " + "x" * (2 << 20) + "\n")])
    with pytest.raises(ManifestError, match=r"^<input>: invalid YAML"):
        client.apply([("", "a: [")])  # no source: still named


def test_thousands_of_problems_fit_the_trailers(api: tuple[ApiClient, FakeSupervisor]) -> None:
    client, sup = api
    sup.fail = ManifestError(Problem("site.yaml", f"n{i}", "spec.subnet", "é€✓" * 300, i)
                             for i in range(5000))
    with pytest.raises(ManifestError) as err:
        client.apply([("site.yaml", "")])
    found = err.value.problems
    assert 3 <= len(found) < 5000
    assert found[0].message == "é€✓" * 66 + "é€ ..."  # cut to 200 characters
    assert found[0] == replace(sup.fail.problems[0], message=found[0].message)
    assert found[-1].message.startswith(f"... and {5001 - len(found)} more problem(s)")


def test_config_errors_keep_their_type_and_other_errors_stay_api_errors(
        api: tuple[ApiClient, FakeSupervisor]) -> None:
    client, sup = api
    sup.fail = ConfigError([Problem("c.yaml", None, "uplinks", "must be a list", 3)])
    with pytest.raises(ConfigError, match=r"^c.yaml: uplinks must be a list \(line 3\)$"):
        client.apply([])
    sup.fail = NirunnerError("NI x: no transit slot")
    with pytest.raises(ApiError, match="^NI x: no transit slot$"):
        client.apply([])


def test_decode_ignores_what_it_does_not_know() -> None:
    assert wire.decode(None) is None
    assert wire.decode([("other", b"x")]) is None
    assert wire.decode([(wire.PROBLEMS_KEY, b"not json")]) is None
    e = wire.decode([(wire.PROBLEMS_KEY, b'{"kind": "?", "problems": [{"line": "x"}, 1]}')])
    assert isinstance(e, ManifestError) and e.problems == [Problem(None, None, "", "", None)]
