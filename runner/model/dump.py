"""Validated values back to manifest form: for the state store and `-o yaml`.

`load_documents(yaml.safe_dump(to_manifest(ni)))` gives back an equal value.
"""

from __future__ import annotations

from typing import Any

from runner.model.types import App, CertAuth, FlowLog, NetworkInstance, Vpn
from runner.net.appedge import AclRule


def _dur(seconds: int) -> str:
    if seconds == 0:
        return "0s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def to_manifest(ni: NetworkInstance) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": str(ni.type)}
    if ni.uplink is not None:
        spec["uplink"] = ni.uplink
    if ni.vlan is not None:
        spec["vlan"] = ni.vlan
    if ni.subnet is not None:
        spec["subnet"] = str(ni.subnet)
    if ni.gateway is not None:
        spec["gateway"] = str(ni.gateway)
    if ni.mtu is not None:
        spec["mtu"] = ni.mtu
    if ni.dhcp is not None:
        spec["dhcp"] = {
            "range": {"start": str(ni.dhcp.range.start), "end": str(ni.dhcp.range.end)},
            "leaseTime": _dur(ni.dhcp.lease_time),
            "reservations": [{"name": r.name, "mac": r.mac, "ip": str(r.ip)}
                             for r in ni.dhcp.reservations],
        }
    dns: dict[str, Any] = {}
    if ni.dns.domain is not None:
        dns["domain"] = ni.dns.domain
    if ni.dns.upstream is not None:
        dns["upstream"] = [str(a) for a in ni.dns.upstream]
    if ni.dns.static:
        dns["static"] = [{"name": h.name, "addresses": [str(a) for a in h.addresses]}
                         for h in ni.dns.static]
    if dns:
        spec["dns"] = dns
    if ni.ntp:
        spec["ntp"] = [str(a) for a in ni.ntp]
    if ni.port_maps:
        spec["portMaps"] = [
            {"name": p.name, "protocol": str(p.protocol), "uplinkPort": p.uplink_port,
             "target": p.target, "targetPort": p.target_port}
            for p in ni.port_maps
        ]
    r = ni.resources
    spec["resources"] = {"memory": r.memory, "cpu": r.cpu, "pids": r.pids}
    if ni.vpn is not None:
        spec["vpn"] = _vpn(ni.vpn)
    if ni.apps:
        spec["apps"] = [_app(a) for a in ni.apps]
    if ni.flow_log != FlowLog():
        f = ni.flow_log
        spec["flowLog"] = {"maxSize": f.max_size, "keep": f.keep} if f.enabled else False
    return {"apiVersion": "nirunner/v1", "kind": "NetworkInstance",
            "metadata": {"name": ni.name}, "spec": spec}


def _vpn(v: Vpn) -> dict[str, Any]:
    """The VPN section; secrets appear only as the paths of their files."""
    if isinstance(v.auth, CertAuth):
        auth: dict[str, Any] = {"cert": {"certFile": v.auth.cert_file,
                                         "keyFile": v.auth.key_file,
                                         "caFile": v.auth.ca_file}}
    else:
        auth = {"psk": {"secretFile": v.auth.secret_file}}
    return {
        "remote": str(v.remote),
        "auth": auth,
        "localId": v.local_id,
        "remoteId": v.remote_id,
        "remoteSubnets": [str(n) for n in v.remote_subnets],
        "ike": {"proposals": list(v.ike_proposals)},
        "esp": {"proposals": list(v.esp_proposals)},
        "dpd": _dur(v.dpd),
    }


def _app(a: App) -> dict[str, Any]:
    out: dict[str, Any] = {"name": a.name, "mac": a.mac}
    if a.ip is not None:
        out["ip"] = str(a.ip)
    if a.acls is not None:
        out["acls"] = [_rule(r) for r in a.acls]
    return out


def _rule(r: AclRule) -> dict[str, Any]:
    from runner.model.app_fields import rate_text

    out: dict[str, Any] = {str(r.action): str(r.direction)}
    if r.remote is not None:
        out["remote"] = str(r.remote)
    if r.host is not None:
        out["host"] = r.host
    if r.protocol is not None:
        out["protocol"] = str(r.protocol)
    if r.ports is not None:
        lo, hi = r.ports
        out["ports"] = str(lo) if lo == hi else f"{lo}-{hi}"
    if r.limit is not None:
        out["rate"] = rate_text(r.limit)
        if r.limit.burst:
            out["burst"] = r.limit.burst
    return out
