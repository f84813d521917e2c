"""An NI's containerd task: its name, labels, spec and lifecycle policy.

The value (NITask) is pure; the lifecycle functions import the containerd
client only when called, so planning code can use the value without gRPC.

Containers are named `ni-<name>` and labelled so that `ctr -n nirunner
containers ls / info` and `tasks ls` read well without nirunner.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runner.containerd import seccomp
from runner.containerd import spec as oci
from runner.model.types import TaskSeccomp
from runner.net import names

if TYPE_CHECKING:
    from runner.containerd.client import Client
    from runner.containerd.metrics import Usage

LABEL_NAME = "io.nirunner.ni.name"
LABEL_TYPE = "io.nirunner.ni.type"
LABEL_UPLINK = "io.nirunner.ni.uplink"
LABEL_GENERATION = "io.nirunner.ni.generation"


@dataclass(frozen=True)
class NITask:
    name: str
    ni_type: str
    uplink: str  # "" for an air-gapped NI
    generation: str  # the plan's restart key: a new one means a new container
    netns_path: str
    config_dir: str
    state_dir: str
    log_path: str
    limits: oci.Limits = field(default_factory=oci.Limits)
    seccomp: TaskSeccomp = TaskSeccomp.ENFORCE  # the supervisor config's taskSeccomp
    shim_group: str = ""  # a shared runc shim's group ("": a shim of its own)

    @property
    def container_id(self) -> str:
        return names.container_id(self.name)

    def labels(self) -> dict[str, str]:
        return {
            LABEL_NAME: self.name,
            LABEL_TYPE: self.ni_type,
            LABEL_UPLINK: self.uplink,
            LABEL_GENERATION: self.generation,
        }

    def spec(self, namespace: str) -> oci.TaskSpec:
        # containerd's own convention (/<namespace>/<id>), so tools find the cgroup
        return oci.TaskSpec(
            container_id=self.container_id,
            netns_path=self.netns_path,
            config_dir=self.config_dir,
            state_dir=self.state_dir,
            cgroups_path=cgroups_path(namespace, self.container_id),
            limits=self.limits,
            hostname=self.container_id,
            seccomp=seccomp.for_task(self.seccomp),
            shim_group=self.shim_group,
        )


def cgroups_path(namespace: str, container_id: str) -> str:
    return f"/{namespace}/{container_id}"


def usage(c: Client, container_ids: Iterable[str]) -> dict[str, Usage]:
    """The usage of these running tasks, by container id: read from their cgroups, and
    from one containerd call for any whose cgroup is not found where we put it."""
    from runner.containerd import metrics, tasks
    from runner.drivers import cgroupfs

    out: dict[str, Usage] = {}
    missing = set()
    for cid in container_ids:
        found = cgroupfs.usage(cgroups_path(c.namespace, cid))
        if found is None:
            missing.add(cid)
        else:
            out[cid] = found
    if missing:
        for cid, data in tasks.all_metrics(c).items():
            if cid in missing:
                with contextlib.suppress(ValueError):  # a type we cannot decode
                    out[cid] = metrics.decode(data)
    return out


def create(c: Client, image: str, t: NITask) -> None:
    """Create the container (not its task)."""
    from runner.containerd import tasks

    tasks.create_container(c, image, t.spec(c.namespace), t.labels())


def start(c: Client, t: NITask) -> int:
    """Start the task of an existing container; returns its host PID."""
    from runner.containerd import tasks

    return tasks.start_task(c, t.container_id, t.log_path)


def run(c: Client, image: str, t: NITask) -> int:
    """Create the container and start its task; on failure nothing is left behind."""
    from runner.containerd import tasks

    create(c, image, t)
    try:
        return start(c, t)
    except BaseException:
        tasks.remove_container(c, t.container_id)
        raise


def remove(c: Client, ni_name: str) -> None:
    from runner.containerd import tasks

    tasks.remove_container(c, names.container_id(ni_name))
