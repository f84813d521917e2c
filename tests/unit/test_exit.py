"""runner.exit: a command's output survives the exit without teardown."""

import os
import subprocess
import sys

PROG = """
import atexit, sys
from runner.exit import exit_now
atexit.register(lambda: print("teardown ran", file=sys.stderr))
def main():
    sys.stdout.write("x" * 200_000)  # more than a pipe holds
    sys.stdout.write("\\nend\\n")  # left in the buffer: must be flushed
    print("to stderr", file=sys.stderr)
    if sys.argv[1] == "raise":
        raise RuntimeError("boom")
    return int(sys.argv[1])
exit_now(main())
"""


BUFFERED = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


def _run(arg: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PROG, arg], capture_output=True, text=True,
                          timeout=30, env=BUFFERED)


def test_streams_flushed_code_kept_no_teardown() -> None:
    for code in (0, 3):
        res = _run(str(code))
        assert res.returncode == code
        assert res.stdout == "x" * 200_000 + "\nend\n"
        assert res.stderr == "to stderr\n"  # the atexit hook did not run


def test_an_exception_leaves_the_normal_way() -> None:
    res = _run("raise")
    assert res.returncode == 1
    assert "RuntimeError: boom" in res.stderr and "teardown ran" in res.stderr


def test_a_reader_gone_is_a_failure() -> None:
    # stdout a pipe with no reader, block-buffered: the line fails at the flush
    r, w = os.pipe()
    os.close(r)
    try:
        res = subprocess.run([sys.executable, "-c", PROG.replace('"x" * 200_000', '"x"'), "0"],
                             stdout=w, stderr=subprocess.PIPE, text=True, timeout=30,
                             env=BUFFERED)
    finally:
        os.close(w)
    assert res.returncode == 1 and res.stderr == "to stderr\n"


RUN = """
import atexit, sys
from runner.cli import main, ni_commands
ni_commands.cmd_supervise = lambda args: 0  # the parser takes it when built, in run()
atexit.register(lambda: print("teardown ran", file=sys.stderr))
sys.argv = ["nirunner", *sys.argv[1:]]
main.run()
"""


def test_only_the_supervisor_leaves_the_normal_way() -> None:
    """`nirunner supervise` (a daemon: its threads and exit hooks must end) runs the
    interpreter's teardown; another command does not."""
    def teardown(*argv: str) -> bool:
        res = subprocess.run([sys.executable, "-c", RUN, *argv], capture_output=True,
                             text=True, timeout=30, env=BUFFERED)
        assert res.returncode == 0, res.stderr
        return "teardown ran" in res.stderr

    assert teardown("supervise", "--config", "unused.yaml")
    assert not teardown("validate", "-f", "/dev/null")
