"""A simulated fleet device for tests: a real FleetSource driving a recording target.

    python -m runner.lab.fleetdevice --config supervisor.yaml --store DIR

The target validates each NI document as the supervisor does (the manifest's own
checks, then the set checks against the device's other NIs and its uplinks) and
keeps what it accepted as files `DIR/nis/<name>.yaml`, its "local store", which
survives a restart. It builds no namespaces or tasks: it stands in for the
supervisor until the supervisor implements the source's Target protocol itself.
Every 0.2 s it writes the source's state to DIR/source.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

from runner.drivers.files import write_atomic
from runner.errors import NirunnerError
from runner.model.manifest import Located, parse_documents, validate_set
from runner.model.types import NetworkInstance, SupervisorConfig


class RecordingTarget:
    """The source's Target over a directory (or only memory, without one)."""

    def __init__(self, config: SupervisorConfig, store: Path | None = None) -> None:
        self.config, self.store = config, store
        self.nis: dict[str, tuple[NetworkInstance, str]] = {}
        self.calls: list[tuple[str, str]] = []  # (operation, NI), in order
        self.lock = threading.Lock()
        if store is not None:
            (store / "nis").mkdir(parents=True, exist_ok=True)
            for f in sorted((store / "nis").glob("*.yaml")):
                text = f.read_text()
                (loc,) = parse_documents(text, str(f))
                self.nis[loc.ni.name] = (loc.ni, text)

    def apply_one(self, name: str, source: str, text: str) -> str:
        located = parse_documents(text, source)
        if [x.ni.name for x in located] != [name]:
            raise NirunnerError(f"{source}: expected one NI named {name!r}")
        with self.lock:
            others = [Located(ni) for n, (ni, _) in self.nis.items() if n != name]
            validate_set([*located, *others], self.config)
            old = self.nis.get(name)
            if old is not None and old[0] == located[0].ni:
                return "unchanged"
            self.nis[name] = (located[0].ni, text)
            self.calls.append(("apply", name))
            if self.store is not None:
                write_atomic(self.store / "nis" / f"{name}.yaml", text, mode=0o600)
        return "updated" if old else "created"

    def delete_one(self, name: str) -> None:
        with self.lock:
            if name not in self.nis:
                raise NirunnerError(f"no such NI: {name}")
            del self.nis[name]
            self.calls.append(("delete", name))
            if self.store is not None:
                (self.store / "nis" / f"{name}.yaml").unlink(missing_ok=True)

    def names(self) -> list[str]:
        with self.lock:
            return sorted(self.nis)

    def statuses(self) -> list[dict[str, Any]]:
        with self.lock:
            return [{"name": n, "state": "running", "reason": "", "pid": os.getpid(),
                     "apps": 0, "vpn": "established" if ni.vpn else None}
                    for n, (ni, _) in sorted(self.nis.items())]


def main() -> int:
    from runner.fleet.source import FleetSource
    from runner.model.config import load_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--store", required=True, type=Path)
    ap.add_argument("--status-every", type=float, default=0.5)
    a = ap.parse_args()
    config = load_config(a.config)
    if config.source is None:
        raise SystemExit(f"{a.config}: no source.etcd section")
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    target = RecordingTarget(config, a.store)
    source = FleetSource(config.source, target, a.store, status_every=a.status_every)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    source.start()
    while not stop.wait(0.2):
        write_atomic(a.store / "source.json", json.dumps(source.state()), durable=False)
    source.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
