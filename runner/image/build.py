"""Build the NI image: a Debian rootfs from mmdebstrap, a static ni-init (and the diagnostic
ni-sysprobe) from gcc, packed into an OCI archive by runner.image.oci, and cached by a hash
of everything that defines it.

Needs root (mmdebstrap --mode=root), mmdebstrap and gcc with a static libc (libc6-dev).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from runner import __version__
from runner.errors import NirunnerError
from runner.image import oci

log = logging.getLogger(__name__)

IMAGE_SOURCE_DIR = Path(__file__).resolve().parents[2] / "images" / "ni"
PACKAGES_FILE = IMAGE_SOURCE_DIR / "packages.txt"
INIT_SOURCE = IMAGE_SOURCE_DIR / "init" / "ni-init.c"
SYSPROBE_SOURCE = IMAGE_SOURCE_DIR / "sysprobe" / "ni-sysprobe.c"
DEFAULT_CACHE_DIR = Path("/var/cache/nirunner/images")
CACHE_ENV = "NIRUNNER_CACHE"

SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
# Essential:yes packages plus ours: no apt (nothing installs packages at run time) and
# the merged-/usr hook, without which apt picks usrmerge and drags in all of perl.
MMDEBSTRAP_OPTIONS = (
    "--mode=root",
    "--format=directory",
    "--variant=essential",
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-include=/usr/share/locale/locale.alias",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/lintian/*",
    "--dpkgopt=path-exclude=/usr/share/bash-completion/*",
)
GCC_OPTIONS = ("-static", "-Os", "-s", "-Wall", "-Wextra")
INIT_DEST = oci.ENTRYPOINT
SYSPROBE_DEST = "/sbin/ni-sysprobe"
# Left over by the build but useless in an image without apt.
TRIM_PATHS = ("var/lib/apt", "var/cache/apt", "var/log/apt", "var/cache/ldconfig/aux-cache")
# Mount points of the NI's config (read-only) and state (writable) bind mounts.
MOUNT_POINTS = ("etc/nirunner", "var/lib/nirunner")
STDERR_TAIL_LINES = 25
TIMEOUTS = {"mmdebstrap": 1800.0, "gcc": 120.0}


class ImageBuildError(NirunnerError):
    """A build step failed; `step` names it and `stderr_tail` holds its last output."""

    def __init__(self, step: str, message: str, stderr_tail: str = "") -> None:
        self.step = step
        self.stderr_tail = stderr_tail
        text = f"image build failed at step {step!r}: {message}"
        if stderr_tail:
            text += "\n--- last output ---\n" + stderr_tail
        super().__init__(text)


@dataclass(frozen=True)
class BuildResult:
    archive: Path
    image_name: str
    version: str
    manifest_digest: str
    cache_key: str
    archive_size: int  # bytes of the OCI archive (what an import reads)
    layer_size: int  # the gzip'd layer inside it
    rootfs_size: int  # uncompressed layer: the unpacked rootfs plus tar headers
    build_seconds: float  # how long the build that made this archive took
    cached: bool  # True when this call found the archive in the cache

    def to_json(self) -> str:
        data = asdict(self)
        data["archive"] = str(self.archive)
        del data["cached"]
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, *, cached: bool) -> BuildResult:
        data = json.loads(text)
        data["archive"] = Path(data["archive"])
        return cls(**data, cached=cached)


# --- inputs ---------------------------------------------------------------------------


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR)


def read_packages(path: Path = PACKAGES_FILE) -> list[str]:
    packages = []
    for line in path.read_text().splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            packages.append(name)
    if not packages:
        raise ImageBuildError("read packages", f"{path} lists no packages")
    return packages


def mmdebstrap_command(packages: Sequence[str], target: Path | str) -> list[str]:
    return ["mmdebstrap", *MMDEBSTRAP_OPTIONS, "--include=" + ",".join(packages),
            SUITE, str(target), *MIRRORS]


def gcc_command(source: Path | str, output: Path | str) -> list[str]:
    return ["gcc", *GCC_OPTIONS, "-o", str(output), str(source)]


def cache_key(packages_file: Path, init_source: Path, version: str,
              sysprobe_source: Path = SYSPROBE_SOURCE) -> str:
    """Hash of everything that decides the image's content.

    Besides the package list, the C sources, the packer and the version, this module
    counts too: it holds the mmdebstrap and gcc options and the rootfs trimming.
    """
    sha = hashlib.sha256()
    parts = [
        packages_file.read_bytes(),
        init_source.read_bytes(),
        sysprobe_source.read_bytes(),
        Path(oci.__file__).read_bytes(),
        Path(__file__).read_bytes(),
        version.encode(),
    ]
    for part in parts:
        sha.update(len(part).to_bytes(8, "big") + part)
    return sha.hexdigest()


# --- steps ----------------------------------------------------------------------------


def _tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _run(step: str, cmd: list[str], log_file: Path) -> None:
    """Run cmd with its output in log_file; raise ImageBuildError on any failure."""
    log.info("%s: %s", step, " ".join(cmd))
    try:
        with log_file.open("wb") as out:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=TIMEOUTS.get(step))
    except FileNotFoundError:
        raise ImageBuildError(step, f"{cmd[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise ImageBuildError(step, f"{cmd[0]} timed out after {TIMEOUTS[step]:.0f}s",
                              _tail(log_file)) from None
    if proc.returncode != 0:
        raise ImageBuildError(step, f"{cmd[0]} exited with status {proc.returncode}",
                              _tail(log_file))


def compile_static(source: Path, output: Path) -> None:
    """A static binary of one C source (ni-init, ni-sysprobe)."""
    try:
        _run("gcc", gcc_command(source, output), output.with_suffix(".gcc.log"))
    except ImageBuildError as err:
        if "cannot find -lc" in err.stderr_tail:
            raise ImageBuildError("gcc", "no static libc (apt-get install libc6-dev)",
                                  err.stderr_tail) from None
        raise


def build_rootfs(packages: Sequence[str], target: Path) -> None:
    if os.geteuid() != 0:
        raise ImageBuildError("mmdebstrap", "building the image needs root (--mode=root)")
    _run("mmdebstrap", mmdebstrap_command(packages, target), target.with_suffix(".mmdebstrap.log"))


def trim_rootfs(rootfs: Path) -> None:
    """Remove build leftovers and host data mmdebstrap copied in; add our mount points."""
    for rel in TRIM_PATHS:
        path = rootfs / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for old in (rootfs / "var/cache/debconf").glob("*-old"):
        old.unlink()
    # mmdebstrap copies the build host's files; the NI gets its own at run time.
    for rel, text in (("etc/hostname", "ni\n"), ("etc/resolv.conf", "")):
        (rootfs / rel).unlink(missing_ok=True)
        (rootfs / rel).write_text(text)
        (rootfs / rel).chmod(0o644)
    for rel in MOUNT_POINTS:
        (rootfs / rel).mkdir(mode=0o755, parents=True, exist_ok=True)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(prefix):
                mounts.append(point)
    return mounts


def _remove_workdir(work: Path) -> None:
    # mmdebstrap bind-mounts /dev, /proc and /sys into the chroot; should one survive a
    # crash, rmtree would walk into the host's. Leave the directory for a human then.
    mounts = _mounts_under(work)
    if mounts:
        log.error("not removing %s: still mounted: %s", work, ", ".join(mounts))
        return
    shutil.rmtree(work, ignore_errors=True)


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise builds sharing a cache dir, so two callers never build the same image."""
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _cached(meta: Path) -> BuildResult | None:
    try:
        result = BuildResult.from_json(meta.read_text(), cached=True)
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if not result.archive.is_file() or result.archive.stat().st_size != result.archive_size:
        return None
    return result


# --- entry point ----------------------------------------------------------------------


def build_image(
    force: bool = False,
    *,
    cache: Path | None = None,
    version: str = __version__,
    packages_file: Path = PACKAGES_FILE,
    init_source: Path = INIT_SOURCE,
    sysprobe_source: Path = SYSPROBE_SOURCE,
) -> BuildResult:
    """Build the NI image archive, or return the cached one unless `force`."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    key = cache_key(packages_file, init_source, version, sysprobe_source)
    stem = f"ni-{version}-{key[:16]}"
    archive, meta = cache / f"{stem}.oci.tar", cache / f"{stem}.json"
    if not force and (hit := _cached(meta)):
        return hit
    with _locked(cache):
        if not force and (hit := _cached(meta)):  # built by whoever held the lock
            return hit
        meta.unlink(missing_ok=True)
        result = _build(cache, archive, key, version, packages_file,
                        (init_source, sysprobe_source))
        tmp = meta.with_suffix(".json.tmp")
        tmp.write_text(result.to_json())
        tmp.replace(meta)  # the metadata appears last: its presence means "complete"
        _prune(cache, keep=stem)
    return result


KEEP_BUILDS = 4  # the newest archives kept: an image roll goes back to the one before


def _prune(cache: Path, keep: str) -> None:
    """Drop the archives of old inputs, keeping `keep` and the next newest ones (other
    checkouts and a roll back may want them; each is ~30 MB)."""
    metas = sorted((p for p in cache.glob("ni-*.json") if not p.name.startswith(keep + ".")),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    for meta in metas[KEEP_BUILDS - 1:]:
        stem = meta.name.removesuffix(".json")
        for path in (meta, cache / f"{stem}.oci.tar"):
            log.info("removing stale %s", path)
            path.unlink(missing_ok=True)


def _build(cache: Path, archive: Path, key: str, version: str, packages_file: Path,
           sources: tuple[Path, Path]) -> BuildResult:
    started = time.monotonic()
    packages = read_packages(packages_file)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
    try:
        init_bin, sysprobe_bin = work / "ni-init", work / "ni-sysprobe"
        compile_static(sources[0], init_bin)  # first: seconds, and fails fast
        compile_static(sources[1], sysprobe_bin)
        rootfs = work / "rootfs"
        build_rootfs(packages, rootfs)
        trim_rootfs(rootfs)
        log.info("packing %s", archive)
        try:
            packed = oci.pack_image(
                rootfs, archive,
                extra_files=[oci.ExtraFile(INIT_DEST, init_bin, mode=0o755),
                             oci.ExtraFile(SYSPROBE_DEST, sysprobe_bin, mode=0o755)],
                version=version,
                labels={"io.nirunner.build-key": key, "io.nirunner.suite": SUITE},
            )
        except (OSError, oci.OciError) as err:
            raise ImageBuildError("pack", str(err)) from err
    finally:
        _remove_workdir(work)
    return BuildResult(
        archive=packed.archive,
        image_name=packed.image_name,
        version=version,
        manifest_digest=packed.manifest_digest,
        cache_key=key,
        archive_size=packed.archive_size,
        layer_size=packed.compressed_size,
        rootfs_size=packed.uncompressed_size,
        build_seconds=round(time.monotonic() - started, 1),
        cached=False,
    )
