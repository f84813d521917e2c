"""The field checks of a VPN NI's spec.vpn section, and what only a VPN NI may have."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network

from runner.model.checker import DURATION_UNITS, Checker
from runner.model.types import CertAuth, Dns, NIType, PskAuth, Vpn

MAX_DPD = 3600
# IKE identities end up (quoted) in swanctl.conf: no quotes, backslashes, braces, '#'
_IKE_ID = re.compile(r"[A-Za-z0-9@._:=,+/*%-](?:[A-Za-z0-9@._:=,+/*% -]*[A-Za-z0-9@._:=,+/*%-])?")
_IKE_ID_RULE = ("use letters, digits, spaces and @ . _ : = , + / * % -, not starting or "
                "ending with a space, at most 255 characters")
_PROPOSAL = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_PROPOSAL_RULE = "a strongSwan proposal like aes256-sha256-modp2048, aes256gcm16 or default"
FILE = re.compile(r"/[^\x00-\x1f\x7f]*")
FILE_RULE = "must be an absolute path without control characters"

_VPN = ("remote", "auth", "localId", "remoteId", "remoteSubnets", "ike", "esp", "dpd")
_VPN_REQUIRED = ("remote", "auth", "localId", "remoteId", "remoteSubnets")
_AUTH = ("psk", "cert")
_PSK = ("secretFile",)
_CERT = ("certFile", "keyFile", "caFile")


def vpn_section(c: Checker, value: object, subnet: IPv4Network | None) -> Vpn | None:
    v = c.mapping(value, "spec.vpn", _VPN, required=_VPN_REQUIRED)
    if v is None:
        return None
    remote = c.host(v.get("remote"), "spec.vpn.remote")
    if remote is not None and subnet is not None and remote in subnet:
        c.error("spec.vpn.remote", f"{remote} is inside spec.subnet {subnet}: the peer must "
                                   f"be reached through the uplink")
        remote = None
    auth = _auth(c, v.get("auth"))
    local_id = c.matching(v.get("localId"), "spec.vpn.localId", _IKE_ID, _IKE_ID_RULE, 255)
    remote_id = c.matching(v.get("remoteId"), "spec.vpn.remoteId", _IKE_ID, _IKE_ID_RULE, 255)
    nets = _remote_subnets(c, v.get("remoteSubnets"), subnet, remote)
    ike = _proposals(c, v.get("ike"), "spec.vpn.ike")
    esp = _proposals(c, v.get("esp"), "spec.vpn.esp")
    dpd = c.quantity(v.get("dpd"), "spec.vpn.dpd", DURATION_UNITS,
                     "a duration like 30s, 1m or 30", 0, MAX_DPD, "range 0s..1h")
    if remote is None or auth is None or local_id is None or remote_id is None or not nets:
        return None
    default = Vpn(remote, auth, local_id, remote_id, nets)
    return Vpn(remote, auth, local_id, remote_id, nets,
               ike_proposals=ike or default.ike_proposals,
               esp_proposals=esp or default.esp_proposals,
               dpd=default.dpd if dpd is None else dpd)


def _auth(c: Checker, value: object) -> PskAuth | CertAuth | None:
    path = "spec.vpn.auth"
    a = c.mapping(value, path, _AUTH)
    if a is None:
        return None
    given = [k for k in _AUTH if a.get(k) is not None]
    if len(given) != 1:
        c.error(path, "must have exactly one of psk or cert")
        return None
    if given == ["psk"]:
        m = c.mapping(a["psk"], f"{path}.psk", _PSK, required=_PSK)
        secret = _file(c, m.get("secretFile"), f"{path}.psk.secretFile") if m else None
        return PskAuth(secret) if secret else None
    m = c.mapping(a["cert"], f"{path}.cert", _CERT, required=_CERT)
    if m is None:
        return None
    cert, key, ca = (_file(c, m.get(k), f"{path}.cert.{k}") for k in _CERT)
    return CertAuth(cert, key, ca) if cert and key and ca else None


def _file(c: Checker, value: object, path: str) -> str | None:
    return c.matching(value, path, FILE, FILE_RULE, 1024)


def _remote_subnets(c: Checker, value: object, subnet: IPv4Network | None,
                    remote: IPv4Address | None) -> tuple[IPv4Network, ...]:
    path = "spec.vpn.remoteSubnets"
    if value == []:
        c.error(path, "must list at least one subnet")
    out: list[IPv4Network] = []
    for here, item in c.items(value, path):
        net = c.network(item, here, "10.99.1.0/24")
        if net is None:
            continue
        if subnet is not None and net.overlaps(subnet):
            c.error(here, f"{net} overlaps spec.subnet {subnet}")
        elif remote is not None and remote in net:
            c.error(here, f"{net} contains spec.vpn.remote {remote}: IKE to the peer would "
                          f"have to go through its own tunnel")
        elif net in out:
            c.error(here, f"{net} is listed twice")
        else:
            out.append(net)
    return tuple(out)


def _proposals(c: Checker, value: object, path: str) -> tuple[str, ...]:
    m = c.mapping(value, path, ("proposals",), required=("proposals",))
    if m is None:
        return ()
    here = f"{path}.proposals"
    if m.get("proposals") == []:
        c.error(here, "must list at least one proposal")
    out = [c.matching(item, p, _PROPOSAL, _PROPOSAL_RULE, 200)
           for p, item in c.items(m.get("proposals"), here)]
    return tuple(x for x in out if x is not None)


def vpn_rules(c: Checker, s: dict[str, object], ni_type: NIType | None, vpn: Vpn | None,
              dns: Dns | None) -> None:
    """What only a VPN NI has, and what it must not have."""
    if ni_type is None:
        return
    if ni_type is not NIType.VPN:
        if s.get("vpn") is not None:
            c.error("spec.vpn", "is only for spec.type vpn")
        return
    if s.get("vpn") is None:
        c.error("spec.vpn", "is required for spec.type vpn")
    if s.get("uplink") is None:
        c.error("spec.uplink", "is required for spec.type vpn (the tunnel needs an uplink)")
    if s.get("portMaps"):
        c.error("spec.portMaps", "are not allowed on a VPN NI: its apps are reachable only "
                                 "through the tunnel")
    if vpn is not None and dns is not None and dns.upstream:
        for i, ip in enumerate(dns.upstream):
            if not any(ip in net for net in vpn.remote_subnets):
                c.error(f"spec.dns.upstream[{i}]", f"{ip} is not in spec.vpn.remoteSubnets: "
                        "a VPN NI sends DNS queries only through its tunnel")
