"""The lab's podman: its config and command lines (no podman run here)."""

from __future__ import annotations

from pathlib import Path

from runner.lab.podman import NETAVARK_RUN, LabPodman


def test_cni_backend_runs_podman_in_the_lab_netns() -> None:
    pm = LabPodman(Path("/run/x/podman"), "x-pod")
    assert pm.command("ps") == ["nsenter", "--net=/run/netns/x-pod", "podman", "ps"]
    assert 'network_backend = "cni"' in pm.containers_conf()


def test_netavark_backend_gets_its_run_dir_from_the_lab() -> None:
    pm = LabPodman(Path("/run/x/podman"), "x-pod", backend="netavark")
    conf = pm.containers_conf()
    assert 'network_backend = "netavark"' in conf
    assert 'network_config_dir = "/run/x/podman/net.d"' in conf
    cmd = pm.command("network", "ls")
    # a mount namespace of its own, /run/netns still shared with the machine's
    assert cmd[:5] == ["unshare", "--mount", "--propagation", "unchanged", "--"]
    script, dollar0, rest = cmd[7], cmd[8], cmd[9:]
    assert script == f'mount --bind "$0" {NETAVARK_RUN} && exec "$@"'
    assert dollar0 == "/run/x/podman/netavark-run" == str(pm.netavark_run)
    assert rest == ["nsenter", "--net=/run/netns/x-pod", "podman", "network", "ls"]
