"""The integration lab: a private containerd, the NI image, named network namespaces.

Everything is created under names owned by this test run and removed by name
afterwards; the machine's own network namespace and containerd are not touched.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runner.containerd.client import Client
from runner.containerd.images import ImageInfo, import_archive
from runner.lab.containerd import PrivateContainerd

RUN_ID = uuid.uuid4().hex[:6]
# runc keeps task state machine-wide per containerd namespace: one of our own
NAMESPACE = f"nirunner-test-{RUN_ID}"


@pytest.fixture(scope="session", autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("integration tests need root (network namespaces, containerd, runc)")


@pytest.fixture(scope="session")
def containerd() -> Iterator[PrivateContainerd]:
    daemon = PrivateContainerd(Path(f"/run/nirunner-test-{RUN_ID}"), (NAMESPACE,))
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def client(containerd: PrivateContainerd) -> Iterator[Client]:
    with Client(containerd.address, NAMESPACE) as c:
        yield c


@pytest.fixture(scope="session")
def image_archive() -> Path:
    from runner.image.build import build_image

    return Path(build_image().archive)


@pytest.fixture(scope="session")
def ni_image(client: Client, image_archive: Path) -> ImageInfo:
    return import_archive(client, str(image_archive))


def ctr(containerd: PrivateContainerd, *args: str) -> str:
    """Run containerd's own CLI against the private daemon (to check what users see)."""
    out = subprocess.run(
        ["ctr", "--address", containerd.address, "-n", NAMESPACE, *args],
        check=True, capture_output=True, text=True, timeout=30,
    )
    return out.stdout


@pytest.fixture
def netns() -> Iterator[Callable[[str], str]]:
    """Factory of named network namespaces (`nrt<run>-<name>`), deleted afterwards."""
    made: list[str] = []

    def make(name: str) -> str:
        full = f"nrt{RUN_ID}-{name}"
        subprocess.run(["ip", "netns", "add", full], check=True)
        made.append(full)
        return full

    yield make
    for name in reversed(made):
        subprocess.run(["ip", "netns", "del", name], check=False)
