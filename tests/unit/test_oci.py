"""runner.image.oci: packing a small fake rootfs and reading the archive back."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import socket
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

from runner import __version__
from runner.image import oci

INIT_BYTES = b"\x7fELF fake init"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    for d in ("usr/bin", "usr/sbin", "etc/empty.d", "var/lib/misc", "dev", "tmp", "a", "a.b"):
        (root / d).mkdir(parents=True)
    (root / "usr/bin/tool").write_bytes(b"#!/bin/sh\necho hi\n")
    (root / "usr/bin/tool").chmod(0o755)
    (root / "usr/bin/su").write_bytes(b"setuid")
    (root / "usr/bin/su").chmod(0o4755)
    (root / "etc/hostname").write_text("ni\n")
    (root / "etc/shadow").write_text("root:*:1::::::\n")
    (root / "etc/shadow").chmod(0o640)
    os.link(root / "usr/bin/tool", root / "usr/bin/tool-alias")
    (root / "sbin").symlink_to("usr/sbin")  # merged /usr
    (root / "bin").symlink_to("usr/bin")
    (root / "etc/localtime").symlink_to("/usr/share/zoneinfo/UTC")  # dangling is fine
    (root / "a/file").write_text("a")
    (root / "a.b/file").write_text("ab")
    (root / "tmp/leftover").write_text("build junk")
    (root / "dev/null-ish").write_text("not a device")
    (root / "tmp").chmod(0o1777)
    os.mkfifo(root / "var/lib/misc/fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "var/lib/misc/sock"))
    sock.close()
    return root


@pytest.fixture
def packed(rootfs: Path, tmp_path: Path) -> oci.PackResult:
    return oci.pack_image(
        rootfs,
        tmp_path / "out" / "ni.oci.tar",
        extra_files=[oci.ExtraFile("/sbin/ni-init", INIT_BYTES, mode=0o755)],
        labels={"io.nirunner.test": "yes"},
        machine="x86_64",
    )


def archive_files(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def layer_members(layer_gz: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer_gz))) as tar:
        return tar.getmembers()


def load(files: dict[str, bytes], digest: str) -> Any:
    return json.loads(files["blobs/sha256/" + digest.removeprefix("sha256:")])


def test_archive_layout_index_manifest_config(packed: oci.PackResult) -> None:
    files = archive_files(packed.archive)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    assert len([n for n in files if n.startswith("blobs/sha256/")]) == 3

    index = json.loads(files["index.json"])
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == oci.MEDIA_INDEX
    [desc] = index["manifests"]
    assert desc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert desc["annotations"] == {
        "org.opencontainers.image.ref.name": __version__,
        "io.containerd.image.name": f"nirunner/ni:{__version__}",
    }
    assert desc["platform"] == {"architecture": "amd64", "os": "linux"}
    assert desc["digest"] == packed.manifest_digest
    assert packed.image_name == f"nirunner/ni:{__version__}"

    manifest = load(files, desc["digest"])
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == oci.MEDIA_MANIFEST
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"

    config = load(files, manifest["config"]["digest"])
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    assert config["config"]["Entrypoint"] == ["/sbin/ni-init"]
    assert config["config"]["Labels"] == {
        "org.opencontainers.image.version": __version__, "io.nirunner.test": "yes"}
    assert config["rootfs"] == {"type": "layers", "diff_ids": [packed.layers[0].diff_id]}


def test_digests_and_sizes_match_blob_contents(packed: oci.PackResult) -> None:
    files = archive_files(packed.archive)
    index = json.loads(files["index.json"])
    descriptors = [index["manifests"][0]]
    manifest = load(files, descriptors[0]["digest"])
    descriptors += [manifest["config"], *manifest["layers"]]
    for desc in descriptors:
        blob = files["blobs/sha256/" + desc["digest"].removeprefix("sha256:")]
        assert sha(blob) == desc["digest"]
        assert len(blob) == desc["size"]

    layer_blob = files["blobs/sha256/" + manifest["layers"][0]["digest"][7:]]
    raw = gzip.decompress(layer_blob)
    [info] = packed.layers
    assert info.digest == sha(layer_blob) and info.size == len(layer_blob)
    assert info.diff_id == sha(raw) and info.uncompressed_size == len(raw)
    assert load(files, manifest["config"]["digest"])["rootfs"]["diff_ids"] == [sha(raw)]
    assert packed.config_digest == manifest["config"]["digest"]
    assert packed.manifest_size == descriptors[0]["size"]
    assert packed.archive_size == packed.archive.stat().st_size
    assert packed.compressed_size == len(layer_blob)
    assert packed.uncompressed_size == len(raw)


def layer_of(packed: oci.PackResult) -> dict[str, tarfile.TarInfo]:
    files = archive_files(packed.archive)
    return {m.name: m for m in layer_members(files["blobs/sha256/" + packed.layers[0].digest[7:]])}


def test_layer_entries_sorted_parents_first(packed: oci.PackResult) -> None:
    files = archive_files(packed.archive)
    names = [m.name for m in layer_members(files["blobs/sha256/" + packed.layers[0].digest[7:]])]
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert len(names) == len(set(names))
    assert names.index("a") < names.index("a/file") < names.index("a.b")
    seen: set[str] = set()
    for name in names:
        parent = name.rpartition("/")[0]
        assert not parent or parent in seen, f"{name} before its parent"
        seen.add(name)


def test_layer_preserves_modes_owners_and_links(packed: oci.PackResult, rootfs: Path) -> None:
    entries = layer_of(packed)
    tool = entries["usr/bin/tool"]
    assert tool.isfile() and tool.mode == 0o755 and tool.size == len(b"#!/bin/sh\necho hi\n")
    assert entries["usr/bin/su"].mode == 0o4755
    assert entries["etc/shadow"].mode == 0o640
    assert entries["etc/hostname"].mode == 0o644
    alias = entries["usr/bin/tool-alias"]
    assert alias.islnk() and alias.linkname == "usr/bin/tool"
    assert entries["sbin"].issym() and entries["sbin"].linkname == "usr/sbin"
    assert entries["etc/localtime"].issym()
    assert entries["etc/localtime"].linkname == "/usr/share/zoneinfo/UTC"
    assert entries["etc/empty.d"].isdir()
    uid, gid = os.getuid(), os.getgid()
    for name in ("usr/bin/tool", "etc/shadow", "etc/empty.d", "sbin"):
        assert (entries[name].uid, entries[name].gid) == (uid, gid)
    for member in entries.values():
        assert member.mtime == 0
        assert member.uname == "" and member.gname == ""


def test_layer_skips_special_files_and_empties_runtime_dirs(packed: oci.PackResult) -> None:
    entries = layer_of(packed)
    assert "var/lib/misc/fifo" not in entries and "var/lib/misc/sock" not in entries
    assert entries["var/lib/misc"].isdir()
    for d in ("proc", "sys", "dev", "run", "tmp"):
        assert entries[d].isdir(), d
        assert not [n for n in entries if n.startswith(d + "/")], d
    assert entries["tmp"].mode == 0o1777  # kept from the rootfs
    assert entries["proc"].mode == 0o555 and entries["proc"].uid == 0  # created


def test_extra_file_follows_symlinked_parent(packed: oci.PackResult) -> None:
    entries = layer_of(packed)
    init = entries["usr/sbin/ni-init"]
    assert init.isfile() and init.mode == 0o755 and (init.uid, init.gid) == (0, 0)
    assert "sbin/ni-init" not in entries
    files = archive_files(packed.archive)
    with tarfile.open(fileobj=io.BytesIO(
            gzip.decompress(files["blobs/sha256/" + packed.layers[0].digest[7:]]))) as tar:
        assert tar.extractfile("usr/sbin/ni-init").read() == INIT_BYTES  # type: ignore[union-attr]


def test_extra_file_from_path_creates_missing_parents(rootfs: Path, tmp_path: Path) -> None:
    src = tmp_path / "payload"
    src.write_bytes(b"payload")
    entries = {e.info.name: e for e in oci.collect_entries(
        rootfs, [oci.ExtraFile("/opt/nirunner/payload", src, mode=0o600)])}
    assert entries["opt"].info.isdir() and entries["opt/nirunner"].info.isdir()
    assert entries["opt/nirunner/payload"].info.mode == 0o600
    assert entries["opt/nirunner/payload"].info.size == 7


@pytest.mark.parametrize("dest", ["relative/path", "/", "/etc/empty.d", "/etc/hostname/x"])
def test_bad_extra_destinations_rejected(rootfs: Path, dest: str) -> None:
    with pytest.raises(oci.OciError):
        oci.collect_entries(rootfs, [oci.ExtraFile(dest, b"x")])


def test_packing_is_deterministic(rootfs: Path, tmp_path: Path, packed: oci.PackResult) -> None:
    again = oci.pack_image(
        rootfs,
        tmp_path / "again.tar",
        extra_files=[oci.ExtraFile("/sbin/ni-init", INIT_BYTES, mode=0o755)],
        labels={"io.nirunner.test": "yes"},
        machine="x86_64",
    )
    assert again.archive.read_bytes() == packed.archive.read_bytes()
    assert again.manifest_digest == packed.manifest_digest
    # no temp files left next to the archives
    assert sorted(p.name for p in packed.archive.parent.iterdir()) == ["ni.oci.tar"]


def test_mtime_change_does_not_change_digests(rootfs: Path, tmp_path: Path,
                                              packed: oci.PackResult) -> None:
    os.utime(rootfs / "usr/bin/tool", (1, 1))
    again = oci.pack_image(
        rootfs, tmp_path / "again.tar",
        extra_files=[oci.ExtraFile("/sbin/ni-init", INIT_BYTES, mode=0o755)],
        labels={"io.nirunner.test": "yes"}, machine="x86_64")
    assert again.layers == packed.layers


def test_goarch_mapping() -> None:
    assert oci.goarch("x86_64") == ("amd64", None)
    assert oci.goarch("aarch64") == ("arm64", None)
    assert oci.goarch("armv7l") == ("arm", "v7")
    with pytest.raises(oci.OciError):
        oci.goarch("vax")


def test_arm_variant_in_platform(rootfs: Path, tmp_path: Path) -> None:
    res = oci.pack_image(rootfs, tmp_path / "arm.tar", machine="armv7l")
    with oci.OciArchive(res.archive) as archive:
        assert archive.manifest_descriptor["platform"] == {
            "architecture": "arm", "os": "linux", "variant": "v7"}
        assert archive.config["architecture"] == "arm" and archive.config["variant"] == "v7"


def test_reader_exposes_index_manifest_config_and_blobs(packed: oci.PackResult) -> None:
    files = archive_files(packed.archive)
    with oci.OciArchive(packed.archive) as archive:
        assert archive.index == json.loads(files["index.json"])
        assert archive.image_name == f"nirunner/ni:{__version__}"
        assert archive.manifest_descriptor["digest"] == packed.manifest_digest
        assert archive.config["config"]["Entrypoint"] == ["/sbin/ni-init"]
        assert [layer["digest"] for layer in archive.layers] == [packed.layers[0].digest]

        blobs = archive.blobs()
        assert [b.descriptor["mediaType"] for b in blobs] == [
            oci.MEDIA_LAYER_GZIP, oci.MEDIA_CONFIG, oci.MEDIA_MANIFEST]
        for descriptor, open_blob in blobs:  # plain (descriptor, opener) tuples
            with open_blob() as f:
                chunks = iter(functools.partial(f.read, 4096), b"")
                data = b"".join(chunks)
            assert sha(data) == descriptor["digest"] and len(data) == descriptor["size"]
        # streams can be interleaved: each reads its own blob
        a, b = blobs[0].open(), blobs[1].open()
        first = a.read(10)
        assert b.read() == archive.read_blob(blobs[1].descriptor)
        assert first + a.read() == archive.read_blob(blobs[0].descriptor)
        archive.verify()


def test_reader_detects_corrupt_blob(packed: oci.PackResult, tmp_path: Path) -> None:
    files = archive_files(packed.archive)
    layer_name = "blobs/sha256/" + packed.layers[0].digest[7:]
    corrupt = tmp_path / "corrupt.tar"
    with tarfile.open(corrupt, "w") as tar:
        for name, data in files.items():
            if name == layer_name:
                data = data[:-1] + bytes([data[-1] ^ 1])
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with oci.OciArchive(corrupt) as archive, pytest.raises(oci.OciError, match="does not match"):
        archive.verify()


def test_reader_rejects_non_oci_tar(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.tar"
    with tarfile.open(bogus, "w") as tar:
        info = tarfile.TarInfo("hello")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(oci.OciError, match="missing oci-layout"):
        oci.OciArchive(bogus)


def test_reader_rejects_bad_digest(packed: oci.PackResult) -> None:
    with oci.OciArchive(packed.archive) as archive, pytest.raises(oci.OciError):
        archive.open_blob("sha256:../../etc/passwd")


def test_directory_modes_kept(tmp_path: Path) -> None:
    """Directory permissions of the rootfs itself survive (e.g. a 0700 /root)."""
    root = tmp_path / "r"
    (root / "root").mkdir(parents=True)
    (root / "root").chmod(0o700)
    entries = {e.info.name: e.info for e in oci.collect_entries(root)}
    assert stat.S_IMODE(entries["root"].mode) == 0o700
    assert set(entries) == {"root", "dev", "proc", "sys", "run", "tmp"}
