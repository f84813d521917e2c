"""Wiring a FleetSource to a supervisor: the Target over the Supervisor's public
operations, and the start/stop the daemon calls when its config has `source.etcd`.

    source = start_source(config, sup)   # after the first reconcile (local store served)
    ...
    if source: source.stop()             # on shutdown; status keys stay until the TTL

The adapter only uses `apply`, `delete`, `status` and the desired NI names, so it
works on today's Supervisor; once the supervisor implements the Target methods
itself, `start_source` passes it directly (see `as_target`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.fleet.source import FleetSource, Target
from runner.model.types import SupervisorConfig

if TYPE_CHECKING:
    from runner.supervisor.core import Supervisor

_RESULTS = {"created": "created", "recreated": "updated", "started": "updated",
            "updated": "updated", "unchanged": "unchanged"}


class SupervisorTarget:
    """Target over Supervisor.apply/delete/status (one NI document at a time)."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup

    def apply_one(self, name: str, source: str, text: str) -> str:
        from runner.supervisor.core import Document

        report = self.sup.apply([Document(source, text)])  # refusal: NirunnerError
        action = next((r.action for r in report.results if r.name == name), "unchanged")
        return _RESULTS.get(action, "updated")

    def delete_one(self, name: str) -> None:
        self.sup.delete([name])

    def names(self) -> list[str]:
        with self.sup.lock:
            return sorted(self.sup.desired.nis)

    def statuses(self) -> list[dict[str, Any]]:
        return [brief(s) for s in self.sup.status()]


def brief(st: dict[str, Any]) -> dict[str, Any]:
    """What the fleet reports of an NI, from the supervisor's status of it."""
    vpn = st.get("vpn")
    return {"name": st["name"], "state": st.get("state", ""), "reason": st.get("reason", ""),
            "pid": (st.get("task") or {}).get("pid", 0), "apps": len(st.get("apps") or []),
            "vpn": (vpn.get("child") or {}).get("state") if isinstance(vpn, dict) else None}


def as_target(sup: Supervisor) -> Target:
    if all(hasattr(sup, m) for m in ("apply_one", "delete_one", "names", "statuses")):
        return sup  # type: ignore[return-value]
    return SupervisorTarget(sup)


def start_source(config: SupervisorConfig, sup: Supervisor) -> FleetSource | None:
    """Start following the fleet's etcd when the config has `source.etcd`."""
    if config.source is None:
        return None
    source = FleetSource(config.source, as_target(sup), config.state_dir)
    source.start()
    return source
