"""Images: import an OCI image archive through containerd's gRPC services.

Import = content ingest of every blob (resumable, existing blobs skipped), GC
labels that tie manifest -> config/layers -> snapshot, unpack of every layer
into the snapshotter (snapshots + diff services), then the image record. All
of it happens under a lease, so containerd's GC collects nothing half-way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import grpc
from google.protobuf import field_mask_pb2

from runner.containerd.client import Client
from runner.containerd.errors import AlreadyExists, ContainerdError, NotFound, from_rpc
from runner.image.oci import OciArchive
from runner.pb.containerd.services.content.v1 import content_pb2
from runner.pb.containerd.services.diff.v1 import diff_pb2
from runner.pb.containerd.services.images.v1 import images_pb2
from runner.pb.containerd.services.snapshots.v1 import snapshots_pb2
from runner.pb.containerd.types import descriptor_pb2

CHUNK = 1 << 20


@dataclass(frozen=True)
class ImageInfo:
    name: str
    manifest_digest: str
    config_digest: str
    layers: tuple[str, ...]
    diff_ids: tuple[str, ...]
    chain_id: str
    size: int  # bytes of manifest, config and (compressed) layers


def chain_ids(diff_ids: list[str] | tuple[str, ...]) -> list[str]:
    """OCI chain ids: the identity of each layer stack, as the snapshotter names them."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            h = hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest()
            out.append(f"sha256:{h}")
    return out


def _content_exists(c: Client, digest: str) -> bool:
    try:
        c.call(f"stat content {digest}", c.content.Info, content_pb2.InfoRequest(digest=digest))
        return True
    except NotFound:
        return False


def _ingest(c: Client, lease: str, desc: dict[str, Any], data: IO[bytes],
            labels: dict[str, str]) -> None:
    """Write one blob into the content store, resuming a partial earlier write."""
    digest, size = desc["digest"], int(desc["size"])
    if _content_exists(c, digest):
        _set_labels(c, digest, labels)
        return
    ref = f"nirunner-import-{digest}"
    offset = 0
    try:
        st = c.call(f"status of upload {ref}", c.content.Status,
                    content_pb2.StatusRequest(ref=ref), lease=lease)
        offset = int(st.status.offset) if st.status.expected in ("", digest) else 0
    except NotFound:
        pass
    data.seek(offset)

    def requests() -> Iterator[content_pb2.WriteContentRequest]:
        pos = offset
        while chunk := data.read(CHUNK):
            yield content_pb2.WriteContentRequest(
                action=content_pb2.WRITE, ref=ref, total=size, expected=digest,
                offset=pos, data=chunk)
            pos += len(chunk)
        yield content_pb2.WriteContentRequest(
            action=content_pb2.COMMIT, ref=ref, total=size, expected=digest,
            offset=pos, labels=labels)

    try:
        for _ in c.content.Write(requests(), metadata=c.metadata(lease), timeout=600):
            pass
    except grpc.RpcError as e:  # AlreadyExists: a concurrent import committed it first
        err = from_rpc(f"write blob {digest}", e, c.address)
        if not isinstance(err, AlreadyExists):
            raise err from None
        _set_labels(c, digest, labels)


def _set_labels(c: Client, digest: str, labels: dict[str, str]) -> None:
    if not labels:
        return
    info = content_pb2.Info(digest=digest, labels=labels)
    mask = field_mask_pb2.FieldMask(paths=[f"labels.{k}" for k in sorted(labels)])
    c.call(f"label content {digest}", c.content.Update,
           content_pb2.UpdateRequest(info=info, update_mask=mask))


def _unpack(c: Client, lease: str, layers: list[dict[str, Any]], diff_ids: list[str]) -> str:
    """Apply each layer on its parent snapshot; returns the top chain id."""
    parent = ""
    for layer, diff_id, chain in zip(layers, diff_ids, chain_ids(diff_ids), strict=True):
        try:
            c.call(f"stat snapshot {chain}", c.snapshots.Stat,
                   snapshots_pb2.StatSnapshotRequest(snapshotter=c.snapshotter, key=chain))
            parent = chain
            continue
        except NotFound:
            pass
        key = f"nirunner-extract-{chain}"
        with contextlib.suppress(NotFound):
            c.call(f"remove stale snapshot {key}", c.snapshots.Remove,
                   snapshots_pb2.RemoveSnapshotRequest(snapshotter=c.snapshotter, key=key))
        prep = c.call(
            f"prepare snapshot for layer {layer['digest']}", c.snapshots.Prepare,
            snapshots_pb2.PrepareSnapshotRequest(snapshotter=c.snapshotter, key=key, parent=parent),
            lease=lease)
        desc = descriptor_pb2.Descriptor(
            media_type=layer["mediaType"], digest=layer["digest"], size=int(layer["size"]))
        applied = c.call(f"apply layer {layer['digest']}", c.diff.Apply,
                         diff_pb2.ApplyRequest(diff=desc, mounts=prep.mounts),
                         lease=lease, timeout=600)
        if applied.applied.digest != diff_id:
            raise ContainerdError(
                f"layer {layer['digest']} unpacked to {applied.applied.digest}, "
                f"but the image config says {diff_id}")
        try:
            c.call(f"commit snapshot {chain}", c.snapshots.Commit,
                   snapshots_pb2.CommitSnapshotRequest(
                       snapshotter=c.snapshotter, name=chain, key=key), lease=lease)
        except AlreadyExists:
            with contextlib.suppress(NotFound):
                c.call(f"remove snapshot {key}", c.snapshots.Remove,
                       snapshots_pb2.RemoveSnapshotRequest(snapshotter=c.snapshotter, key=key))
        parent = chain
    return parent


def import_archive(c: Client, path: str, name: str | None = None) -> ImageInfo:
    """Import an OCI image archive and unpack it; returns the image as containerd has it."""
    try:
        ar = OciArchive(Path(path))
    except (OSError, tarfile.TarError, ValueError, KeyError) as e:
        raise ContainerdError(f"cannot read image archive {path}: {e}") from None
    with ar:
        manifest_desc, manifest, config = ar.manifest_descriptor, ar.manifest, ar.config
        name = name or ar.image_name
        if not name:
            raise ContainerdError(f"image archive {path} names no image; give a name")
        config_desc, layers = manifest["config"], ar.layers
        diff_ids = list(config["rootfs"]["diff_ids"])
        if len(diff_ids) != len(layers):
            raise ContainerdError(f"image {name}: {len(layers)} layers but "
                                  f"{len(diff_ids)} diff_ids")
        top = chain_ids(diff_ids)[-1]
        refs = {"containerd.io/gc.ref.content.config": config_desc["digest"]}
        refs.update({f"containerd.io/gc.ref.content.l.{i}": layer["digest"]
                     for i, layer in enumerate(layers)})
        labels = {  # GC labels: manifest -> config, layers; config -> unpacked snapshot
            manifest_desc["digest"]: refs,
            config_desc["digest"]: {f"containerd.io/gc.ref.snapshot.{c.snapshotter}": top},
            **{layer["digest"]: {"containerd.io/uncompressed": diff_id}
               for layer, diff_id in zip(layers, diff_ids, strict=True)},
        }
        with c.lease("import") as lease:
            for blob in ar.blobs():  # children first, so every reference exists
                with blob.open() as f:
                    _ingest(c, lease, blob.descriptor, f, labels[blob.descriptor["digest"]])
            _unpack(c, lease, layers, diff_ids)
            _put_image(c, name, manifest_desc)
    size = int(manifest_desc["size"]) + int(config_desc["size"]) + sum(
        int(x["size"]) for x in layers)
    return ImageInfo(name, manifest_desc["digest"], config_desc["digest"],
                     tuple(x["digest"] for x in layers), tuple(diff_ids), top, size)


def _put_image(c: Client, name: str, manifest_desc: dict[str, Any]) -> None:
    target = descriptor_pb2.Descriptor(
        media_type=manifest_desc["mediaType"], digest=manifest_desc["digest"],
        size=int(manifest_desc["size"]))
    image = images_pb2.Image(name=name, target=target)
    try:
        c.call(f"create image {name}", c.images.Create, images_pb2.CreateImageRequest(image=image))
    except AlreadyExists:
        c.call(f"update image {name}", c.images.Update, images_pb2.UpdateImageRequest(image=image))


def _read_content(c: Client, digest: str) -> bytes:
    try:
        stream = c.content.Read(content_pb2.ReadContentRequest(digest=digest),
                                metadata=c.metadata(), timeout=c.timeout)
        return b"".join(chunk.data for chunk in stream)
    except grpc.RpcError as e:
        raise from_rpc(f"read content {digest}", e, c.address) from None


def resolve_image(c: Client, name: str) -> ImageInfo:
    """Look an image up by name; NotFound with a hint when it was never imported."""
    try:
        img = c.call(f"get image {name}", c.images.Get, images_pb2.GetImageRequest(name=name))
    except NotFound:
        raise NotFound(
            f"image {name} is not in containerd namespace {c.namespace!r}; "
            f"run `nirunner image build` or `nirunner image import FILE` first") from None
    target = img.image.target
    manifest = json.loads(_read_content(c, target.digest))
    config = json.loads(_read_content(c, manifest["config"]["digest"]))
    diff_ids = tuple(config["rootfs"]["diff_ids"])
    layers = tuple(x["digest"] for x in manifest["layers"])
    size = target.size + int(manifest["config"]["size"]) + sum(
        int(x["size"]) for x in manifest["layers"])
    return ImageInfo(name, target.digest, manifest["config"]["digest"], layers, diff_ids,
                     chain_ids(diff_ids)[-1], size)


def list_images(c: Client) -> list[str]:
    resp = c.call("list images", c.images.List, images_pb2.ListImagesRequest())
    return sorted(i.name for i in resp.images)


def remove_image(c: Client, name: str) -> None:
    c.call(f"delete image {name}", c.images.Delete,
           images_pb2.DeleteImageRequest(name=name, sync=True))
