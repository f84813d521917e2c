"""Behaviour of images/ni/init/ni-init.c, run unprivileged outside any container.

The init's test-only environment overrides point it at a config dir, a state dir and
fake service scripts in tmp_path; NI_INIT_TIME_SCALE shrinks its delays where a test
needs a whole backoff series. Every wait is bounded.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.memory import ppid

if shutil.which("gcc") is None:
    pytest.skip("gcc is not installed", allow_module_level=True)

INIT_SOURCE = Path(__file__).resolve().parents[2] / "images" / "ni" / "init" / "ni-init.c"

# A long-running daemon stand-in: records how it was started and the signals it got.
# The traps come first, so once its pid is in {name}.pids it handles signals.
DAEMON = """#!/bin/sh
trap 'echo hup >> "$TEST_DIR/{name}.hups"' HUP
trap '{on_term}' TERM
echo $$ >> "$TEST_DIR/{name}.pids"
printf '%s\\n' "$*" > "$TEST_DIR/{name}.args"
printf '%s\\n' "${{STRONGSWAN_CONF:-}}" > "$TEST_DIR/{name}.env"
{extra}
while :; do sleep 0.05; done
"""


@pytest.fixture(scope="module")
def init_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ni-init") / "ni-init"
    base = ["gcc", "-Os", "-Wall", "-Wextra", "-Werror", "-o", str(out), str(INIT_SOURCE)]
    # The image links statically; fall back to dynamic where libc.a is missing, the
    # behaviour under test is the same.
    static = subprocess.run(base[:1] + ["-static"] + base[1:], capture_output=True, text=True)
    if static.returncode != 0:
        dynamic = subprocess.run(base, capture_output=True, text=True)
        assert dynamic.returncode == 0, dynamic.stderr
    return out


class Init:
    """A running ni-init with its stderr collected line by line."""

    def __init__(self, binary: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [str(binary)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # lets teardown kill every process it started
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def log(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 5.0, count: int = 1) -> list[re.Match[str]]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for line in self.lines if (m := rx.search(line))]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no {count}x {pattern!r} within {timeout}s; log:\n" + "\n".join(self.lines)
                    )
                self._cond.wait(left)

    def count(self, pattern: str) -> int:
        with self._cond:
            return sum(1 for line in self.lines if re.search(pattern, line))

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            # ni-init is gone, but leftover services would still be in its group.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=5)


class Env:
    """Config dir, state dir and fake services for one test."""

    def __init__(self, tmp_path: Path, binary: Path) -> None:
        self.dir = tmp_path
        self.config = tmp_path / "config"
        self.state = tmp_path / "state"
        self.config.mkdir()
        self.state.mkdir()
        self.binary = binary
        self.inits: list[Init] = []
        self.service("dnsmasq")
        self.service("charon")

    def service(self, name: str, body: str | None = None, on_term: str = "exit 0",
                extra: str = "") -> None:
        """Write the fake binary for `name`: the daemon stand-in, or a custom body."""
        script = self.dir / f"{name}.sh"
        text = body if body is not None else DAEMON.format(name=name, on_term=on_term, extra=extra)
        script.write_text(text)
        script.chmod(0o755)

    def configure(self, name: str) -> None:
        conf = {"dnsmasq": "dnsmasq.conf", "charon": "strongswan.conf"}[name]
        (self.config / conf).write_text("# test\n")

    def unconfigure(self, name: str) -> None:
        conf = {"dnsmasq": "dnsmasq.conf", "charon": "strongswan.conf"}[name]
        (self.config / conf).unlink()

    def start(self, time_scale: float = 1.0, state_dir: Path | None = None) -> Init:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "TEST_DIR": str(self.dir),
            "NI_INIT_CONFIG_DIR": str(self.config),
            "NI_INIT_STATE_DIR": str(state_dir or self.state),
            "NI_INIT_DNSMASQ": str(self.dir / "dnsmasq.sh"),
            "NI_INIT_CHARON": str(self.dir / "charon.sh"),
            "NI_INIT_TIME_SCALE": str(time_scale),
        }
        init = Init(self.binary, env)
        self.inits.append(init)
        return init

    def status(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for line in (self.state / "services.status").read_text().splitlines():
            name, state, *fields = line.split()
            out[name] = {"state": state, **dict(f.split("=", 1) for f in fields)}
        return out

    def wait_status(self, name: str, timeout: float = 5.0, **want: str) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                got = self.status().get(name, {})
            except FileNotFoundError:
                got = {}
            if all(got.get(k) == v for k, v in want.items()):
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} status {got} never matched {want}")
            time.sleep(0.02)

    def read(self, name: str) -> str:
        path = self.dir / name
        return path.read_text() if path.exists() else ""

    def wait_file(self, name: str, pattern: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, text := self.read(name)):
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} never matched {pattern!r}: {text!r}")
            time.sleep(0.02)
        return text


@pytest.fixture
def env(tmp_path: Path, init_binary: Path) -> Iterator[Env]:
    e = Env(tmp_path, init_binary)
    yield e
    for init in e.inits:
        init.close()


def wait_exit(init: Init, timeout: float = 5.0) -> int:
    try:
        return init.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("ni-init did not exit; log:\n" + init.log()) from None


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def eventually(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_starts_configured_services_with_their_argv_and_env(env: Env) -> None:
    env.configure("dnsmasq")
    env.configure("charon")
    init = env.start()
    init.wait_for(r"^ni-init: dnsmasq started pid=\d+$")
    init.wait_for(r"^ni-init: charon started pid=\d+$")

    args = env.wait_file("dnsmasq.args", r"\n")
    assert args.split() == ["--keep-in-foreground", f"--conf-file={env.config}/dnsmasq.conf"]
    assert env.wait_file("charon.env", r"\n").strip() == f"{env.config}/strongswan.conf"
    assert env.wait_file("charon.args", r"\n").strip() == ""

    dns = env.wait_status("dnsmasq", state="running")
    assert dns == {"state": "running", "pid": env.read("dnsmasq.pids").split()[0],
                   "restarts": "0", "last_exit": "-"}
    assert env.wait_status("charon", state="running")["restarts"] == "0"


def test_unconfigured_service_is_not_started(env: Env) -> None:
    env.configure("dnsmasq")
    init = env.start()
    init.wait_for(r"dnsmasq started")
    status = env.wait_status("dnsmasq", state="running")
    assert status["state"] == "running"
    assert env.status()["charon"] == {"state": "stopped", "pid": "0", "restarts": "0",
                                      "last_exit": "-"}
    assert init.count("charon") == 0
    # status is replaced atomically: no temp file left behind
    assert sorted(p.name for p in env.state.iterdir()) == ["services.status"]


def test_crashed_service_restarts_with_doubling_backoff(env: Env) -> None:
    env.service("dnsmasq", '#!/bin/sh\ndate +%s.%N >> "$TEST_DIR/starts"\nexit 2\n')
    env.configure("dnsmasq")
    init = env.start()  # real delays: 0.5 s, then 1.0 s
    init.wait_for(r"^ni-init: dnsmasq exited with status 2, restart 1 in 0\.5s$")
    init.wait_for(r"^ni-init: dnsmasq restarted pid=\d+ \(restart 1\)$", timeout=3)
    init.wait_for(r"^ni-init: dnsmasq exited with status 2, restart 2 in 1\.0s$", timeout=3)
    init.wait_for(r"^ni-init: dnsmasq restarted pid=\d+ \(restart 2\)$", timeout=3)
    init.wait_for(r"restart 3 in 2\.0s$", timeout=3)

    starts = [float(x) for x in env.read("starts").split()]
    assert len(starts) >= 3
    assert 0.45 <= starts[1] - starts[0] < 1.0
    assert 0.95 <= starts[2] - starts[1] < 1.6
    status = env.wait_status("dnsmasq", state="backoff")
    assert status["last_exit"] == "2" and status["pid"] == "0"
    assert int(status["restarts"]) >= 2


def test_failed_after_five_crashes_until_sighup(env: Env) -> None:
    env.service("dnsmasq", '#!/bin/sh\necho x >> "$TEST_DIR/starts"\nexit 3\n')
    env.configure("dnsmasq")
    init = env.start(time_scale=0.1)
    init.wait_for(r"^ni-init: dnsmasq exited with status 3, failed after 5 crashes in a row",
                  timeout=5)
    for n, delay in enumerate(["0.1", "0.1", "0.2", "0.4"], start=1):  # 50 ms .. 400 ms
        init.wait_for(rf"exited with status 3, restart {n} in {delay}s$", timeout=0)
    assert env.wait_status("dnsmasq", state="failed") == {
        "state": "failed", "pid": "0", "restarts": "4", "last_exit": "3"}
    time.sleep(1.0)  # longer than the whole backoff series at this scale
    assert env.read("starts").count("x") == 5

    init.send(signal.SIGHUP)
    init.wait_for(r"^ni-init: dnsmasq failed state cleared$")
    init.wait_for(r"^ni-init: dnsmasq started pid=\d+$", count=2)
    env.wait_file("starts", r"(x\n){6}")


def test_uptime_past_stable_window_resets_the_crash_series(env: Env) -> None:
    # scale 0.01: backoff 5 ms.., stable window 0.6 s
    env.service("dnsmasq", """#!/bin/sh
echo x >> "$TEST_DIR/starts"
n=$(wc -l < "$TEST_DIR/starts")
[ "$n" -le 2 ] && exit 2
[ "$n" -eq 3 ] && { sleep 1; exit 4; }
while :; do sleep 0.05; done
""")
    env.configure("dnsmasq")
    init = env.start(time_scale=0.01)
    init.wait_for(r"exited with status 2, restart 2 in")
    init.wait_for(r"^ni-init: dnsmasq exited with status 4, restart 1 in 0\.0s$", timeout=4)


def test_killed_service_reports_signal(env: Env) -> None:
    env.service("charon", '#!/bin/sh\nkill -SEGV $$\nsleep 5\n')
    env.configure("charon")
    init = env.start(time_scale=0.1)
    init.wait_for(r"^ni-init: charon killed by SIGSEGV, restart 1 in 0\.1s$")
    assert env.wait_status("charon", last_exit="SIGSEGV")["last_exit"] == "SIGSEGV"


def test_reaps_orphans_of_services(env: Env) -> None:
    # The service forks a grandchild and lets its parent die, so the grandchild is
    # reparented to ni-init (subreaper) and must be reaped when it exits.
    extra = 'sh -c \'sleep 0.6 & echo $! > "$TEST_DIR/orphan.pid"\''
    env.service("dnsmasq", extra=extra)
    env.configure("dnsmasq")
    init = env.start()
    init.wait_for(r"dnsmasq started")
    orphan = int(env.wait_file("orphan.pid", r"\d+\n"))

    assert ppid(orphan) == init.proc.pid
    assert eventually(lambda: not Path(f"/proc/{orphan}").exists(), timeout=3), (
        f"orphan {orphan} not reaped: {Path(f'/proc/{orphan}/stat').read_text()}")
    assert init.proc.poll() is None
    assert env.status()["dnsmasq"]["state"] == "running"


def test_sighup_starts_new_services_forwards_hup_and_stops_removed(env: Env) -> None:
    env.configure("dnsmasq")
    init = env.start(time_scale=0.1)
    init.wait_for(r"dnsmasq started")
    env.wait_file("dnsmasq.pids", r"\d")
    dns_pid = int(env.read("dnsmasq.pids").split()[0])
    assert env.wait_status("charon", state="stopped")

    env.configure("charon")
    init.send(signal.SIGHUP)
    init.wait_for(r"^ni-init: charon started pid=\d+$")
    init.wait_for(r"^ni-init: dnsmasq sent SIGHUP \(reload\)$")
    env.wait_file("dnsmasq.hups", r"hup")
    assert env.wait_status("charon", state="running")
    assert env.status()["dnsmasq"]["pid"] == str(dns_pid)  # reloaded, not restarted
    assert not env.read("charon.hups")  # only dnsmasq gets the reload signal

    env.unconfigure("dnsmasq")
    init.send(signal.SIGHUP)
    init.wait_for(r"^ni-init: dnsmasq config removed, stopping pid=\d+$")
    init.wait_for(r"^ni-init: dnsmasq exited with status 0, stopped$")
    assert env.wait_status("dnsmasq", state="stopped")["pid"] == "0"
    assert eventually(lambda: not alive(dns_pid))
    assert env.status()["charon"]["state"] == "running"
    assert init.count("restart") == 0


def test_sighup_restarts_dnsmasq_alone_when_its_start_only_file_changed(env: Env) -> None:
    """nftsets.conf (the ACLs' host names) is read at start only: a new one restarts
    dnsmasq, not the task; an unchanged one leaves it to a plain reload."""
    env.configure("dnsmasq")
    env.configure("charon")
    nftsets = env.config / "nftsets.conf"
    nftsets.write_text("# none\n")
    init = env.start(time_scale=0.1)
    init.wait_for(r"dnsmasq started")
    init.wait_for(r"charon started")
    env.wait_file("dnsmasq.pids", r"\d")
    first = int(env.read("dnsmasq.pids").split()[0])
    charon = env.wait_status("charon", state="running")["pid"]

    init.send(signal.SIGHUP)  # nothing changed: a reload
    init.wait_for(r"^ni-init: dnsmasq sent SIGHUP \(reload\)$")
    assert env.status()["dnsmasq"]["pid"] == str(first)

    tmp = env.config / ".nftsets.tmp"  # replaced as the supervisor writes files: rename
    tmp.write_text("nftset=/www.example.test/4#inet#acl#h_0123456789ab\n")
    tmp.rename(nftsets)
    init.send(signal.SIGHUP)
    init.wait_for(r"^ni-init: dnsmasq nftsets.conf changed, restarting, stopping pid=\d+$")
    init.wait_for(r"^ni-init: dnsmasq started pid=\d+$", count=2)
    assert env.wait_file("dnsmasq.pids", r"\d+\s+\d+").split()[0] == str(first)
    second = int(env.read("dnsmasq.pids").split()[1])
    assert eventually(lambda: not alive(first))
    assert env.wait_status("dnsmasq", state="running")["pid"] == str(second)
    assert env.status()["charon"]["pid"] == charon and init.proc.poll() is None
    assert env.status()["dnsmasq"]["restarts"] == "0"  # on purpose: no crash counted

    init.send(signal.SIGHUP)  # and from then on the new file is the one it started with
    init.wait_for(r"dnsmasq sent SIGHUP \(reload\)", count=2)
    assert env.status()["dnsmasq"]["pid"] == str(second)


def test_sigterm_stops_everything_and_exits_zero(env: Env) -> None:
    env.service("dnsmasq")
    env.service("charon", on_term="echo ignored >> \"$TEST_DIR/charon.terms\"")
    env.configure("dnsmasq")
    env.configure("charon")
    init = env.start(time_scale=0.1)  # SIGKILL after 0.5 s
    init.wait_for(r"dnsmasq started")
    init.wait_for(r"charon started")
    env.wait_file("dnsmasq.pids", r"\d")
    env.wait_file("charon.pids", r"\d")
    pids = [int(env.read(f"{n}.pids").split()[0]) for n in ("dnsmasq", "charon")]

    started = time.monotonic()
    init.send(signal.SIGTERM)
    assert wait_exit(init) == 0
    assert time.monotonic() - started < 3
    assert "ni-init: received SIGTERM, stopping services" in init.log()
    assert "ni-init: charon did not stop in time, sending SIGKILL" in init.log()
    assert "ni-init: charon killed by SIGKILL, stopped" in init.log()
    assert env.read("charon.terms") == "ignored\n"
    assert eventually(lambda: not any(alive(p) for p in pids))
    assert {name: s["state"] for name, s in env.status().items()} == {
        "dnsmasq": "stopped", "charon": "stopped"}
    assert init.count("restart") == 0


def test_sigint_with_nothing_running_exits_zero(env: Env) -> None:
    init = env.start()
    init.wait_for(r"starting")
    env.wait_status("dnsmasq", state="stopped")
    init.send(signal.SIGINT)
    assert wait_exit(init) == 0
    assert "received SIGINT" in init.log()


def test_unwritable_state_dir_is_skipped(env: Env) -> None:
    env.configure("dnsmasq")
    missing = env.dir / "no-such-dir"
    init = env.start(state_dir=missing)
    init.wait_for(r"dnsmasq started")
    env.wait_file("dnsmasq.pids", r"\d\n")
    init.wait_for(r"not writing status")
    init.send(signal.SIGTERM)
    assert wait_exit(init) == 0
    assert init.count("not writing status") == 1  # said once, not on every update
    assert not missing.exists()


def test_with_nothing_to_start_it_idles_until_stopped(env: Env) -> None:
    """A switch NI's task: an empty config dir, no service; ni-init stays up, quietly."""
    init = env.start()
    init.wait_for(r"starting")
    env.wait_status("dnsmasq", state="stopped")
    assert {n: s["state"] for n, s in env.status().items()} == {"dnsmasq": "stopped",
                                                                "charon": "stopped"}
    time.sleep(0.5)
    assert init.proc.poll() is None  # still running
    assert init.log().strip().splitlines() == [init.log().strip()]  # only "starting"
    assert init.log().startswith("ni-init: starting")
    init.send(signal.SIGTERM)
    assert wait_exit(init) == 0
