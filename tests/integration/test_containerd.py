"""The containerd layer against a real (private) containerd and runc."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from bench.memory import ppid
from runner.containerd import metrics, tasks
from runner.containerd import spec as oci
from runner.containerd.client import Client
from runner.containerd.errors import AlreadyExists, NotFound, Unavailable
from runner.containerd.images import ImageInfo, import_archive
from runner.lab.containerd import PrivateContainerd
from runner.lab.topology import sh
from runner.model.types import TaskSeccomp
from runner.nitask import NITask
from tests.integration.conftest import NAMESPACE, RUN_ID, ctr

MEMORY = 48 << 20
CG = Path("/sys/fs/cgroup")

DNSMASQ_CONF = """\
no-resolv
no-hosts
bind-interfaces
listen-address=10.77.0.1
port=53
user=root
group=
pid-file=/run/dnsmasq.pid
log-facility=-
host-record=probe.nirunner.test,10.77.0.99
"""


@dataclass
class Running:
    task: NITask
    pid: int
    ni_ns: str
    client_ns: str


def _wire(ni_ns: str, client_ns: str, tag: str = "") -> None:
    """A veth between the NI netns (10.77.0.1) and a client netns (10.77.0.2)."""
    a, b = f"nrt{RUN_ID}a{tag}", f"nrt{RUN_ID}b{tag}"
    sh("ip", "link", "add", a, "netns", ni_ns, "type", "veth", "peer", "name", b,
       "netns", client_ns)
    sh("ip", "addr", "add", "10.77.0.1/24", "dev", a, netns=ni_ns)
    sh("ip", "link", "set", a, "up", netns=ni_ns)
    sh("ip", "link", "set", "lo", "up", netns=ni_ns)
    sh("ip", "addr", "add", "10.77.0.2/24", "dev", b, netns=client_ns)
    sh("ip", "link", "set", b, "up", netns=client_ns)


def _dns(client_ns: str, name: str, deadline: float = 10.0) -> list[str]:
    end = time.monotonic() + deadline
    while True:
        out = subprocess.run(
            ["ip", "netns", "exec", client_ns, sys.executable, "-m", "runner.lab.dnsq",
             "10.77.0.1", name], capture_output=True, text=True, timeout=10)
        if out.returncode == 0 or time.monotonic() > end:
            return out.stdout.split()
        time.sleep(0.2)


def _task(netns: Callable[[str], str], tmp_path: Path, tag: str = "",
          mode: TaskSeccomp = TaskSeccomp.ENFORCE, group: str = "") -> tuple[NITask, str, str]:
    """An NI task's netns, wired to a client netns, and its config; nothing started."""
    ni_ns, client_ns = netns(f"ni{tag}"), netns(f"client{tag}")
    _wire(ni_ns, client_ns, tag)
    cfg, state = tmp_path / f"config{tag}", tmp_path / f"state{tag}"
    cfg.mkdir()
    state.mkdir()
    (cfg / "dnsmasq.conf").write_text(DNSMASQ_CONF)
    t = NITask(
        name=f"t{RUN_ID}{tag}", ni_type="local", uplink="eth0", generation="1",
        netns_path=f"/run/netns/{ni_ns}", config_dir=str(cfg), state_dir=str(state),
        log_path=str(tmp_path / f"task{tag}.log"),
        limits=oci.Limits.from_cpus(MEMORY, 0.5, 64), seccomp=mode, shim_group=group,
    )
    return t, ni_ns, client_ns


@contextlib.contextmanager
def _running(client: Client, image: str, netns: Callable[[str], str], tmp_path: Path,
             tag: str = "", mode: TaskSeccomp = TaskSeccomp.ENFORCE,
             group: str = "") -> Iterator[Running]:
    from runner import nitask

    t, ni_ns, client_ns = _task(netns, tmp_path, tag, mode, group)
    pid = nitask.run(client, image, t)
    try:
        yield Running(t, pid, ni_ns, client_ns)
    finally:
        nitask.remove(client, t.name)


@pytest.fixture
def running(
    client: Client, ni_image: ImageInfo, netns: Callable[[str], str], tmp_path: Path
) -> Iterator[Running]:
    with _running(client, ni_image.name, netns, tmp_path) as r:
        yield r


def test_image_is_imported_and_listed(
    containerd: PrivateContainerd, client: Client, ni_image: ImageInfo, image_archive: Path
) -> None:
    assert ni_image.name in ctr(containerd, "images", "ls", "-q").split()
    again = import_archive(client, str(image_archive))  # idempotent: blobs exist already
    assert again.manifest_digest == ni_image.manifest_digest
    assert ni_image.chain_id in ctr(containerd, "snapshots", "ls")
    assert ctr(containerd, "leases", "ls", "-q").split() == []


def test_task_runs_in_its_netns_with_caps_and_limits(
    containerd: PrivateContainerd, running: Running
) -> None:
    cid = running.task.container_id
    line = [ln for ln in ctr(containerd, "tasks", "ls").splitlines() if ln.startswith(cid)]
    assert line and line[0].split()[-1] == "RUNNING"

    info = json.loads(ctr(containerd, "containers", "info", cid))
    assert info["Labels"] == running.task.labels()
    spec = info["Spec"]
    netns = [n for n in spec["linux"]["namespaces"] if n["type"] == "network"]
    assert netns == [{"type": "network", "path": running.task.netns_path}]
    assert sorted(spec["process"]["capabilities"]["effective"]) == [
        "CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"]
    assert spec["linux"]["resources"]["memory"]["limit"] == MEMORY
    assert spec["linux"]["resources"]["pids"]["limit"] == 64

    # the task really is in the pre-created netns
    assert os.stat(f"/proc/{running.pid}/ns/net").st_ino == os.stat(
        running.task.netns_path).st_ino
    # the kernel enforces the limits
    path = f"{NAMESPACE}/{cid}"
    assert int((CG / "memory" / path / "memory.limit_in_bytes").read_text()) == MEMORY
    assert int((CG / "cpu" / path / "cpu.cfs_quota_us").read_text()) == 50_000
    assert (CG / "pids" / path / "pids.max").read_text().strip() == "64"
    # and the process holds only the three capabilities
    status = Path(f"/proc/{running.pid}/status").read_text()
    capeff = int(next(ln for ln in status.splitlines() if ln.startswith("CapEff")).split()[1], 16)
    assert capeff == (1 << 12) | (1 << 10) | (1 << 13)  # NET_ADMIN, NET_BIND_SERVICE, NET_RAW


def test_init_runs_dnsmasq_that_answers(running: Running) -> None:
    assert _dns(running.client_ns, "probe.nirunner.test") == ["10.77.0.99"]
    status = Path(running.task.state_dir, "services.status").read_text()
    assert status.startswith("dnsmasq running")


def _proc_status(pid: int, key: str) -> str:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(ln.split(":", 1)[1].strip() for ln in lines if ln.startswith(key + ":"))


def _dnsmasq_pid(task_pid: int) -> int:
    children = Path(f"/proc/{task_pid}/task/{task_pid}/children").read_text().split()
    found = [int(c) for c in children
             if Path(f"/proc/{c}/comm").read_text().strip() == "dnsmasq"]
    assert len(found) == 1, children
    return found[0]


def _sysprobe(client: Client, r: Running, tmp_path: Path) -> dict[str, str]:
    res = tasks.exec_in(client, r.task.container_id, ["/sbin/ni-sysprobe"],
                        str(tmp_path / f"probe-{r.task.name}.out"))
    assert res.exit_status == 0, res.output
    return dict(line.split(" ", 1) for line in res.output.splitlines())


# Would succeed in an NI task without the filter: no capability guards them.
UNGUARDED = ("ptrace", "unshare-user", "personality", "io_uring", "keyctl")
# Need capabilities an NI task never has (mount, bpf) or a kernel feature this one
# may lack (kexec_load: ENOSYS here): they fail either way, but with the filter
# the kernel never sees them.
GUARDED = ("mount", "bpf", "kexec_load")


def test_task_and_its_daemons_run_under_seccomp(
    client: Client, running: Running, tmp_path: Path
) -> None:
    assert _dns(running.client_ns, "probe.nirunner.test") == ["10.77.0.99"]
    for pid in (running.pid, _dnsmasq_pid(running.pid)):
        assert _proc_status(pid, "Seccomp") == "2"  # SECCOMP_MODE_FILTER
        assert _proc_status(pid, "NoNewPrivs") == "1"
    probe = _sysprobe(client, running, tmp_path)
    assert probe["getpid"] == "ok"  # the probe itself runs
    assert {p: probe[p] for p in UNGUARDED + GUARDED} == {
        p: "EPERM" for p in UNGUARDED + GUARDED}
    # the daemons did not notice: DNS still answers
    assert _dns(running.client_ns, "probe.nirunner.test") == ["10.77.0.99"]


def test_without_the_filter_the_same_calls_succeed(
    client: Client, ni_image: ImageInfo, netns: Callable[[str], str], tmp_path: Path
) -> None:
    """taskSeccomp: false: the probe tells the filter from missing capabilities."""
    with _running(client, ni_image.name, netns, tmp_path, "u", TaskSeccomp.OFF) as r:
        assert "seccomp" not in json.loads(
            tasks.get_container(client, r.task.container_id).spec.value)["linux"]
        assert _proc_status(r.pid, "Seccomp") == "0"
        assert _proc_status(r.pid, "NoNewPrivs") == "1"
        probe = _sysprobe(client, r, tmp_path)
    assert probe["getpid"] == "ok"
    assert {p: probe[p] for p in UNGUARDED} == {p: "ok" for p in UNGUARDED}
    assert probe["mount"] == probe["bpf"] == "EPERM"  # no CAP_SYS_ADMIN nor CAP_BPF
    assert probe["kexec_load"] in ("EPERM", "ENOSYS")


def test_memory_hog_is_oom_killed_while_the_task_lives(
    client: Client, running: Running, tmp_path: Path
) -> None:
    cid = running.task.container_id
    res = tasks.exec_in(client, cid, ["tail", "/dev/zero"], str(tmp_path / "hog.out"),
                        timeout=60)
    assert res.exit_status == 137  # SIGKILL by the OOM killer
    assert tasks.get_task(client, cid).status == "running"
    usage = metrics.decode(tasks.task_metrics(client, cid))
    assert usage.memory_limit == MEMORY
    assert (usage.oom_kills or 0) >= 1 or (usage.memory_failcnt or 0) > 0
    assert _dns(running.client_ns, "probe.nirunner.test") == ["10.77.0.99"]


def _settled(client: Client, cid: str, deadline: float = 10.0) -> metrics.Usage:
    """The task's usage once dnsmasq runs beside ni-init: ni-init starts it after the task
    is reported started, so a read right away may count one process (bounded wait)."""
    end = time.monotonic() + deadline
    while True:
        usage = metrics.decode(tasks.task_metrics(client, cid))
        if usage.pids >= 2 or time.monotonic() > end:
            return usage
        time.sleep(0.05)


def test_metrics_are_decoded_and_limits_update_live(client: Client, running: Running) -> None:
    cid = running.task.container_id
    usage = _settled(client, cid)
    assert usage.cgroup == "v1"
    assert 0 < usage.memory_bytes < MEMORY
    assert usage.pids >= 2  # ni-init and dnsmasq
    assert usage.pids_limit == 64
    assert usage.cpu_ns > 0

    tasks.update_limits(client, cid, oci.Limits.from_cpus(MEMORY * 2, 1.0, 100))
    path = f"{NAMESPACE}/{cid}"
    assert int((CG / "memory" / path / "memory.limit_in_bytes").read_text()) == MEMORY * 2
    assert (CG / "pids" / path / "pids.max").read_text().strip() == "100"
    assert tasks.get_task(client, cid).pid == running.pid


def test_usage_read_from_the_cgroup_is_containerds(client: Client, running: Running) -> None:
    from runner import nitask
    from runner.drivers import cgroupfs

    cid = running.task.container_id
    _settled(client, cid)
    theirs = metrics.decode(tasks.task_metrics(client, cid))
    ours = cgroupfs.usage(nitask.cgroups_path(NAMESPACE, cid))
    assert ours is not None
    assert (ours.cgroup, ours.memory_limit, ours.pids_limit, ours.pids, ours.oom_kills) == (
        theirs.cgroup, theirs.memory_limit, theirs.pids_limit, theirs.pids, theirs.oom_kills)
    assert abs(ours.memory_bytes - theirs.memory_bytes) < 4 << 20  # read moments apart
    assert theirs.cpu_ns <= ours.cpu_ns < theirs.cpu_ns + 10**9
    assert ours.memory_failcnt == theirs.memory_failcnt and ours.cpu_periods >= theirs.cpu_periods
    assert nitask.usage(client, [cid, "ni-none"]).keys() == {cid}  # one absent: not guessed
    assert cgroupfs.usage(nitask.cgroups_path(NAMESPACE, "ni-none")) is None


def test_exec_runs_inside_the_netns(client: Client, running: Running, tmp_path: Path) -> None:
    res = tasks.exec_in(client, running.task.container_id, ["ip", "-4", "-o", "addr"],
                        str(tmp_path / "ip.out"))
    assert res.exit_status == 0
    assert "10.77.0.1/24" in res.output


def test_exit_event_is_delivered(client: Client, running: Running) -> None:
    cid = running.task.container_id
    sub = tasks.TaskExits(client)
    got: list[tasks.TaskExit] = []

    def collect() -> None:
        for ev in sub:
            if ev.container_id == cid and not ev.exec_id:
                got.append(ev)
                return

    th = threading.Thread(target=collect, daemon=True)
    th.start()
    time.sleep(0.3)  # the subscription must be in place before the kill
    tasks.kill_task(client, cid, tasks.SIGKILL)
    th.join(timeout=10)
    sub.cancel()
    assert got and got[0].pid == running.pid and got[0].exit_status == 137


def test_remove_leaves_nothing_behind(
    containerd: PrivateContainerd, client: Client, running: Running
) -> None:
    from runner import nitask

    cid = running.task.container_id
    nitask.remove(client, running.task.name)
    assert cid not in ctr(containerd, "containers", "ls", "-q").split()
    assert cid not in ctr(containerd, "tasks", "ls")
    assert cid not in ctr(containerd, "snapshots", "ls")
    assert ctr(containerd, "leases", "ls", "-q").split() == []
    for ctl in ("memory", "cpu", "pids"):
        assert not (CG / ctl / NAMESPACE / cid).exists()
    nitask.remove(client, running.task.name)  # removing again is fine


def test_an_exited_task_is_removed_too(
    containerd: PrivateContainerd, client: Client, running: Running
) -> None:
    from runner import nitask

    cid = running.task.container_id
    tasks.kill_task(client, cid, tasks.SIGKILL)
    tasks.wait_task(client, cid, timeout=10)  # stopped, not deleted: the signal finds none
    nitask.remove(client, running.task.name)
    assert cid not in ctr(containerd, "tasks", "ls")
    assert cid not in ctr(containerd, "containers", "ls", "-q").split()


def test_init_is_signalled_directly_only_while_it_is_the_tasks(
    containerd: PrivateContainerd, client: Client, running: Running
) -> None:
    from runner import nitask

    cid = running.task.container_id
    cgroup = nitask.cgroups_path(NAMESPACE, cid)
    # another cgroup (a reused PID would be in one): not signalled, still running
    assert not tasks.signal_init(running.pid, nitask.cgroups_path(NAMESPACE, cid + "x"),
                                 tasks.SIGTERM)
    assert not tasks.signal_init(os.getpid(), cgroup, tasks.SIGTERM)  # not the task's
    assert not tasks.signal_init(0, cgroup, tasks.SIGTERM)
    assert tasks.get_task(client, cid).status == "running"
    # its own: ni-init stops its services and exits, containerd sees it stop
    assert tasks.signal_init(running.pid, cgroup, tasks.SIGTERM)
    assert tasks.wait_task(client, cid, timeout=10) == 0
    assert not tasks.signal_init(running.pid, cgroup, tasks.SIGTERM)  # gone
    # what is left (the stopped task, its container) goes as usual
    tasks.remove_container(client, cid, running.pid, cgroup)
    assert cid not in ctr(containerd, "tasks", "ls")
    assert cid not in ctr(containerd, "containers", "ls", "-q").split()


def test_clear_errors(
    client: Client, ni_image: ImageInfo, running: Running, tmp_path: Path
) -> None:
    with pytest.raises(Unavailable, match="not reachable at /run/nope.sock"):
        Client("/run/nope.sock")
    sock = tmp_path / "dead.sock"
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock))  # a socket nobody answers on
    with pytest.raises(Unavailable, match="not reachable"):
        Client(str(sock), connect_timeout=0.5)
    s.close()

    other = NITask(**{**running.task.__dict__, "name": f"u{RUN_ID}"})
    from runner import nitask

    with pytest.raises(NotFound, match="image nirunner/missing:1 is not in containerd"):
        nitask.run(client, "nirunner/missing:1", other)
    with pytest.raises(AlreadyExists, match=f"container {running.task.container_id} exists"):
        nitask.run(client, ni_image.name, running.task)
    assert tasks.get_task(client, running.task.container_id).status == "running"

    cli = subprocess.run(
        [sys.executable, "-m", "runner.cli.main", "--containerd", "/run/nope.sock", "version"],
        capture_output=True, text=True, timeout=30)
    assert cli.returncode == 1
    assert "nirunner: containerd is not reachable at /run/nope.sock" in cli.stderr
    assert "Traceback" not in cli.stderr


def test_interrupted_blob_write_is_resumed(client: Client) -> None:
    """A write cut off half-way (no commit) continues from containerd's offset."""
    import hashlib
    import io

    from runner.containerd.images import CHUNK, _ingest
    from runner.pb.containerd.services.content.v1 import content_pb2

    blob = os.urandom(3 * CHUNK + 123)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    ref = f"nirunner-import-{digest}"
    first = content_pb2.WriteContentRequest(
        action=content_pb2.WRITE, ref=ref, total=len(blob), expected=digest, offset=0,
        data=blob[:CHUNK])
    with client.lease("test") as lease:
        for _ in client.content.Write(iter([first]), metadata=client.metadata(lease)):
            pass
        st = client.content.Status(content_pb2.StatusRequest(ref=ref),
                                   metadata=client.metadata(lease))
        assert st.status.offset == CHUNK

        class Recording(io.BytesIO):
            seeks: list[int] = []

            def seek(self, pos: int, whence: int = 0) -> int:
                self.seeks.append(pos)
                return super().seek(pos, whence)

        data = Recording(blob)
        _ingest(client, lease, {"digest": digest, "size": len(blob)}, data, {"x.test": "1"})
        assert data.seeks == [CHUNK]  # resumed, not rewritten from the start
        info = client.content.Info(content_pb2.InfoRequest(digest=digest),
                                   metadata=client.metadata()).info
        assert info.size == len(blob) and info.labels["x.test"] == "1"
        client.content.Delete(content_pb2.DeleteContentRequest(digest=digest),
                              metadata=client.metadata())


def _at_once(*calls: Callable[[], object]) -> list[BaseException]:
    """Run the calls in threads that start together; the errors they raised."""
    go = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        go.wait(timeout=10)
        try:
            call()
        except BaseException as e:  # noqa: BLE001 - returned to the test
            errors.append(e)

    threads = [threading.Thread(target=run, args=(x,)) for x in calls]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    return errors


def _exited(client: Client, *runs: Running) -> None:
    for x in runs:
        tasks.kill_task(client, x.task.container_id, tasks.SIGKILL)
        tasks.wait_task(client, x.task.container_id, timeout=10)


def test_the_last_tasks_of_a_shared_shim_are_removed_side_by_side(
    containerd: PrivateContainerd, client: Client, ni_image: ImageInfo,
    netns: Callable[[str], str], tmp_path: Path
) -> None:
    """Four tasks of one shim removed at once. In containerd 1.6 one delete's shim
    Shutdown can find no task left and stop the shim before it answers another delete
    ("ttrpc: closed"), though containerd cleans that task up too. Seen mostly under load
    (CI); the retry itself is unit-tested."""
    for r in range(6):
        with contextlib.ExitStack() as stack:
            runs = [stack.enter_context(_running(client, ni_image.name, netns, tmp_path,
                                                 tag=f"{r}{x}", group=f"ni-shim-t{r}"))
                    for x in "abcd"]
            assert len({ppid(x.pid) for x in runs}) == 1  # one shim serves them all
            _exited(client, *runs)  # their deletes reach the shim together
            errors = _at_once(*(partial(tasks.remove_container, client, x.task.container_id)
                                for x in runs))
            assert errors == [], f"round {r}: {errors}"
            listed = ctr(containerd, "tasks", "ls") + ctr(containerd, "containers", "ls", "-q")
            assert not any(x.task.container_id in listed for x in runs)


def test_a_task_joins_a_shared_shim_as_its_last_task_is_removed(
    containerd: PrivateContainerd, client: Client, ni_image: ImageInfo,
    netns: Callable[[str], str], tmp_path: Path
) -> None:
    """A task started in a group whose only task is being deleted: the shim can stop as
    the new task joins it ("failed to create shim task: ttrpc: closed"). Without the
    retry this test failed in 2 of 3 runs here; the retry is unit-tested as well.
    The task is made once the old shim is gone, and its dnsmasq answers."""
    from runner import nitask

    for r in range(30):
        group = f"ni-shim-j{r}"
        with _running(client, ni_image.name, netns, tmp_path, tag=f"{r}x", group=group) as x:
            _exited(client, x)
            y, _, y_client = _task(netns, tmp_path, tag=f"{r}y", group=group)
            nitask.create(client, ni_image.name, y)
            try:
                errors = _at_once(partial(tasks.remove_container, client, x.task.container_id),
                                  partial(nitask.start, client, y))
                assert errors == [], f"round {r}: {errors}"
                assert _dns(y_client, "probe.nirunner.test") == ["10.77.0.99"]  # it serves
            finally:
                nitask.remove(client, y.name)
