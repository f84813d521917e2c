"""The order of an attachment's steps, all or nothing, over a small Effects interface.

The supervisor calls `attach` / `detach` under its lock; an Effects object does
each step (today's drivers for the veth, the DHCP exchange and the address;
the reconciler, once it lands, for the pin, the dnsmasq reload, the port maps
and the stored record). A failing attach undoes the steps done, newest first,
and raises the first error; a detach is best effort and reports every error.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Protocol

from runner.cni.attachments import CniAttachment
from runner.dhcp.client import Lease
from runner.errors import NirunnerError

log = logging.getLogger("nirunner.cni")


class Effects(Protocol):
    def plug(self, r: CniAttachment) -> None:
        """A veth: r.host_ifname on the NI's bridge, r.key.ifname (r.mac) in r.netns, up."""

    def unplug(self, r: CniAttachment) -> None:
        """Remove the veth (idempotent; also fine when the netns is gone)."""

    def lease(self, r: CniAttachment) -> Lease:
        """A DHCP lease from inside r.netns on r.key.ifname (runner.drivers.dhcp.acquire)."""
        ...

    def configure(self, r: CniAttachment, lease: Lease) -> None:
        """Address, default route and MTU in r.netns (runner.drivers.dhcp.configure)."""

    def pin(self, r: CniAttachment) -> Lease:
        """Store r (with its address) in the desired state, write the NI's dhcp-hosts with
        its pinned line, reload dnsmasq, and REQUEST again: the lease turns infinite."""
        ...

    def map_ports(self, r: CniAttachment) -> None:
        """Make r's port mappings port maps of its NI (nft, device and NI tables)."""

    def unmap_ports(self, r: CniAttachment) -> None:
        ...

    def unpin(self, r: CniAttachment) -> None:
        """Drop r from the desired state and its line from dhcp-hosts; reload dnsmasq."""

    def release(self, r: CniAttachment) -> None:
        """DHCPRELEASE of r's address from the NI's side (runner.drivers.dhcp.release_from_ni)."""


class AttachFailed(NirunnerError):
    pass


def attach(r: CniAttachment, fx: Effects) -> CniAttachment:
    """Plug, lease, configure, pin, map ports; on failure undo what was done.

    A step's undo is registered before the step runs (every undo is idempotent),
    so a step that fails half-way is undone too.
    """
    undo: list[tuple[str, Callable[[], None]]] = []

    def step(name: str, do: Callable[[], object], revert: Callable[[], None] | None) -> object:
        if revert is not None:
            undo.append((name, revert))
        try:
            return do()
        except Exception as e:
            errors = _run_undo(undo)
            extra = f" (and undoing: {'; '.join(errors)})" if errors else ""
            raise AttachFailed(f"attach {r.key.container_id}/{r.key.ifname} to NI {r.ni}: "
                               f"{name}: {e}{extra}") from e

    step("plug", lambda: fx.plug(r), lambda: fx.unplug(r))
    lease = step("lease", lambda: fx.lease(r), None)
    assert isinstance(lease, Lease)
    r = dataclasses.replace(r, address=lease.address, server=lease.server)
    undo.append(("release", lambda: fx.release(r)))
    step("configure", lambda: fx.configure(r, lease), None)  # the veth's removal undoes it

    def pin() -> None:
        pinned = fx.pin(r)
        if pinned.address != r.address or not pinned.infinite:
            raise AttachFailed(f"dnsmasq answered {pinned.address} for {pinned.lease_time}s, "
                               f"not {r.address} forever")

    step("pin", pin, lambda: fx.unpin(r))
    if r.port_mappings:
        step("port mappings", lambda: fx.map_ports(r), lambda: fx.unmap_ports(r))
    return r


def _run_undo(undo: list[tuple[str, Callable[[], None]]]) -> list[str]:
    errors = []
    for name, revert in reversed(undo):
        try:
            revert()
        except Exception as e:  # keep undoing: leave as little as possible behind
            log.warning("undo %s failed: %s", name, e)
            errors.append(f"undo {name}: {e}")
    return errors


def detach(r: CniAttachment, fx: Effects) -> list[str]:
    """Port maps, pin, lease, veth: each tried, every error returned (best effort)."""
    steps: list[tuple[str, Callable[[], None]]] = []
    if r.port_mappings:
        steps.append(("port mappings", lambda: fx.unmap_ports(r)))
    steps.append(("pin", lambda: fx.unpin(r)))
    if r.address is not None:
        steps.append(("release", lambda: fx.release(r)))
    steps.append(("unplug", lambda: fx.unplug(r)))
    errors = []
    for name, do in steps:
        try:
            do()
        except Exception as e:
            errors.append(f"detach {r.key.container_id}/{r.key.ifname} from NI {r.ni}: "
                          f"{name}: {e}")
    return errors
