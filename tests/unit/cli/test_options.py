"""--socket, --containerd and --namespace: before the subcommand, after it, or from env."""

from __future__ import annotations

import pytest

from runner.api.client import DEFAULT_SOCKET
from runner.cli.main import parser
from runner.containerd.client import DEFAULT_ADDRESS, DEFAULT_NAMESPACE


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("NIRUNNER_SOCKET", "NIRUNNER_CONTAINERD", "NIRUNNER_NAMESPACE"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("argv", [
    ["--socket", "/s.sock", "status"],
    ["status", "--socket", "/s.sock"],
    ["--socket", "/other.sock", "status", "--socket", "/s.sock"],  # the nearer one wins
    ["--socket=/s.sock", "attach", "x", "--netns", "/n"],
    ["events", "-f", "--socket", "/s.sock"],
])
def test_socket_in_either_place(argv: list[str]) -> None:
    assert parser().parse_args(argv).socket == "/s.sock"


def test_socket_default_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parser().parse_args(["status"]).socket == DEFAULT_SOCKET
    monkeypatch.setenv("NIRUNNER_SOCKET", "/env.sock")
    assert parser().parse_args(["delete", "x"]).socket == "/env.sock"
    assert parser().parse_args(["delete", "x", "--socket", "/s.sock"]).socket == "/s.sock"


@pytest.mark.parametrize("argv", [
    ["--containerd", "/c.sock", "--namespace", "lab", "image", "ls"],
    ["image", "ls", "--containerd", "/c.sock", "--namespace", "lab"],
    ["--namespace", "lab", "version", "--containerd", "/c.sock"],
    ["image", "import", "f.tar", "--containerd", "/c.sock", "--namespace", "lab"],
    ["image", "build", "--namespace", "lab", "--containerd", "/c.sock"],
])
def test_containerd_options_in_either_place(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    assert (args.containerd, args.namespace) == ("/c.sock", "lab")


def test_containerd_defaults_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    args = parser().parse_args(["version"])
    assert (args.containerd, args.namespace) == (DEFAULT_ADDRESS, DEFAULT_NAMESPACE)
    monkeypatch.setenv("NIRUNNER_NAMESPACE", "envns")
    assert parser().parse_args(["image", "ls"]).namespace == "envns"
