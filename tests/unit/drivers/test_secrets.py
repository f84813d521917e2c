"""Credential files: each unsafe kind is refused at once, naming the rule, not the content."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.drivers.secrets import SecretError, read_secret, stamp

SECRET = b"s3cret-value-Qx9\n"


@pytest.fixture
def sdir(tmp_path: Path) -> Path:
    d = tmp_path / "secrets"
    d.mkdir(mode=0o700)
    return d


def refused(call: Callable[[], object], timeout: float = 5.0) -> str:
    """The SecretError message of `call`, which must come back within `timeout`."""
    out: list[BaseException | object] = []
    t = threading.Thread(target=lambda: out.append(_catch(call)), daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "blocked"
    (result,) = out
    assert isinstance(result, SecretError), result
    assert SECRET.strip().decode() not in str(result)
    return str(result)


def _catch(call: Callable[[], object]) -> BaseException | object:
    try:
        return call()
    except Exception as e:
        return e


def test_a_good_file_is_read(sdir: Path) -> None:
    f = sdir / "a.psk"
    f.write_bytes(SECRET)
    f.chmod(0o600)
    assert read_secret(str(f), str(sdir)) == SECRET
    assert read_secret(str(f), None) == SECRET


def test_a_fifo_is_refused_without_blocking(sdir: Path) -> None:
    f = sdir / "fifo.psk"
    os.mkfifo(f)
    assert "is a FIFO, not a regular file" in refused(lambda: read_secret(str(f), str(sdir)))
    assert stamp(str(f)).size == 0  # lstat only: no open, no block


def test_a_symlink_is_refused_even_inside_the_dir(sdir: Path) -> None:
    target = sdir / "real.psk"
    target.write_bytes(SECRET)
    link = sdir / "link.psk"
    link.symlink_to(target)
    assert "is a symbolic link" in refused(lambda: read_secret(str(link), str(sdir)))
    shadow = sdir / "shadow.psk"
    shadow.symlink_to("/etc/shadow")
    assert "is a symbolic link" in refused(lambda: read_secret(str(shadow), None))


def test_etc_shadow_is_outside_the_secrets_dir(sdir: Path) -> None:
    msg = refused(lambda: read_secret("/etc/shadow", str(sdir)))
    assert msg == f"/etc/shadow: is outside the secrets directory {sdir}"
    dotdot = f"{sdir}/../../../../../../etc/shadow"
    assert "is outside the secrets directory" in refused(lambda: read_secret(dotdot, str(sdir)))


def test_a_directory_link_out_of_the_dir_is_outside(sdir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.psk").write_bytes(SECRET)
    (sdir / "sub").symlink_to(elsewhere)
    msg = refused(lambda: read_secret(str(sdir / "sub" / "x.psk"), str(sdir)))
    assert "is outside the secrets directory" in msg


def test_proc_self_environ_is_refused() -> None:
    assert "is on /proc, a pseudo filesystem" in refused(
        lambda: read_secret("/proc/self/environ", None))
    assert "outside" in refused(lambda: read_secret("/proc/self/environ", "/etc/nirunner"))


def test_a_directory_and_dev_zero_are_refused(sdir: Path) -> None:
    assert "is a directory" in refused(lambda: read_secret(str(sdir), None))
    assert "is a character device" in refused(lambda: read_secret("/dev/zero", None))


def test_a_10_mib_file_is_refused_unread(sdir: Path) -> None:
    big = sdir / "big.psk"
    with open(big, "wb") as f:
        f.truncate(10 << 20)
    msg = refused(lambda: read_secret(str(big), str(sdir)))
    assert msg == f"{big}: is larger than 65536 bytes ({10 << 20} bytes)"


def test_writable_by_others_or_owned_by_another_user(sdir: Path) -> None:
    f = sdir / "a.psk"
    f.write_bytes(SECRET)
    f.chmod(0o620)
    assert "is writable by group or others (mode 0620)" in refused(
        lambda: read_secret(str(f), str(sdir)))
    f.chmod(0o602)
    assert "mode 0602" in refused(lambda: read_secret(str(f), str(sdir)))
    if os.geteuid() == 0:  # only root can give a file away
        f.chmod(0o600)
        os.chown(f, 65534, 65534)
        assert "is owned by uid 65534; it must be owned by root" in refused(
            lambda: read_secret(str(f), str(sdir)))


def test_relative_and_missing(sdir: Path) -> None:
    assert "must be an absolute path" in refused(lambda: read_secret("a.psk", None))
    missing = sdir / "missing.psk"
    assert refused(lambda: read_secret(str(missing), str(sdir))) == (
        f"{missing}: No such file or directory")
    assert "No such file" in refused(lambda: stamp(str(missing)))


def test_stamp_changes_with_the_file(sdir: Path) -> None:
    f = sdir / "a.psk"
    f.write_bytes(SECRET)
    first = stamp(str(f))
    assert stamp(str(f)) == first
    os.utime(f, ns=(first.mtime_ns + 10**9, first.mtime_ns + 10**9))
    assert stamp(str(f)) != first
    f.unlink()
    f.write_bytes(b"other")
    assert stamp(str(f)).size == 5
