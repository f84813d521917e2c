"""The VPN part of an NI's plan: which ESP backend, the connection, and what to copy in.

Secrets are never part of a plan: it names the files on the device they come
from, and the supervisor reads them when it writes the NI's config dir (mode
0600) and when it reloads charon. So plans can be logged, compared and shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.model.types import CertAuth, IpsecBackend, NetworkInstance
from runner.net import names
from runner.plan.errors import PlanError
from runner.render import swanctl

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644


@dataclass(frozen=True)
class CredentialCopy:
    """A file the supervisor copies from the device into the NI's config dir."""

    source: str  # path on the device, from the manifest
    name: str  # path under the config dir, e.g. swanctl/private/local.pem
    mode: int


@dataclass(frozen=True)
class VpnPlan:
    backend: IpsecBackend  # KERNEL or LIBIPSEC, never AUTO
    conn: str  # the connection's name, and its child's: the NI's name
    connection: dict[str, Any]  # VICI load-conn message (see runner.render.swanctl)
    shared_id: str  # the PSK's id in charon
    owners: tuple[str, str]  # the identities the PSK is for (local, remote)
    psk_file: str | None  # device path of the PSK (PSK authentication)
    copies: tuple[CredentialCopy, ...]  # certificates and key (certificate authentication)
    tun: str | None  # the TUN device of libipsec; None with kernel ESP

    @property
    def credential_names(self) -> tuple[str, ...]:
        """What the supervisor writes under the config dir besides the plan's files."""
        return (swanctl.SECRETS_CONF, *(c.name for c in self.copies))


def resolve_backend(wanted: IpsecBackend, kernel_esp: bool) -> IpsecBackend:
    if wanted is IpsecBackend.AUTO:
        return IpsecBackend.KERNEL if kernel_esp else IpsecBackend.LIBIPSEC
    return wanted


def plan_vpn(ni: NetworkInstance, wanted: IpsecBackend,
             kernel_esp: bool) -> tuple[VpnPlan, dict[str, str]]:
    """The VPN plan of `ni` and its config files (strongswan.conf, swanctl/swanctl.conf)."""
    vpn = ni.vpn
    if vpn is None:
        raise PlanError(f"NI {ni.name}: a VPN NI needs spec.vpn")
    if ni.uplink is None:
        raise PlanError(f"NI {ni.name}: a VPN NI needs an uplink")
    if ni.port_maps:
        raise PlanError(f"NI {ni.name}: a VPN NI cannot have port maps")
    backend = resolve_backend(wanted, kernel_esp)
    conn, files = swanctl.render(ni, backend)
    copies: tuple[CredentialCopy, ...] = ()
    psk_file = None
    if isinstance(vpn.auth, CertAuth):
        copies = (CredentialCopy(vpn.auth.cert_file, swanctl.CERT_PATH, PUBLIC_MODE),
                  CredentialCopy(vpn.auth.ca_file, swanctl.CA_PATH, PUBLIC_MODE),
                  CredentialCopy(vpn.auth.key_file, swanctl.KEY_PATH, SECRET_MODE))
    else:
        psk_file = vpn.auth.secret_file
    plan = VpnPlan(
        backend=backend,
        conn=ni.name,
        connection=conn,
        shared_id=swanctl.shared_id(ni.name),
        owners=(vpn.local_id, vpn.remote_id),
        psk_file=psk_file,
        copies=copies,
        tun=names.VPN_TUN_IF if backend is IpsecBackend.LIBIPSEC else None,
    )
    return plan, files
