"""Desired state on disk: applied manifests, transit slots, app attachments.

    desired.json              the NIs' manifests and transit slots
    attachments/<ni>.json     each NI's app attachments (none: no file)

Each file is written atomically (tmp, fsync, rename) with a checksum of its body,
so a torn or corrupt file is detected and reported, never silently dropped; a
file is written only when what it holds changed, so attaching an app writes its
NI's small file and nothing else, however many NIs there are. The layout of the
state dir is runner.plan.layout's. A desired.json of format 1 holds the
attachments itself; it is read as such and written anew in format 2. Attachments
written before CNI and taps existed (no `kind`) read back as `attach --netns` ones.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

import yaml

from runner.cni.api import PortMapping
from runner.drivers.files import write_atomic
from runner.errors import NirunnerError
from runner.model.dump import to_manifest
from runner.model.manifest import load_documents
from runner.model.types import NetworkInstance
from runner.plan.layout import Layout

FORMAT = 2  # 1: the attachments were in desired.json
ATTACHMENTS_FORMAT = 1


class StateCorrupt(NirunnerError):
    pass


NETNS, CNI, TAP = "netns", "cni", "tap"  # how an attachment was made


@dataclass(frozen=True)
class Attachment:
    """An app plugged into an NI: `attach --netns` (kind netns), a CNI ADD (kind cni: a
    veth, and a DHCP lease taken, configured in the app's netns and pinned), or a
    device interface taken into the NI's bridge (kind tap: `attach --interface`)."""

    ni: str
    netns: str  # path of the app's netns ("" for a tap)
    ifname: str  # inside the app netns; a tap's name in the device netns
    host_ifname: str  # NI end, on the bridge
    mac: str
    hostname: str = ""
    kind: str = NETNS
    network: str = ""  # cni: the CNI network name
    container_id: str = ""  # cni: CNI_CONTAINERID
    address: IPv4Interface | None = None  # cni: the pinned lease, configured in the netns
    port_mappings: tuple[PortMapping, ...] = ()  # cni: uplink port -> container port
    mtu: int = 0  # tap: its MTU before it was taken (given back with it)
    up: bool = False  # tap: whether it was up before it was taken

    def to_json(self) -> dict[str, Any]:
        return {
            "ni": self.ni, "netns": self.netns, "ifname": self.ifname,
            "host_ifname": self.host_ifname, "mac": self.mac, "hostname": self.hostname,
            "kind": self.kind, "network": self.network, "container_id": self.container_id,
            "address": str(self.address) if self.address else "",
            "port_mappings": [[p.host_port, p.container_port, p.protocol, p.host_ip]
                              for p in self.port_mappings],
            "mtu": self.mtu, "up": self.up,
        }

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> Attachment:
        if d.get("kind", NETNS) not in (NETNS, CNI, TAP):
            raise ValueError(f"attachment of unknown kind {d.get('kind')!r}")
        return Attachment(
            ni=d["ni"], netns=d["netns"], ifname=d["ifname"], host_ifname=d["host_ifname"],
            mac=d["mac"], hostname=d.get("hostname", ""), kind=d.get("kind", NETNS),
            network=d.get("network", ""), container_id=d.get("container_id", ""),
            address=IPv4Interface(d["address"]) if d.get("address") else None,
            port_mappings=tuple(PortMapping(int(h), int(c), str(p), str(ip))
                                for h, c, p, ip in d.get("port_mappings", ())),
            mtu=int(d.get("mtu", 0)), up=bool(d.get("up", False)))


@dataclass
class Desired:
    nis: dict[str, NetworkInstance] = field(default_factory=dict)
    slots: dict[str, int] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)


def _checksum(body: dict[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class _Saved:
    """What the store's files hold, as last written: a file is written when it changes."""

    desired: object = None  # what desired.json was made of (the NIs and slots)
    attachments: dict[str, list[Attachment]] = field(default_factory=dict)  # by NI
    swept: bool = False  # the attachment files of an older state removed (once)


class Store(Layout):
    def __init__(self, state_dir: str | Path) -> None:
        super().__init__(Path(state_dir))
        object.__setattr__(self, "_saved", _Saved())

    @property
    def path(self) -> Path:
        return self.desired

    @property
    def attachments_dir(self) -> Path:
        return self.root / "attachments"

    def attachments_path(self, ni: str) -> Path:
        return self.attachments_dir / f"{ni}.json"

    def _read(self, path: Path, formats: tuple[int, ...]) -> tuple[int, Any] | None:
        try:
            raw = path.read_text()
        except FileNotFoundError:
            return None
        doc = json.loads(raw)
        body = doc["body"]
        if doc.get("format") not in formats:
            raise StateCorrupt(f"{path}: unknown format {doc.get('format')!r}")
        if doc.get("checksum") != _checksum(body):
            raise StateCorrupt(f"{path}: checksum mismatch (torn or edited file)")
        return int(doc["format"]), body

    def load(self) -> Desired:
        path = self.path
        try:
            found = self._read(path, (1, FORMAT))
            if found is None:
                return Desired()
            version, body = found
            nis = {}
            for name, manifest in body["nis"].items():
                (ni,) = load_documents(yaml.safe_dump(manifest), f"{path}:{name}")
                nis[name] = ni
            attachments = [Attachment.from_json(a) for a in body.get("attachments", [])]
            if version != 1:
                for f in sorted(self.attachments_dir.glob("*.json")):
                    path = f
                    got = self._read(f, (ATTACHMENTS_FORMAT,))
                    if got is not None:
                        attachments += [Attachment.from_json(a) for a in got[1]]
            return Desired(nis=nis, slots={k: int(v) for k, v in body["slots"].items()},
                           attachments=attachments)
        except StateCorrupt:
            raise
        except (ValueError, KeyError, TypeError, NirunnerError) as e:
            raise StateCorrupt(f"{path}: cannot be read back: {e}") from e

    def save(self, d: Desired) -> None:
        """Write the files whose content changed (each of them, the first time).

        The cost follows what changed, not how many NIs there are: an attach writes and
        compares only its NI's file (unchanged ones compare as the same objects)."""
        saved: _Saved = self._saved  # type: ignore[attr-defined]
        by_ni: dict[str, list[Attachment]] = {}
        for a in d.attachments:
            by_ni.setdefault(a.ni, []).append(a)
        # the attachments first: a format 1 file read before still has them, until the
        # new desired.json (without them) replaces it
        changed = {ni: atts for ni, atts in by_ni.items() if saved.attachments.get(ni) != atts}
        if changed:
            self.attachments_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for ni, atts in changed.items():
            _write(self.attachments_path(ni), [a.to_json() for a in atts], ATTACHMENTS_FORMAT)
            saved.attachments[ni] = atts
        # the NI values themselves (kept alive here): the same objects compare at once
        key = (tuple(sorted(d.nis.items())), tuple(sorted(d.slots.items())))
        if saved.desired != key or not self.path.exists():
            body = {"nis": {n: to_manifest(ni) for n, ni in sorted(d.nis.items())},
                    "slots": dict(sorted(d.slots.items()))}
            _write(self.path, body, FORMAT)
            saved.desired = key
        for ni in [n for n in saved.attachments if n not in by_ni]:
            self.attachments_path(ni).unlink(missing_ok=True)
            del saved.attachments[ni]
        if not saved.swept:
            for path in self.attachments_dir.glob("*.json"):
                if path.stem not in by_ni:
                    path.unlink()
            saved.swept = True


def _write(path: Path, body: Any, version: int) -> None:
    text = json.dumps({"format": version, "checksum": _checksum(body), "body": body},
                      indent=1, sort_keys=True) + "\n"
    write_atomic(path, text, mode=0o600)
