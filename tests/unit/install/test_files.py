"""`nirunner install`: the unit (verified by systemd-analyze), a default config kept once
there, the completions; idempotent; --dry-run writes nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner.install import files
from runner.model.config import load_config
from runner.model.types import SupervisorConfig

NIRUNNER = Path(sys.executable).with_name("nirunner")


def unit_settings(text: str) -> dict[str, list[str]]:
    """`Key=value` lines of a unit, by key (a key may repeat)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            k, _, v = line.partition("=")
            out.setdefault(k, []).append(v)
    return out


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(NIRUNNER), *args], capture_output=True, text=True, timeout=60)


def test_the_unit_says_what_the_service_needs() -> None:
    s = unit_settings(files.unit("/usr/bin/nirunner"))
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["ExecStart"] == ["/usr/bin/nirunner supervise --config /etc/nirunner/"
                              "supervisor.yaml"]
    assert s["Restart"] == ["on-failure"] and s["KillMode"] == ["process"]
    assert s["WatchdogSec"] and s["After"] == ["containerd.service"]
    assert s["Wants"] == ["containerd.service"]
    assert s["CapabilityBoundingSet"] == ["CAP_NET_ADMIN CAP_SYS_ADMIN"]
    # nothing that gives the service a mount namespace: /run/netns must stay shared
    for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
                "ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups",
                "ReadWritePaths", "ReadOnlyPaths", "PrivateMounts", "MountFlags"):
        assert key not in s, key


def test_systemd_analyze_verify_passes(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is missing (the Makefile installs systemd)")
    unit = tmp_path / "nirunner.service"
    unit.write_text(files.unit(files.executable(None)))
    res = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True,
                         text=True, timeout=60)
    # verify exits 0 on unknown keys too: they only show on stderr
    assert res.returncode == 0 and res.stderr.strip() == "", res.stderr
    unit.write_text(files.unit(files.executable(None)) + "Bogus=1\n")
    res = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True,
                         text=True, timeout=60)
    assert "Bogus" in res.stderr  # the check above can fail


def test_the_default_config_is_valid_and_the_defaults() -> None:
    text = files._data("supervisor.yaml")
    path = Path(files.__file__).with_name("supervisor.yaml")
    assert path.read_text() == text
    assert load_config(str(path)) == SupervisorConfig()


def test_install_dry_run_then_install_then_again(tmp_path: Path) -> None:
    res = run("install", "--root", str(tmp_path), "--dry-run")
    assert res.returncode == 0, res.stderr
    unit = tmp_path / "etc/systemd/system/nirunner.service"
    config = tmp_path / "etc/nirunner/supervisor.yaml"
    bash = tmp_path / "usr/local/share/bash-completion/completions/nirunner"
    zsh = tmp_path / "usr/local/share/zsh/site-functions/_nirunner"
    for f in (unit, config, bash, zsh):
        assert f"would create {f}\n" in res.stdout
    assert "    Type=notify\n" in res.stdout  # the contents are shown
    assert list(tmp_path.iterdir()) == []  # and nothing written

    res = run("install", "--root", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"create {f}" for f in (unit, config, bash, zsh)]
    assert f"ExecStart={NIRUNNER} supervise" in unit.read_text()
    assert bash.read_text() == run("completion", "bash").stdout
    assert zsh.read_text() == run("completion", "zsh").stdout
    assert (unit.stat().st_mode & 0o777) == 0o644

    config.write_text("uplinks: [{name: wan, interface: eth0}]\n")  # the admin's edit
    unit.write_text("old\n")
    res = run("install", "--root", str(tmp_path))
    assert res.stdout.splitlines() == [
        f"update {unit}", f"keep {config} (exists: left as it is)", f"unchanged {bash}",
        f"unchanged {zsh}"]
    assert config.read_text() == "uplinks: [{name: wan, interface: eth0}]\n"
    assert "Type=notify" in unit.read_text()


def test_prefix_points_the_unit_and_the_completions(tmp_path: Path) -> None:
    done = files.install(files.plan(str(tmp_path), "/usr", "b", "z"))
    paths = sorted(str(f.path.relative_to(tmp_path)) for f, _ in done)
    assert paths == ["etc/nirunner/supervisor.yaml", "etc/systemd/system/nirunner.service",
                     "usr/share/bash-completion/completions/nirunner",
                     "usr/share/zsh/vendor-completions/_nirunner"]  # Debian's place
    text = (tmp_path / "etc/systemd/system/nirunner.service").read_text()
    assert "ExecStart=/usr/bin/nirunner supervise" in text


def test_install_needs_root_for_the_real_root(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from runner.cli.main import main

    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert main(["install"]) == 1
    assert "run it as root, or use --root DIR or --dry-run" in capsys.readouterr().err
