"""An NI's state dir, and its config dir with the credentials copied into it."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from runner.drivers import files, secrets
from runner.plan.layout import Layout
from runner.reconcile.kinds import ConfigFiles, StateDir
from runner.supervisor import vpn

if TYPE_CHECKING:
    from runner.configurators.task import TaskConf

log = logging.getLogger("nirunner.files")

STAMPS = ".secret-stamps"  # which version of each credential source was copied


def stamp(path: str) -> tuple[int, int, int]:
    """(inode, size, mtime in ns) of a credential file, without following a link or
    opening it (a FIFO must not block); (0, 0, 0) if it cannot be looked at."""
    try:
        st = secrets.stamp(path)
    except secrets.SecretError:
        return (0, 0, 0)
    return (st.inode, st.size, st.mtime_ns)


class StateDirConf:
    parallel = False

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def create(self, item: StateDir) -> StateDir:
        path = Path(item.path)
        for sub in ("config", "state"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        return item

    def modify(self, old: StateDir, new: StateDir) -> StateDir:
        return self.create(new)

    def delete(self, item: StateDir) -> None:
        shutil.rmtree(item.path, ignore_errors=True)

    def read(self, item: StateDir) -> StateDir | None:
        return item if Path(item.path).is_dir() else None

    def sweep(self) -> list[StateDir]:
        """Every NI state dir: what this supervisor made and did not remove yet."""
        root = self.layout.nis
        return ([StateDir(d.name, str(d)) for d in sorted(root.iterdir()) if d.is_dir()]
                if root.is_dir() else [])


class ConfigFilesConf:
    """Files are written atomically (not fsynced: they are rendered again on every start);
    a change is handed to the running task: SIGHUP (dnsmasq re-reads its files), and to
    a VPN NI's charon over VICI."""

    parallel = False

    def __init__(self, tasks: TaskConf, secrets_dir: str | None = None) -> None:
        self.tasks = tasks
        self.secrets_dir = secrets_dir

    def _write(self, item: ConfigFiles) -> list[str]:
        cfg = Path(item.dir)
        cfg.mkdir(parents=True, exist_ok=True)
        changed = [name for name, text in item.files
                   if files.write_atomic(cfg / name, text, mode=0o644, durable=False)]
        if item.vpn is not None:  # secrets: 0600, read from the device's files
            changed += vpn.write_credentials(item.ni, item.vpn, cfg, self.secrets_dir)
        keep = {name.split("/", 1)[0] for name, _ in item.files}  # swanctl/... keeps swanctl/
        for stale in cfg.iterdir():
            if stale.name not in keep and not stale.name.startswith("."):
                if stale.is_dir():
                    shutil.rmtree(stale)
                else:
                    stale.unlink()
                changed.append(stale.name)
        stamps = {s.name: list(s.stamp) for s in item.secrets}
        files.write_atomic(cfg / STAMPS, json.dumps(stamps, sort_keys=True), mode=0o600,
                           durable=False)
        return changed

    def create(self, item: ConfigFiles) -> ConfigFiles:
        changed = self._write(item)
        if changed:  # a task that runs already (its config dir was lost) takes them
            self.tasks.reload(item, changed)
        return item

    def modify(self, old: ConfigFiles, new: ConfigFiles) -> ConfigFiles:
        return self.create(new)

    def delete(self, item: ConfigFiles) -> None:
        shutil.rmtree(item.dir, ignore_errors=True)

    def read(self, item: ConfigFiles) -> ConfigFiles | None:
        cfg = Path(item.dir)
        if not cfg.is_dir():
            return None
        found = []
        for name, _ in item.files:
            try:
                found.append((name, (cfg / name).read_text()))
            except (OSError, UnicodeDecodeError):
                found.append((name, ""))
        stamps: dict[str, list[int]] = {}
        with contextlib.suppress(OSError, ValueError):
            stamps = json.loads((cfg / STAMPS).read_text())
        secrets = tuple(
            replace(s, stamp=tuple(stamps.get(s.name, (0, 0, 0))))  # type: ignore[arg-type]
            if (cfg / s.name).is_file() else replace(s, stamp=(0, 0, 0))
            for s in item.secrets)
        return replace(item, files=tuple(found), secrets=secrets)

