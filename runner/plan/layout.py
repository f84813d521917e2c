"""Where an NI's files live under the supervisor's state dir (pure paths).

    <stateDir>/desired.json          the desired state (runner.supervisor.store)
    <stateDir>/ni/<name>/config/     the NI's config (read-only /etc/nirunner in its task)
    <stateDir>/ni/<name>/state/      the NI's state (/var/lib/nirunner: leases, services.status)
    <stateDir>/ni/<name>/task.log    the task's stdout and stderr
    <stateDir>/ni/<name>/flows.jsonl the flow log (and .1, .2, ... rotated), written by the
                                     supervisor, out of the task's reach
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def desired(self) -> Path:
        return self.root / "desired.json"

    @property
    def nis(self) -> Path:
        return self.root / "ni"

    def ni_dir(self, name: str) -> Path:
        return self.nis / name

    def config_dir(self, name: str) -> Path:
        return self.ni_dir(name) / "config"

    def state_dir(self, name: str) -> Path:
        return self.ni_dir(name) / "state"

    def log_path(self, name: str) -> Path:
        return self.ni_dir(name) / "task.log"

    def leases_path(self, name: str) -> Path:
        """dnsmasq's lease file (its dhcp-leasefile inside the task)."""
        return self.state_dir(name) / "dnsmasq.leases"

    def flow_log_path(self, name: str) -> Path:
        return self.ni_dir(name) / "flows.jsonl"
