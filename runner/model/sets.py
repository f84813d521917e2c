"""Checks across NIs, and against the supervisor config: what one manifest cannot know.

Without a config (`nirunner validate` without --config) only what the manifests
say among themselves is checked: names, port clashes, port maps on IKE ports of
a VPN NI's uplink. With one, also the uplinks, the transit pool (no NI address
inside it, enough /30 slots for every NI with an uplink) and secretsDir.

When a problem is between an NI that came from a file and one that did not
(already applied, from the supervisor's state), it is reported on the one from
the file: that is what the user is changing. Problems of applied NIs alone are
left out when some NIs come from files: they passed when they were applied (a
rule added since must not block every later apply), and planning and the
reconcile pass still report what cannot run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from runner.model.errors import Located, Problem
from runner.model.types import CertAuth, NetworkInstance, NIType, Protocol, SupervisorConfig
from runner.net import names

SLOT_SIZE = 4  # a /30 per NI with an uplink


def transit_capacity(config: SupervisorConfig) -> int:
    """How many NIs with an uplink the transit pool holds (bounded by rule priorities)."""
    return min(config.transit_pool.num_addresses // SLOT_SIZE, names.MAX_SLOTS)


def set_problems(nis: Iterable[NetworkInstance | Located],
                 config: SupervisorConfig | None) -> list[Problem]:
    """Every problem of `nis` as a set (None: no supervisor config is known)."""
    located = [x if isinstance(x, Located) else Located(x) for x in nis]
    # NIs without a source (applied before) first: a clash is reported on the new one
    ordered = sorted(located, key=lambda loc: loc.source is not None)
    found: list[Problem] = []
    found += _name_problems(ordered)
    found += _port_problems(ordered)
    found += _ike_problems(ordered)
    if config is not None:
        for loc in ordered:
            found += _uplink_problems(loc, config)
            found += _pool_problems(loc, config)
            found += _secret_problems(loc, config)
        found += _capacity_problems(ordered, config)
    if any(loc.source is not None for loc in located):
        found = [p for p in found if p.source is not None]
    # in the order of the files given, then by line
    files = {src: i for i, src in enumerate(dict.fromkeys(loc.source for loc in located))}
    return sorted(found, key=lambda p: (files.get(p.source, 0), p.line is None, p.line or 0))


def problem(loc: Located, path: str, message: str) -> Problem:
    return Problem(loc.source, loc.ni.name, path, message, loc.line(path))


def _where(loc: Located, path: str) -> str:
    """' in site.yaml:12' when the NI came from a file, else ''."""
    if not loc.source:
        return ""
    line = loc.line(path)
    return f" in {loc.source}" + (f":{line}" if line else "")


def _name_problems(nis: list[Located]) -> list[Problem]:
    found: list[Problem] = []
    seen: dict[str, Located] = {}
    for loc in nis:
        other = seen.setdefault(loc.ni.name, loc)
        if other is not loc:
            where = _where(other, "metadata.name") or " by another NI"
            found.append(problem(loc, "metadata.name", f"{loc.ni.name!r} is already used{where}"))
    return found


def _port_problems(nis: list[Located]) -> list[Problem]:
    found: list[Problem] = []
    ports: dict[tuple[str, Protocol, int], tuple[Located, int]] = {}
    for loc in nis:
        if loc.ni.uplink is None:
            if loc.ni.port_maps:
                msg = "need spec.uplink: an air-gapped NI (no uplink) cannot have port maps"
                found.append(problem(loc, "spec.portMaps", msg))
            continue
        for i, pm in enumerate(loc.ni.port_maps):
            key = (loc.ni.uplink, pm.protocol, pm.uplink_port)
            if key not in ports:
                ports[key] = (loc, i)
                continue
            other, j = ports[key]
            there = f"spec.portMaps[{j}]"
            msg = (f"{pm.protocol} {pm.uplink_port} on uplink {loc.ni.uplink} is already "
                   f"mapped by NI {other.ni.name!r} ({there}{_where(other, there)})")
            found.append(problem(loc, f"spec.portMaps[{i}].uplinkPort", msg))
    return found


def _ike_problems(nis: list[Located]) -> list[Problem]:
    """A UDP port map on 500 or 4500 of an uplink a VPN NI uses would DNAT the peer's
    IKE and ESP-in-UDP to an app."""
    vpn_on: dict[str, Located] = {}
    for loc in nis:
        if loc.ni.type is NIType.VPN and loc.ni.uplink is not None:
            vpn_on.setdefault(loc.ni.uplink, loc)
    found: list[Problem] = []
    for loc in nis:
        vpn = vpn_on.get(loc.ni.uplink or "")
        if vpn is None:
            continue
        for i, pm in enumerate(loc.ni.port_maps):
            if pm.protocol is not Protocol.UDP or pm.uplink_port not in names.IKE_PORTS:
                continue
            why = (f"IKE and NAT-T use UDP 500 and 4500, and VPN NI {vpn.ni.name!r} "
                   f"uses uplink {loc.ni.uplink}")
            if loc.source is None and vpn.source is not None:
                found.append(problem(vpn, "spec.uplink", f"{loc.ni.uplink}: NI "
                                     f"{loc.ni.name!r} maps udp {pm.uplink_port} there, so "
                                     f"its app would get the peer's IKE ({why})"))
            else:
                found.append(problem(loc, f"spec.portMaps[{i}].uplinkPort",
                                     f"udp {pm.uplink_port} would take the VPN peer's IKE "
                                     f"away from its tunnel ({why})"))
    return found


def _uplink_problems(loc: Located, config: SupervisorConfig) -> list[Problem]:
    ni = loc.ni
    if ni.uplink is None or config.uplink(ni.uplink) is not None:
        return []
    listed = ", ".join(u.name for u in config.uplinks) or "none"
    msg = f"{ni.uplink!r} is not an uplink of the supervisor config (it has: {listed})"
    return [problem(loc, "spec.uplink", msg)]


def _pool_problems(loc: Located, config: SupervisorConfig) -> list[Problem]:
    """No address of an NI may lie in the transit pool: those are the device's links."""
    ni, pool = loc.ni, config.transit_pool
    found: list[Problem] = []
    inside = f"the supervisor's transitPool {pool} (the links between the device and its NIs)"
    if ni.subnet is not None and ni.subnet.overlaps(pool):
        found.append(problem(loc, "spec.subnet", f"{ni.subnet} overlaps {inside}"))
    servers = [(f"spec.dns.upstream[{i}]", ip) for i, ip in enumerate(ni.dns.upstream or ())]
    servers += [(f"spec.ntp[{i}]", ip) for i, ip in enumerate(ni.ntp)]
    found += [problem(loc, path, f"{ip} is inside {inside}")
              for path, ip in servers if ip in pool]
    if ni.vpn is not None:
        found += [problem(loc, f"spec.vpn.remoteSubnets[{i}]", f"{net} overlaps {inside}")
                  for i, net in enumerate(ni.vpn.remote_subnets) if net.overlaps(pool)]
        if ni.vpn.remote in pool:
            found.append(problem(loc, "spec.vpn.remote", f"{ni.vpn.remote} is inside {inside}"))
    return found


def credential_files(ni: NetworkInstance) -> list[tuple[str, str]]:
    """(field path, file) of each VPN credential the supervisor reads."""
    if ni.vpn is None:
        return []
    auth = ni.vpn.auth
    if isinstance(auth, CertAuth):
        return [("spec.vpn.auth.cert.certFile", auth.cert_file),
                ("spec.vpn.auth.cert.keyFile", auth.key_file),
                ("spec.vpn.auth.cert.caFile", auth.ca_file)]
    return [("spec.vpn.auth.psk.secretFile", auth.secret_file)]


def inside_dir(path: str, directory: str) -> bool:
    """Whether `path` names something below `directory`, lexically ('..' resolved)."""
    base = os.path.normpath(directory)
    norm = os.path.normpath(path)
    return norm != base and os.path.commonpath([norm, base]) == base


def _secret_problems(loc: Located, config: SupervisorConfig) -> list[Problem]:
    return [problem(loc, path, f"{file} is outside the supervisor's secretsDir "
                               f"{config.secrets_dir}: keep VPN credentials there")
            for path, file in credential_files(loc.ni)
            if not inside_dir(file, config.secrets_dir)]


def _capacity_problems(nis: list[Located], config: SupervisorConfig) -> list[Problem]:
    linked = [loc for loc in nis if loc.ni.uplink is not None]
    size = transit_capacity(config)
    if len(linked) <= size:
        return []
    first = linked[size]  # new NIs come last: the first that does not fit
    return [problem(first, "spec.uplink",
                    f"{len(linked)} NIs have an uplink, but the supervisor's transitPool "
                    f"{config.transit_pool} has {size} /30 slots, one for each: enlarge "
                    f"transitPool or remove NIs")]
