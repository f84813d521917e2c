"""Where a fleet's data lives in etcd (pure). Under the fleet prefix (/nirunner):

    <prefix>/devices/<device>/networkinstances/<ni>   desired: one NI document (JSON)
    <prefix>/status/<device>/device                   reported: the device's summary
    <prefix>/status/<device>/networkinstances/<ni>    reported: one NI's status

Operators write devices/ and read status/; a device reads only its own devices/
prefix and writes only its own status/ prefix (see rbac.py). The NI documents
are the manifests' (apiVersion, kind, metadata, spec), so a Kubernetes CRD could
hold them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.errors import NirunnerError
from runner.model.config import DEVICE_ID as DEVICE
from runner.model.config import DEVICE_ID_RULE, ETCD_PREFIX, ETCD_PREFIX_RULE

NIS = "networkinstances"
SUMMARY = "device"


class LayoutError(NirunnerError):
    """A device id, prefix or key that is not valid."""


def check_device(device: str) -> str:
    if not DEVICE.fullmatch(device):
        raise LayoutError(f"device id {device!r} is not valid: {DEVICE_ID_RULE}")
    return device


def check_prefix(prefix: str) -> str:
    if len(prefix) > 128 or not ETCD_PREFIX.fullmatch(prefix):
        raise LayoutError(f"prefix {prefix!r} is not valid: {ETCD_PREFIX_RULE}")
    return prefix


@dataclass(frozen=True)
class Layout:
    prefix: str

    def __post_init__(self) -> None:
        check_prefix(self.prefix)

    # desired state
    def devices(self) -> str:
        return f"{self.prefix}/devices/"

    def device(self, device: str) -> str:
        return f"{self.devices()}{check_device(device)}/"

    def nis(self, device: str) -> str:
        return f"{self.device(device)}{NIS}/"

    def ni(self, device: str, name: str) -> str:
        return f"{self.nis(device)}{name}"

    def desired_key(self, key: str) -> tuple[str, str] | None:
        """(device, NI name) of a desired NI key; None for any other key.

        The name is returned as it is in the key, valid or not: the caller reports
        a bad one rather than ignoring it."""
        rest = key.removeprefix(self.devices())
        if rest == key:
            return None
        device, _, tail = rest.partition("/")
        kind, _, name = tail.partition("/")
        if not DEVICE.fullmatch(device) or kind != NIS or not name:
            return None
        return device, name

    # reported state
    def statuses(self) -> str:
        return f"{self.prefix}/status/"

    def status(self, device: str) -> str:
        return f"{self.statuses()}{check_device(device)}/"

    def summary(self, device: str) -> str:
        return f"{self.status(device)}{SUMMARY}"

    def ni_status(self, device: str, name: str) -> str:
        return f"{self.status(device)}{NIS}/{name}"

    def status_key(self, key: str) -> tuple[str, str | None] | None:
        """(device, None) of a summary key, (device, NI) of an NI status key; else None."""
        rest = key.removeprefix(self.statuses())
        if rest == key:
            return None
        device, _, tail = rest.partition("/")
        if not DEVICE.fullmatch(device):
            return None
        if tail == SUMMARY:
            return device, None
        kind, _, name = tail.partition("/")
        return (device, name) if kind == NIS and name else None
