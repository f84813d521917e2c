"""Desired state on disk: applied manifests, transit slots, app attachments.

One JSON file, written atomically (tmp, fsync, rename) with a checksum of its
body, so a torn or corrupt file is detected and reported, never silently
dropped. The layout of the state dir is runner.plan.layout's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runner.drivers.files import write_atomic
from runner.errors import NirunnerError
from runner.model.dump import to_manifest
from runner.model.manifest import load_documents
from runner.model.types import NetworkInstance
from runner.plan.layout import Layout

FORMAT = 1


class StateCorrupt(NirunnerError):
    pass


@dataclass(frozen=True)
class Attachment:
    ni: str
    netns: str  # path of the app's netns
    ifname: str  # inside the app netns
    host_ifname: str  # NI end, on the bridge
    mac: str
    hostname: str = ""


@dataclass
class Desired:
    nis: dict[str, NetworkInstance] = field(default_factory=dict)
    slots: dict[str, int] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)


def _checksum(body: dict[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class Store(Layout):
    def __init__(self, state_dir: str | Path) -> None:
        super().__init__(Path(state_dir))

    @property
    def path(self) -> Path:
        return self.desired

    def load(self) -> Desired:
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return Desired()
        try:
            doc = json.loads(raw)
            body = doc["body"]
            if doc.get("format") != FORMAT:
                raise StateCorrupt(f"{self.path}: unknown format {doc.get('format')!r}")
            if doc.get("checksum") != _checksum(body):
                raise StateCorrupt(f"{self.path}: checksum mismatch (torn or edited file)")
            nis = {}
            for name, manifest in body["nis"].items():
                (ni,) = load_documents(yaml.safe_dump(manifest), f"{self.path}:{name}")
                nis[name] = ni
            return Desired(
                nis=nis,
                slots={k: int(v) for k, v in body["slots"].items()},
                attachments=[Attachment(**a) for a in body.get("attachments", [])],
            )
        except StateCorrupt:
            raise
        except (ValueError, KeyError, TypeError, NirunnerError) as e:
            raise StateCorrupt(f"{self.path}: cannot be read back: {e}") from e

    def save(self, d: Desired) -> None:
        body = {
            "nis": {n: to_manifest(ni) for n, ni in sorted(d.nis.items())},
            "slots": dict(sorted(d.slots.items())),
            "attachments": [a.__dict__ for a in d.attachments],
        }
        doc = {"format": FORMAT, "checksum": _checksum(body), "body": body}
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(doc, indent=1, sort_keys=True) + "\n", mode=0o600)
