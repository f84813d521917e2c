"""Shell completion: the scripts are generated from the parser, and bash's completes
subcommands, options, values and NI names asked from an API server on a Unix socket
(a small fake of the supervisor's Status call)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from runner.cli import completion
from runner.cli.main import parser
from runner.pb.nirunner.v1 import nirunner_pb2 as pb
from runner.pb.nirunner.v1 import nirunner_pb2_grpc as pb_grpc

NIRUNNER = Path(sys.executable).with_name("nirunner")  # the installed console script
NIS = ["factory", "farm", "lab"]


class FakeSupervisor(pb_grpc.SupervisorServicer):
    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext
               ) -> pb.StatusResponse:
        return pb.StatusResponse(ni_json=[json.dumps({"name": n, "state": "running"})
                                          for n in NIS])


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    sock = str(tmp_path_factory.mktemp("api") / "api.sock")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_SupervisorServicer_to_server(FakeSupervisor(), server)
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    yield sock
    server.stop(0).wait()


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not NIRUNNER.is_file():
        pytest.fail(f"no nirunner script at {NIRUNNER}: install the project (make venv)")
    out = subprocess.run([str(NIRUNNER), "completion", "bash"], capture_output=True,
                         text=True, check=True, timeout=30).stdout
    path = tmp_path_factory.mktemp("bash") / "nirunner.bash"
    path.write_text(out)
    return path


def complete(script: Path, *words: str, env: dict[str, str] | None = None) -> list[str]:
    """What bash offers for the command line `nirunner WORDS` (the last word is the one
    being completed), through the script's own completion function."""
    argv = [str(NIRUNNER), *words]
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in argv)
    prog = (f"source {script}\nCOMP_WORDS=({quoted})\nCOMP_CWORD={len(argv) - 1}\n"
            f"_nirunner\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n")
    res = subprocess.run(["bash", "--norc", "-c", prog], capture_output=True, text=True,
                         timeout=30, env=env)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    return [w for w in res.stdout.splitlines() if w]


def test_complete_is_registered(script: Path) -> None:
    res = subprocess.run(["bash", "--norc", "-c", f"source {script}; complete -p nirunner"],
                         capture_output=True, text=True, timeout=30)
    assert res.stdout.strip() == "complete -F _nirunner nirunner", res.stderr


def test_subcommands_and_options(script: Path) -> None:
    assert complete(script, "sta") == ["status"]
    assert complete(script, "") == ["version", "image", "supervise", "validate", "apply",
                                     "delete", "status", "inspect", "events", "attach",
                                     "detach", "flows", "reload", "roll", "install",
                                     "completion", "fleet"]
    assert complete(script, "image", "") == ["build", "import", "ls"]
    assert complete(script, "status", "--j") == ["--json"]
    assert complete(script, "--so") == ["--socket"]
    assert complete(script, "status", "-o", "") == ["table", "yaml", "json"]
    assert complete(script, "supervise", "--log-format", "j") == ["journal", "json"]
    assert complete(script, "completion", "") == ["bash", "zsh"]
    assert complete(script, "events", "-f", "") == []  # events' -f is --follow: no value


def test_files_where_a_path_is_wanted(script: Path, tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text("")
    assert complete(script, "apply", "-f", str(tmp_path / "si")) == [str(tmp_path /
                                                                          "site.yaml")]
    assert complete(script, "validate", "--config",
                    str(tmp_path / "s")) == [str(tmp_path / "site.yaml")]


@pytest.mark.parametrize("words", [
    ("--socket", "{s}", "status", "f"),
    ("status", "--socket", "{s}", "f"),
    ("--socket", "=", "{s}", "delete", "f"),  # bash split --socket={s} at '='
    ("--socket={s}", "status", "f"),  # ... or did not
    ("attach", "--socket", "{s}", "f"),
])
def test_ni_names_from_the_api(script: Path, api: str, words: tuple[str, ...]) -> None:
    assert complete(script, *(w.format(s=api) for w in words)) == ["factory", "farm"]


def test_ni_names_from_the_socket_in_the_environment(script: Path, api: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "NIRUNNER_SOCKET": api}
    assert complete(script, "inspect", "", env=env) == NIS
    assert complete(script, "inspect", "lab", "", env=env) == []  # inspect takes one NI
    assert complete(script, "status", "lab", "f", env=env) == ["factory", "farm"]


def test_supervisor_down_gives_nothing_quickly(script: Path, tmp_path: Path) -> None:
    t0 = time.monotonic()
    assert complete(script, "--socket", str(tmp_path / "none.sock"), "status", "f") == []
    assert time.monotonic() - t0 < 5
    res = subprocess.run([str(NIRUNNER), "--socket", str(tmp_path / "none.sock"),
                          completion.HIDDEN_NIS], capture_output=True, text=True, timeout=30)
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")


def test_hidden_helper_prints_names(api: str) -> None:
    res = subprocess.run([str(NIRUNNER), completion.HIDDEN_NIS, "--socket", api],
                         capture_output=True, text=True, timeout=30)
    assert res.stdout.split() == NIS and res.stderr == ""
    assert completion.HIDDEN_NIS not in subprocess.run(
        [str(NIRUNNER), "--help"], capture_output=True, text=True, timeout=30).stdout


def test_the_model_follows_the_parser() -> None:
    top = completion.command(parser())
    by_path = {c.path: c for c in completion.walk(top)}
    assert by_path[("status",)].positional == "nis"
    assert by_path[("inspect",)].positional == "ni"
    assert by_path[("image", "import")].positional == "file"
    assert (completion.HIDDEN_NIS,) not in by_path
    flags = {f: o.value for o in by_path[("status",)].options for f in o.flags}
    assert flags["--socket"] == "file" and flags["-o"] == "words:table yaml json"
    assert flags["--json"] == ""


def test_zsh_script_is_valid_zsh() -> None:
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.fail("zsh is not installed (make deps installs it)")
    text = completion.zsh(completion.command(parser()))
    res = subprocess.run([zsh, "-n"], input=text, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert text.startswith("#compdef nirunner\n")
    assert "'*:network instance:_nirunner_nis'" in text  # status, delete
    assert "'1:network instance:_nirunner_nis'" in text  # inspect, attach


def test_zsh_asks_the_api_for_ni_names(api: str, tmp_path: Path) -> None:
    """zsh's NI lookup, with _describe (from zsh's completion system) replaced by a
    stand-in that prints the candidates."""
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.fail("zsh is not installed (make deps installs it)")
    script = tmp_path / "_nirunner"
    script.write_text(completion.zsh(completion.command(parser())))
    prog = (f"source {script}\n"
            "_describe() { print -l ${(P)${@[-1]}} }\n"
            f"_nirunner_prog={NIRUNNER}\n"
            "typeset -A opt_args\n"
            f"opt_args[--socket]={api}\n_nirunner_nis\n"
            f"opt_args=()\n_nirunner_socket={tmp_path}/none.sock\n_nirunner_nis\n")
    res = subprocess.run([zsh, "-f", "-c", prog], capture_output=True, text=True,
                         timeout=30)
    assert (res.stdout.split(), res.stderr) == (NIS, "")
