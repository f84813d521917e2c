"""The lab itself: a lab kept by one process is removed completely by another.

`python -m runner.lab.demo --keep` exits with its supervisor, servers, containerd
and NI tasks running; `--clean` runs later in a new process. Here a child process
builds a lab with an NI and exits; a new Lab object of the same prefix must stop
everything it started and remove its namespaces, files, runc state and cgroups.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from runner.image.build import build_image
from runner.lab import pidfiles
from runner.lab.topology import Lab, sh
from tests.integration.conftest import RUN_ID

PREFIX = f"nrk{RUN_ID}"
NI = f"k-{RUN_ID}"

KEEP = textwrap.dedent(f"""
    import sys
    from runner.lab.topology import INET_IP, Lab
    lab = Lab({PREFIX!r}, image_archive=sys.argv[1])
    lab.build()
    lab.start_dns({{"www.example.test": INET_IP}})
    lab.serve(lab.inet, "tcp", 7000, "inet")
    lab.start_containerd()
    lab.write_config(lab.image)
    lab.start_supervisor()
    (lab.base / "ni.yaml").write_text(sys.argv[2])
    lab.cli("apply", "-f", str(lab.base / "ni.yaml"))
    print(lab.cli("status", "--json").stdout)
""")


def _ours() -> list[str]:
    out = sh("ip", "netns", "list").stdout.split()
    return sorted(n for n in out if n.startswith(PREFIX) or n == f"nr-{NI}")


def test_a_kept_lab_is_cleaned_by_a_new_lab_object() -> None:
    manifest = (f"apiVersion: nirunner/v1\nkind: NetworkInstance\nmetadata: {{name: {NI}}}\n"
                "spec: {type: local, uplink: eth0, subnet: 10.1.0.0/24}\n")
    try:
        res = subprocess.run([sys.executable, "-c", KEEP, str(build_image().archive), manifest],
                             capture_output=True, text=True, timeout=240)
        assert res.returncode == 0, res.stderr
        (st,) = json.loads(res.stdout)
        task_pid = st["task"]["pid"]
        assert st["state"] in ("running", "pending") and task_pid
        base = Path("/run", PREFIX)
        # what the exited process left running: all recorded, with the task below them
        recs = pidfiles.records(base / "pids") + pidfiles.records(base / "containerd")
        names = sorted(r.name.split("-")[0] if r.name.startswith(PREFIX) else r.name
                       for r in recs)
        assert names == ["containerd", PREFIX, PREFIX, "supervisor"], names  # + DNS, TCP
        task = pidfiles.Recorded("task", task_pid, pidfiles.start_time(task_pid) or -1)
        assert pidfiles.alive(task)
        assert Path("/run/containerd/runc", PREFIX, f"ni-{NI}").is_dir()  # the lab's own
        assert f"nr-{NI}" in _ours() and f"{PREFIX}-dev" in _ours()
    finally:
        Lab(PREFIX).teardown()

    assert [r for r in recs if pidfiles.alive(r)] == []
    assert not pidfiles.alive(task)
    assert _ours() == []
    assert not base.exists()
    assert not Path("/run/containerd/runc", PREFIX).exists()
    assert [d for d in Path("/sys/fs/cgroup").iterdir() if (d / PREFIX).exists()] == []
