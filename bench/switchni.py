"""Switch NIs (issue 16): how an uplink's L2 segment gets into an NI, built by hand and measured.

    python -m bench.switchni [--rounds N] [--seconds S] [--only eve,macvlan,passthru]
                             [--json FILE] [--out FILE] [--supervisor-log FILE]

Root. The lab: runner.lab.topology's device (eth0, eth1) and wan router, eth1's link
made a LAN (Lab.add_segment: a DHCP server for 203.0.113.100-149, a segment host
203.0.113.20), a private containerd and the supervisor running one local NI on eth1
with a port map (eth1 203.0.113.2:8080 -> its app :80). Each candidate is built by
hand (ip, sysctl, nft), checked on real traffic, measured, and removed again:

  eve       EVE's way: eth1 is renamed k<eth1> (a live rename), a bridge named eth1
            with eth1's MAC takes it as a port and takes over the device's addresses
            and routes; a veth from that bridge into the switch NI's br0; apps on br0.
  macvlan   per app, a macvlan of eth1 (bridge mode) with the app's MAC, in the switch
            NI, cross-connected to the app's veth by nft netdev `fwd` in the port table
            runner.render.switch renders (no bridge: two macvlans of one lower on one
            bridge are a loop); the device reaches its
            apps through one macvlan "shim" of eth1 that carries eth1's address as /32,
            with host routes to the apps' learned IPs and strict rp_filter (so it
            answers ARP for those apps only, not for the segment).
  passthru  a passthru macvlan of eth1 in an NI: shown to take eth1's unicast away.

For each: the times of every step; four TCP flows held across create and delete
(the device to the segment host and to its eth1 gateway, the local NI's app to the
inet host through eth1, the segment host through the port map) with their longest
gap; the app's lease and what a segment host sees of it; the app through the local
NI's port map on eth1's address; what the app (and, to compare, the segment host) can
reach of the device netns, the transit links and the local NI, without and with an
input guard; eth1's addresses, routes, link and sysctls before and after; iperf3 app
-> segment host against the same mechanism with the app plugged straight in (floor)
and the device's own path. Everything is removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.lab.topology import (
    INET_IP,
    SEGMENT_DHCP_RANGE,
    SEGMENT_HOST_IP,
    UPLINKS,
    HeldFlow,
    Lab,
    LabError,
    sh,
    wait_for,
)
from runner.model.types import SupervisorConfig, Uplink
from runner.plan.facts import Facts
from runner.plan.switch import SwitchApp, SwitchSpec, plan_switch
from runner.render import switch as render_switch

UPLINK = "eth1"
UPLINK_TABLE = 1001  # nirunner's route table of eth1 (the second uplink in the lab config)
DEV_IP = UPLINKS[UPLINK][0].split("/")[0]
GW_IP = UPLINKS[UPLINK][1].split("/")[0]
LOC_APP_MAC = "02:00:00:00:0d:10"
SW_APP_MAC = "02:00:00:00:0e:10"
FLOOR_MAC = "02:00:00:00:0e:20"
SHIM = "swsh1"
SHIM_MAC = "02:00:00:00:0e:01"
NI_BRIDGE_MAC = "02:00:00:00:0e:02"
SERVE_SECONDS = 3600
GUARD_TABLE = "swguard"
REFERENCE = "reference: wan router -> segment host"


def _ms(t0: float) -> float:
    return round((time.monotonic() - t0) * 1000, 1)


def batch(netns: str, lines: list[str]) -> None:
    sh("ip", "-batch", "-", netns=netns, input="\n".join(lines) + "\n")


def nft(netns: str, text: str) -> None:
    sh("nft", "-f", "-", netns=netns, input=text)


def jcmd(netns: str, *cmd: str) -> Any:
    return json.loads(sh(*cmd, netns=netns).stdout or "[]")


# -- what must not change on the uplink ---------------------------------------------------

SYSCTLS = ("rp_filter", "accept_local", "arp_ignore", "arp_announce", "forwarding",
           "proxy_arp")


def snapshot(dev: str, ifname: str) -> dict[str, Any]:
    link = jcmd(dev, "ip", "-j", "-d", "link", "show", "dev", ifname)[0]
    addrs = jcmd(dev, "ip", "-j", "-4", "addr", "show", "dev", ifname)[0]["addr_info"]
    routes = [r for r in jcmd(dev, "ip", "-j", "-4", "route", "show", "table", "all")
              if r.get("dev") == ifname]
    conf = Path("/proc/sys/net/ipv4/conf") / ifname
    sysctls = sh("sh", "-c", " ".join(f"cat {conf / k};" for k in SYSCTLS),
                 netns=dev).stdout.split()
    return {
        "link": {k: link.get(k) for k in ("ifindex", "ifname", "address", "mtu", "operstate",
                                          "flags", "master", "promiscuity")},
        "addresses": sorted(f"{a['local']}/{a['prefixlen']}" for a in addrs),
        "routes": sorted(json.dumps({k: r.get(k) for k in (
            "table", "type", "dst", "gateway", "metric", "protocol", "prefsrc", "scope")},
            sort_keys=True) for r in routes),
        "sysctls": dict(zip(SYSCTLS, sysctls, strict=True)),
    }


def snapshot_diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    out = []
    for part in ("link", "addresses", "routes", "sysctls"):
        if before[part] != after[part]:
            out.append(f"{part}: {before[part]} -> {after[part]}")
    return out


# -- flows held across a change -------------------------------------------------------------

def start_watch(netns: str, name: str, host: str, port: int) -> HeldFlow:
    return HeldFlow.start(name, netns, host, port)


def stop_watch(w: HeldFlow) -> dict[str, Any]:
    return w.result()


# -- the lab ----------------------------------------------------------------------------------

class SwitchLab:
    def __init__(self, prefix: str, image_archive: str) -> None:
        self.lab = Lab(prefix, image_archive=image_archive)
        self.prefix = prefix
        self.loc = f"{prefix}loc"  # NI names are machine-wide (runc state): unique per run
        self.dev = self.lab.device
        self.seg = ""
        self.locapp = ""
        self.loc_transit = ""  # the local NI's transit address (its port map's DNAT target)

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def build(self) -> None:
        lab = self.lab
        lab.build()
        self.seg = lab.add_segment()
        lab.start_containerd()
        lab.write_config(lab.image)
        lab.start_supervisor()
        for netns, port, name in ((self.seg, 7000, "seg"), (lab.wan, 7001, "gw"),
                                  (lab.inet, 7000, "inet"), (self.dev, 7002, "device")):
            self.serve(netns, port, name)
        lab.spawn(self.seg, "iperf3", "-s", "-p", "5201")
        manifest = self.lab.base / "loc.yaml"
        manifest.write_text(
            "apiVersion: nirunner/v1\nkind: NetworkInstance\n"
            f"metadata: {{name: {self.loc}}}\n"
            f"spec:\n  type: local\n  uplink: {UPLINK}\n  subnet: 10.1.0.0/24\n"
            f"  dns: {{upstream: [{INET_IP}]}}\n"
            f"  dhcp: {{reservations: [{{name: web, mac: '{LOC_APP_MAC}', ip: 10.1.0.10}}]}}\n"
            "  portMaps: [{name: web, protocol: tcp, uplinkPort: 8080, target: web, "
            "targetPort: 80}]\n")
        lab.cli("apply", "-f", str(manifest))
        self.locapp = lab.app("locapp", self.loc, LOC_APP_MAC)
        lab.dhcp(self.locapp, "web")
        self.serve(self.locapp, 80, "web")
        addr = jcmd(self.dev, "ip", "-j", "-4", "addr", "show")
        transit = [a["local"] for link in addr for a in link["addr_info"]
                   if a["local"].startswith("169.254.")]
        if len(transit) != 1:
            raise LabError(f"expected one transit link in the device netns, found {transit}")
        # the NI end of a /30 is the device end + 1
        last = int(transit[0].rsplit(".", 1)[1]) + 1
        self.loc_transit = transit[0].rsplit(".", 1)[0] + f".{last}"

    def serve(self, netns: str, port: int, name: str) -> None:
        self.lab.spawn(netns, sys.executable, "-m", "runner.lab.net", "serve", "both",
                       str(port), "--name", name, "--seconds", str(SERVE_SECONDS))
        wait_for(lambda: bool(sh("ss", "-Hlnt", f"sport = :{port}", netns=netns,
                                 check=False).stdout.strip()), 10, f"server {netns}:{port}")

    def app_netns(self, name: str) -> str:
        n = self.ns(name)
        sh("ip", "netns", "add", n)
        sh("ip", "link", "set", "lo", "up", netns=n)
        return n

    def teardown(self) -> None:
        self.lab.teardown()


# -- the candidates -----------------------------------------------------------------------------

class Mechanism:
    """One way to put eth1's segment into a switch NI, built by hand."""

    name = ""

    def __init__(self, sl: SwitchLab) -> None:
        self.sl = sl
        self.dev = sl.dev
        self.ni = sl.ns("sw")  # the switch NI's netns

    def create_uplink(self) -> None: ...
    def delete_uplink(self) -> None: ...
    def create_ni(self) -> None: ...
    def plug(self, app: str, mac: str) -> None: ...
    def learned(self, ip: str) -> None:
        """The app's IP is known (the NI learned it): what the device side needs."""
    def unlearned(self, ip: str) -> None: ...
    def refresh(self) -> str:
        """Redo what the supervisor may have undone meanwhile; a note if it did."""
        return ""

    def floor(self, netns: str, mac: str) -> None:
        """Plug netns straight into the mechanism (no NI in between)."""
    def unfloor(self, netns: str) -> None: ...

    def delete_ni(self) -> None:
        sh("ip", "netns", "del", self.ni, check=False)

    def learned_in_ni(self) -> dict[str, str]:
        """MAC -> IP as the NI learned it (empty when the mechanism learns nothing)."""
        return {}


def _wait_gone(netns: str, ifname: str) -> None:
    # netns teardown is asynchronous: the device end of a veth vanishes a little later
    wait_for(lambda: sh("ip", "link", "show", "dev", ifname, netns=netns,
                        check=False).returncode != 0, 10, f"{ifname} gone")


class Eve(Mechanism):
    name = "eve"
    KEPT = "k" + UPLINK  # the physical uplink, renamed, as EVE's keth<N>
    TMP = "swbtmp"
    VETH = "swv1"  # device end of the NI's veth, a port of the uplink bridge
    FLOOR_VETH = "swfl1"

    def create_uplink(self) -> None:
        link = jcmd(self.dev, "ip", "-j", "link", "show", "dev", UPLINK)[0]
        addrs = jcmd(self.dev, "ip", "-j", "-4", "addr", "show", "dev", UPLINK)[0]["addr_info"]
        routes = [r for r in jcmd(self.dev, "ip", "-j", "-4", "route", "show", "table", "all")
                  if r.get("dev") == UPLINK and r.get("protocol") not in ("kernel", "188")
                  and r.get("type", "unicast") == "unicast"]
        conf = f"/proc/sys/net/ipv4/conf/{UPLINK}"
        sysctls = {k: sh("cat", f"{conf}/{k}", netns=self.dev).stdout.strip() for k in SYSCTLS}
        batch(self.dev, [
            f"link add {self.TMP} address {link['address']} mtu {link['mtu']} type bridge",
            f"link set {self.TMP} up",
            f"link set {UPLINK} name {self.KEPT}",
            f"link set {self.TMP} name {UPLINK}",
            f"link set {self.KEPT} master {UPLINK}"])
        # Until linkwatch has seen the bridge's carrier (up to a second later) it sends
        # nothing: moving the addresses at once cost 0.8-1 s outages. Meanwhile the
        # device still sends through the port and receives through the bridge.
        wait_for(lambda: jcmd(self.dev, "ip", "-j", "link", "show", "dev", UPLINK)[0]
                 .get("operstate") == "UP", 5, "the uplink bridge's carrier", step=0.005)
        lines = [f"addr add {a['local']}/{a['prefixlen']} dev {UPLINK}" for a in addrs]
        lines += [_route("replace", r, UPLINK) for r in routes]
        # secondaries first: deleting a primary address takes its secondaries with it
        lines += [f"addr del {a['local']}/{a['prefixlen']} dev {self.KEPT}"
                  for a in reversed(addrs)]
        batch(self.dev, lines)
        sh("sysctl", "-qw", *(f"net.ipv4.conf.{UPLINK}.{k}={v}" for k, v in sysctls.items()),
           netns=self.dev)
        self._moved = (addrs, routes, sysctls)

    def delete_uplink(self) -> None:
        addrs, routes, sysctls = self._moved
        lines = [f"addr add {a['local']}/{a['prefixlen']} dev {self.KEPT}" for a in addrs]
        lines += [_route("replace", r, self.KEPT) for r in routes]
        lines += [f"link set {self.KEPT} nomaster"]
        lines += [f"addr del {a['local']}/{a['prefixlen']} dev {UPLINK}"
                  for a in reversed(addrs)]
        lines += [f"link set {UPLINK} name {self.TMP}",
                  f"link set {self.KEPT} name {UPLINK}",
                  f"link del {self.TMP}"]
        batch(self.dev, lines)
        sh("sysctl", "-qw", *(f"net.ipv4.conf.{UPLINK}.{k}={v}" for k, v in sysctls.items()),
           netns=self.dev)

    def create_ni(self) -> None:
        sh("ip", "netns", "add", self.ni)
        mtu = _mtu(self.dev)
        batch(self.dev, [f"link add {self.VETH} mtu {mtu} type veth peer name uplink0 "
                         f"mtu {mtu} netns {self.ni}",
                         f"link set {self.VETH} master {UPLINK}",
                         f"link set {self.VETH} up"])
        batch(self.ni, ["link set lo up",
                        f"link add br0 address {NI_BRIDGE_MAC} mtu {mtu} type bridge",
                        "link set uplink0 master br0", "link set uplink0 up",
                        "link set br0 up"])

    def plug(self, app: str, mac: str) -> None:
        mtu = _mtu(self.dev)
        batch(self.ni, [f"link add ap1 mtu {mtu} type veth peer name eth0 mtu {mtu} "
                        f"netns {app} address {mac}",
                        "link set ap1 master br0", "link set ap1 up"])
        sh("ip", "link", "set", "eth0", "up", netns=app)

    def delete_ni(self) -> None:
        super().delete_ni()
        _wait_gone(self.dev, self.VETH)

    def floor(self, netns: str, mac: str) -> None:
        batch(self.dev, [f"link add {self.FLOOR_VETH} mtu {_mtu(self.dev)} type veth peer "
                         f"name eth0 netns {netns} address {mac}",
                         f"link set {self.FLOOR_VETH} master {UPLINK}",
                         f"link set {self.FLOOR_VETH} up"])

    def unfloor(self, netns: str) -> None:
        sh("ip", "link", "del", self.FLOOR_VETH, netns=self.dev, check=False)


def _route(op: str, r: dict[str, Any], dev: str) -> str:
    words = [f"route {op}", r["dst"]]
    if r.get("gateway"):
        words.append(f"via {r['gateway']}")
    words.append(f"dev {dev}")
    if r.get("metric") is not None:
        words.append(f"metric {r['metric']}")
    if r.get("table") not in (None, "main"):
        words.append(f"table {r['table']}")
    if r.get("protocol"):
        words.append(f"proto {r['protocol']}")
    return " ".join(words)


def _mtu(dev: str) -> int:
    return int(jcmd(dev, "ip", "-j", "link", "show", "dev", UPLINK)[0]["mtu"])


def bare_table(app_if: str, port_if: str) -> str:
    """The cross-connect alone, in the port's table: what the port table's rules cost."""
    return (f"table netdev {app_if} {{}}\ndelete table netdev {app_if}\n"
            f"table netdev {app_if} {{\n"
            f"\tchain from_app {{\n\t\ttype filter hook ingress device \"{app_if}\" "
            f"priority filter; policy accept;\n\t\tfwd to \"{port_if}\";\n\t}}\n"
            f"\tchain to_app {{\n\t\ttype filter hook ingress device \"{port_if}\" "
            f"priority filter; policy accept;\n\t\tfwd to \"{app_if}\";\n\t}}\n}}\n")


class Macvlan(Mechanism):
    name = "macvlan"
    FLOOR_MV = "swflm"

    def create_uplink(self) -> None:
        addrs = jcmd(self.dev, "ip", "-j", "-4", "addr", "show", "dev", UPLINK)[0]["addr_info"]
        lines = [f"link add {SHIM} link {UPLINK} address {SHIM_MAC} type macvlan mode bridge"]
        lines += [f"addr add {a['local']}/32 dev {SHIM}" for a in addrs]
        lines += [f"link set {SHIM} up"]
        batch(self.dev, lines)
        # strict: the shim answers ARP and takes packets only from hosts routed to it
        # (the learned apps), never from the segment (no ARP flux with eth1)
        sh("sysctl", "-qw", f"net.ipv4.conf.{SHIM}.rp_filter=1", netns=self.dev)
        self._shim_in_nirunner()

    def _shim_in_nirunner(self) -> None:
        """What the device plan will do: the shim is one more interface of the uplink in
        table inet nirunner (its set of uplink interfaces, the uplink's port-map DNATs).
        By hand here, so the supervisor's next apply of its table drops it again."""
        text = sh("nft", "list", "chain", "inet", "nirunner", "prerouting", netns=self.dev).stdout
        rules = [re.sub(r'iifname (\{[^}]*\}|"[^"]*")', f'iifname "{SHIM}"', line.strip())
                 for line in text.splitlines() if " dnat " in line
                 and f'"{UPLINK}"' in line and f'"{SHIM}"' not in line]
        if not rules:
            raise LabError("no port-map DNAT of eth1 in table inet nirunner")
        pairs = sh("nft", "list", "set", "inet", "nirunner", "transit_uplink",
                   netns=self.dev).stdout
        transits = re.findall(rf'"([^"]+)" \. "{UPLINK}"', pairs)
        nft(self.dev, f'add element inet nirunner uplink_ifs {{ "{SHIM}" }}\n'
            + "".join(f'add element inet nirunner transit_uplink {{ "{t}" . "{SHIM}" }}\n'
                      for t in transits)
            + "".join(f"add rule inet nirunner prerouting {r}\n" for r in rules))

    def _shim_in_set(self) -> bool:
        return f'"{SHIM}"' in sh("nft", "list", "set", "inet", "nirunner", "uplink_ifs",
                                 netns=self.dev).stdout

    def refresh(self) -> str:
        if self._shim_in_set():
            return ""
        self._shim_in_nirunner()
        return "the supervisor had re-applied table inet nirunner: shim added again"

    def delete_uplink(self) -> None:
        sh("ip", "link", "del", SHIM, netns=self.dev)
        text = sh("nft", "-a", "list", "chain", "inet", "nirunner", "prerouting",
                  netns=self.dev).stdout
        handles = re.findall(rf'iifname "{SHIM}".*# handle (\d+)', text)
        cmds = "".join(f"delete rule inet nirunner prerouting handle {h}\n" for h in handles)
        if self._shim_in_set():
            cmds += f'delete element inet nirunner uplink_ifs {{ "{SHIM}" }}\n'
            pairs = sh("nft", "list", "set", "inet", "nirunner", "transit_uplink",
                       netns=self.dev).stdout
            cmds += "".join(
                f'delete element inet nirunner transit_uplink {{ "{t}" . "{SHIM}" }}\n'
                for t in re.findall(rf'"([^"]+)" \. "{SHIM}"', pairs))
        if cmds:
            nft(self.dev, cmds)

    def create_ni(self) -> None:
        sh("ip", "netns", "add", self.ni)
        sh("ip", "link", "set", "lo", "up", netns=self.ni)

    def plug(self, app: str, mac: str) -> None:
        """The port as runner.plan.switch plans it and runner.render.switch renders its
        table: the design measured, not a copy of it."""
        sw = plan_switch(SwitchSpec(self.ni.replace("-", ""), UPLINK),
                         [SwitchApp(f"{self.ni}/app", mac)],
                         SupervisorConfig(uplinks=(Uplink("eth0", "eth0"),
                                                   Uplink(UPLINK, UPLINK))), Facts())
        port = sw.ports[0]
        assert port.port_if is not None
        self.port = port
        mtu = _mtu(self.dev)
        sh("ip", "link", "add", port.port_if, "link", UPLINK, "netns", self.ni, "address", mac,
           "type", "macvlan", "mode", "bridge", netns=self.dev)
        batch(self.ni, [f"link set {port.port_if} allmulticast on",
                        f"link set {port.port_if} up",
                        f"link add {port.app_if} mtu {mtu} type veth peer name eth0 mtu {mtu} "
                        f"netns {app} address {mac}",
                        f"link set {port.app_if} up"])
        sh("ip", "link", "set", "eth0", "up", netns=app)
        self.port_table = render_switch.port_table(sw, port)
        nft(self.ni, self.port_table)

    def learned(self, ip: str) -> None:
        batch(self.dev, [f"route replace {ip}/32 dev {SHIM}",
                         f"route replace {ip}/32 dev {SHIM} table {UPLINK_TABLE}"])

    def unlearned(self, ip: str) -> None:
        batch(self.dev, [f"route del {ip}/32 dev {SHIM}",
                         f"route del {ip}/32 dev {SHIM} table {UPLINK_TABLE}"])

    def learned_in_ni(self) -> dict[str, str]:
        text = sh("nft", "-j", "list", "sets", netns=self.ni).stdout
        return {f"{b.mac} ({b.source})": str(b.ip)
                for bs in render_switch.parse_learned(text).values() for b in bs}

    def floor(self, netns: str, mac: str) -> None:
        sh("ip", "link", "add", "eth0", "link", UPLINK, "netns", netns, "address", mac,
           "type", "macvlan", "mode", "bridge", netns=self.dev)

    def unfloor(self, netns: str) -> None:
        sh("ip", "link", "del", "eth0", netns=netns, check=False)


# -- one candidate, end to end ------------------------------------------------------------------

@dataclass
class Result:
    name: str
    times_ms: dict[str, float] = field(default_factory=dict)
    flows: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    reach: dict[str, dict[str, str]] = field(default_factory=dict)  # who -> target -> result
    snapshot_during: dict[str, Any] = field(default_factory=dict)
    uplink_changed: list[str] = field(default_factory=list)  # after delete vs before
    throughput: dict[str, list[float]] = field(default_factory=dict)  # bits/s
    notes: list[str] = field(default_factory=list)


@contextmanager
def timed(res: Result, key: str) -> Iterator[None]:
    t0 = time.monotonic()
    yield
    res.times_ms[key] = _ms(t0)


def connect(netns: str, proto: str, host: str, port: int) -> str:
    r = sh(sys.executable, "-m", "runner.lab.net", "connect", proto, host, str(port),
           "--timeout", "1.5", netns=netns, check=False, timeout=15)
    return r.stdout.strip() if r.returncode == 0 else "no answer"


def ping(netns: str, host: str) -> str:
    ok = sh("ping", "-c1", "-W1", host, netns=netns, check=False).returncode == 0
    return "answered" if ok else "no answer"


def arp_macs(netns: str, ip: str) -> str:
    """The MACs that answer a broadcast ARP request for `ip` (two: ARP flux)."""
    sh("ip", "neigh", "flush", "all", netns=netns, check=False)
    out = sh("busybox", "arping", "-b", "-c", "3", "-w", "3", "-I", "eth0", ip, netns=netns,
             check=False, timeout=10).stdout
    macs = sorted(set(re.findall(r"\[([0-9a-fA-F:]{17})\]", out)))
    return ", ".join(macs) or "nobody"


def reach_matrix(sl: SwitchLab, who: str) -> dict[str, str]:
    """What `who` reaches of the device and the local NI, with routes to them via the
    device's eth1 address (the worst case: a host that routes through the device)."""
    nets = ("169.254.100.0/22", "10.1.0.0/24", "198.51.100.0/24")
    for n in nets:
        sh("ip", "route", "replace", n, "via", DEV_IP, netns=who)
    try:
        out = {}
        for target, port in (("169.254.100.1", 7002), (sl.loc_transit, 80),
                             ("10.1.0.10", 80), ("198.51.100.2", 7002)):
            out[f"{target} tcp"] = connect(who, "tcp", target, port)
            if port == 7002:
                out[f"{target} udp"] = connect(who, "udp", target, port)
            out[f"{target} icmp"] = ping(who, target)
        return out
    finally:
        for n in nets:
            sh("ip", "route", "del", n, netns=who, check=False)


GUARD = f"""table inet {GUARD_TABLE} {{
	chain input {{
		type filter hook input priority filter - 1; policy accept;
		iifname {{ "{UPLINK}", "{SHIM}" }} fib daddr type local ip daddr != {DEV_IP} drop
	}}
}}
"""


def iperf(netns: str, seconds: float) -> float:
    res = subprocess.run(["ip", "netns", "exec", netns, "iperf3", "-c", SEGMENT_HOST_IP,
                          "-p", "5201", "-t", f"{seconds:g}", "-O", "1", "-J"],
                         capture_output=True, text=True, timeout=seconds + 30)
    out = json.loads(res.stdout or "{}")
    if res.returncode != 0 or "error" in out:
        raise LabError(f"iperf3 in {netns}: {out.get('error') or res.stderr.strip()}")
    return float(out["end"]["sum_received"]["bits_per_second"])


class DeviceDhcp:
    """A DHCP client of the device's own on eth1 (busybox udhcpc, as a device's network
    manager would run one): it adds its lease to eth1 (a second address: the server
    answers a renewal to it) and records its events. Does a renewal still work?"""

    def __init__(self, sl: SwitchLab) -> None:
        self.sl = sl
        script = sl.lab.base / "dhcp-event.sh"
        script.write_text('#!/bin/sh\necho "event $1 ${ip:-}"\n'
                          'case "$1" in bound|renew) ip addr replace "$ip/${mask:-24}" '
                          'dev "$interface";; esac\nexit 0\n')
        script.chmod(0o755)
        self.log = sl.lab.base / "device-dhcp.log"
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", sl.dev, "busybox", "udhcpc", "-f", "-i", UPLINK,
             "-s", str(script), "-t", "5", "-T", "1", "-A", "1"],
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
            start_new_session=True)
        wait_for(lambda: "event bound" in self.log.read_text(), 15, "the device's DHCP lease")

    def renew(self) -> str:
        """Ask for a renewal now (a unicast REQUEST); "renewed" or what happened instead."""
        return self._signal_and_wait([signal.SIGUSR1], "event renew", "renewed", 6)

    def rebind(self) -> str:
        """Release and ask again (a DISCOVER on the raw socket, as after a reboot or a
        lost lease); "bound again" or what happened instead."""
        return self._signal_and_wait([signal.SIGUSR2, signal.SIGUSR1], "event bound",
                                     "bound again", 8)

    def _signal_and_wait(self, signals: list[int], event: str, ok: str, timeout: float) -> str:
        n = self.log.read_text().count(event)
        for sig in signals:
            self.proc.send_signal(sig)
            time.sleep(0.2)
        try:
            wait_for(lambda: self.log.read_text().count(event) > n, timeout, event)
            return ok
        except LabError:
            tail = [line for line in self.log.read_text().splitlines() if line][-2:]
            return f"not within {timeout:g} s ({' / '.join(tail)})"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(5)


def idle_watch(sl: SwitchLab, seconds: float = 5) -> Result:
    """The flows with nothing happening: the noise floor of a 'longest gap'."""
    res = Result("idle (no change: the noise floor of the gaps)")
    ws = [start_watch(sl.dev, "device -> segment host", SEGMENT_HOST_IP, 7000),
          start_watch(sl.seg, "segment host -> port map eth1:8080", DEV_IP, 8080)]
    time.sleep(seconds)
    for w in ws:
        res.flows[w.name] = stop_watch(w)
    return res


def run_candidate(sl: SwitchLab, m: Mechanism, rounds: int, seconds: float) -> Result:
    res = Result(m.name)
    dev, seg = sl.dev, sl.seg
    dhcp = DeviceDhcp(sl)
    before = snapshot(dev, UPLINK)
    watches = [start_watch(dev, "device -> segment host", SEGMENT_HOST_IP, 7000),
               start_watch(dev, "device -> eth1 gateway", GW_IP, 7001),
               start_watch(sl.locapp, "local NI app -> inet (NAT via eth1)", INET_IP, 7000),
               start_watch(seg, "segment host -> port map eth1:8080", DEV_IP, 8080)]
    time.sleep(1)
    app = floor_ns = ""
    ip = ""
    try:
        with timed(res, "uplink side created"):
            m.create_uplink()
        with timed(res, "NI created"):
            m.create_ni()
        app = sl.app_netns("swapp")
        with timed(res, "app plugged"):
            m.plug(app, SW_APP_MAC)
        t0 = time.monotonic()
        ip = sl.lab.dhcp(app, "swapp")
        res.times_ms["DHCP lease from the segment"] = _ms(t0)
        res.checks["lease"] = ip
        res.checks["lease in the segment's range"] = _in_range(ip)
        learned = m.learned_in_ni()
        res.checks["learned in the NI (nft sets)"] = learned or "n/a (nothing learns)"
        _note(res, m.refresh())
        res.checks["app -> port map before its lease is routed"] = connect(
            app, "tcp", DEV_IP, 8080)
        m.learned(ip)
        res.checks["segment host's ARP for eth1's address answered by"] = arp_macs(seg, DEV_IP)
        if isinstance(m, Macvlan):
            shim_rpf = f"net.ipv4.conf.{SHIM}.rp_filter"
            sh("sysctl", "-qw", f"{shim_rpf}=0", netns=dev)
            res.checks["... with the shim's rp_filter=0 (shim MAC "
                       f"{SHIM_MAC})"] = arp_macs(seg, DEV_IP)
            sh("sysctl", "-qw", f"{shim_rpf}=1", netns=dev)
            sh("ip", "neigh", "flush", "all", netns=seg, check=False)
        res.snapshot_during = snapshot(dev, UPLINK)
        res.checks["device's own DHCP client on eth1: renewal"] = dhcp.renew()
        res.checks["device's own DHCP client on eth1: release + discover"] = dhcp.rebind()
        res.checks["segment host sees"] = connect(app, "tcp", SEGMENT_HOST_IP, 7000)
        sl.serve(app, 7000, "swapp")
        res.checks["segment host -> app"] = connect(seg, "tcp", ip, 7000)
        _note(res, m.refresh())
        res.checks["app -> port map eth1:8080"] = connect(app, "tcp", DEV_IP, 8080)
        res.checks["local NI app -> app (as to a segment host)"] = connect(
            sl.locapp, "tcp", ip, 7000)
        res.checks["device -> app"] = connect(dev, "tcp", ip, 7000)
        res.checks["app -> eth1 gateway (ping)"] = ping(app, GW_IP)
        _note(res, m.refresh())
        res.reach["app"] = reach_matrix(sl, app)
        res.reach["segment host"] = reach_matrix(sl, seg)
        nft(dev, GUARD)
        res.reach["app, guard"] = reach_matrix(sl, app)
        res.reach["segment host, guard"] = reach_matrix(sl, seg)
        _note(res, m.refresh())
        res.checks["app -> port map, guard"] = connect(app, "tcp", DEV_IP, 8080)
        sh("nft", "delete", "table", "inet", GUARD_TABLE, netns=dev)

        floor_ns = sl.app_netns("swfloor")
        m.floor(floor_ns, FLOOR_MAC)
        batch(floor_ns, ["addr add 203.0.113.90/24 dev eth0", "link set eth0 up"])
        wait_for(lambda: ping(floor_ns, SEGMENT_HOST_IP) == "answered", 10, "floor up")
        brnf = "net.bridge.bridge-nf-call-iptables"

        def sysctl(value: str) -> Callable[[], None]:
            def set_it() -> None:
                sh("sysctl", "-qw", f"{brnf}={value}", netns=dev)
            return set_it

        def nothing() -> None:
            pass

        paths: list[tuple[str, str, Callable[[], None], Callable[[], None]]] = [
            ("app (switch NI)", app, nothing, nothing), ("floor", floor_ns, nothing, nothing),
            ("device", dev, nothing, nothing),
            # not through the device at all: the machine's state in this round, so that
            # candidates measured at different times compare through it
            (REFERENCE, sl.lab.wan, nothing, nothing)]
        if isinstance(m, Eve):
            # bridged frames pass the device netns's inet hooks (br_netfilter, as in every
            # new netns): nirunner's forward chain and conntrack see each app packet
            paths += [("app, device netns bridge-nf-call-iptables=0", app, sysctl("0"),
                       sysctl("1")),
                      ("floor, device netns bridge-nf-call-iptables=0", floor_ns,
                       sysctl("0"), sysctl("1"))]
        if isinstance(m, Macvlan):
            # the port table's rules: their cost alone
            paths.append(("app, port table with nothing but fwd", app,
                          lambda: nft(m.ni, bare_table(m.port.app_if, m.port.port_if or "")),
                          lambda: nft(m.ni, m.port_table)))
        for _ in range(rounds):
            for key, netns, before_run, after_run in paths:
                before_run()
                try:
                    res.throughput.setdefault(key, []).append(iperf(netns, seconds))
                finally:
                    after_run()
        m.unfloor(floor_ns)

        with timed(res, "NI deleted"):
            m.unlearned(ip)
            m.delete_ni()
        with timed(res, "uplink side deleted"):
            m.delete_uplink()
        time.sleep(1)
    finally:
        for w in watches:
            res.flows[w.name] = stop_watch(w)
        dhcp.stop()
        for n in (app, floor_ns):
            if n:
                sh("ip", "netns", "del", n, check=False)
    res.uplink_changed = snapshot_diff(before, snapshot(dev, UPLINK))
    res.checks["local NI app -> inet after"] = connect(sl.locapp, "tcp", INET_IP, 7000)
    res.checks["segment host -> port map after"] = connect(seg, "tcp", DEV_IP, 8080)
    return res


def _note(res: Result, note: str) -> None:
    if note and note not in res.notes:
        res.notes.append(note)


def _in_range(ip: str) -> bool:
    def n(a: str) -> int:
        return int.from_bytes(bytes(int(x) for x in a.split(".")), "big")
    return n(SEGMENT_DHCP_RANGE[0]) <= n(ip) <= n(SEGMENT_DHCP_RANGE[1])


def run_passthru(sl: SwitchLab) -> Result:
    """A passthru macvlan takes the lower's unicast: the device loses eth1 while it exists."""
    res = Result("passthru")
    dev, ni = sl.dev, sl.ns("pt")
    before = snapshot(dev, UPLINK)
    w = start_watch(dev, "device -> segment host", SEGMENT_HOST_IP, 7000)
    time.sleep(1)
    try:
        sh("ip", "netns", "add", ni)
        with timed(res, "passthru macvlan created"):
            sh("ip", "link", "add", "pt1", "link", UPLINK, "netns", ni, "type", "macvlan",
               "mode", "passthru", netns=dev)
            sh("ip", "link", "set", "pt1", "up", netns=ni)
        res.snapshot_during = snapshot(dev, UPLINK)
        res.checks["device -> eth1 gateway (ping) with passthru"] = ping(dev, GW_IP)
        res.checks["a second macvlan (the shim) beside it"] = sh(
            "ip", "link", "add", SHIM, "link", UPLINK, "type", "macvlan", "mode", "bridge",
            netns=dev, check=False).stderr.strip() or "created"
        sh("ip", "link", "del", SHIM, netns=dev, check=False)
        time.sleep(1)
        with timed(res, "passthru macvlan deleted"):
            sh("ip", "netns", "del", ni)
            wait_for(lambda: ping(dev, GW_IP) == "answered", 10, "eth1 back")
        res.checks["device -> eth1 gateway (ping) after"] = ping(dev, GW_IP)
    finally:
        res.flows[w.name] = stop_watch(w)
        sh("ip", "netns", "del", ni, check=False)
    res.uplink_changed = snapshot_diff(before, snapshot(dev, UPLINK))
    return res


# -- report -------------------------------------------------------------------------------------

def report(results: list[Result], meta: dict[str, str]) -> str:
    out = [f"Measured {meta['when']} on {meta['host']}; {meta['rounds']} rounds of "
           f"{meta['seconds']} s iperf3 (one TCP stream, 1 s warm-up). Values in ms unless "
           "stated; throughput median (min-max).", ""]
    for r in results:
        out += [f"### {r.name}", ""]
        out += ["| step | ms |", "|---|---|"]
        out += [f"| {k} | {v:g} |" for k, v in r.times_ms.items()]
        out += ["", "| flow held across create and delete | round trips | longest gap ms "
                "| error |", "|---|---|---|---|"]
        out += [f"| {k} | {v.get('round_trips')} | {v.get('max_gap_ms')} | "
                f"{v.get('error') or ''} |" for k, v in r.flows.items()]
        out += ["", "| check | result |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in r.checks.items()]
        if r.reach:
            whos = list(r.reach)
            out += ["", "| target (routed via eth1's address) | " + " | ".join(whos) + " |",
                    "|---|" + "---|" * len(whos)]
            for t in r.reach[whos[0]]:
                out.append(f"| {t} | " + " | ".join(r.reach[w][t] for w in whos) + " |")
        if r.throughput:
            # paths run one after another in each round: the ratio within a round is what
            # the machine's load (shared, noisy) disturbs least
            out += ["", "| iperf3 to the segment host | Gbit/s, median (min-max) | / floor "
                    "| / reference |", "|---|---|---|---|"]
            for k, v in r.throughput.items():
                out.append(f"| {k} | {statistics.median(v) / 1e9:.2f} ({min(v) / 1e9:.2f}-"
                           f"{max(v) / 1e9:.2f}) | {_ratio(v, r.throughput.get('floor'))} "
                           f"| {_ratio(v, r.throughput.get(REFERENCE))} |")
        during = r.snapshot_during
        if during:
            out += ["", f"eth1 while it existed: link {json.dumps(during['link'])}; "
                    f"addresses {during['addresses']}; routes "
                    + "; ".join(_route_text(x) for x in during["routes"])]
        out += ["", "eth1 after delete vs before: "
                + ("identical (addresses, routes, link, MTU, master, sysctls)"
                   if not r.uplink_changed else "; ".join(r.uplink_changed)), ""]
        out += [f"- {n}" for n in r.notes]
    return "\n".join(out) + "\n"


def _ratio(xs: list[float], refs: list[float] | None) -> str:
    """The median of each round's ratio (paths run one after another in a round: the
    ratio within a round is what the shared machine's load disturbs least)."""
    ratios = [x / f for x, f in zip(xs, refs or [], strict=False) if f]
    return f"{statistics.median(ratios):.2f}x" if ratios else "n/a"


def _route_text(encoded: str) -> str:
    r = json.loads(encoded)
    return " ".join(str(v) for k, v in r.items() if v is not None and k != "scope")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--only", default="eve,macvlan,passthru")
    ap.add_argument("--json")
    ap.add_argument("--out")
    ap.add_argument("--supervisor-log", help="copy the supervisor's log here at the end")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("root needed (network namespaces, containerd)", file=sys.stderr)
        return 2
    from runner.image.build import build_image

    sl = SwitchLab(f"nrsw{uuid.uuid4().hex[:4]}", str(build_image().archive))
    kinds: dict[str, Callable[[], Result]] = {
        "eve": lambda: run_candidate(sl, Eve(sl), a.rounds, a.seconds),
        "macvlan": lambda: run_candidate(sl, Macvlan(sl), a.rounds, a.seconds),
        "passthru": lambda: run_passthru(sl),
    }
    results: list[Result] = []
    try:
        print(f"building the lab {sl.prefix}", file=sys.stderr)
        sl.build()
        results.append(idle_watch(sl))
        for k in a.only.split(","):
            print(f"candidate {k}", file=sys.stderr)
            try:
                results.append(kinds[k]())
            except Exception as e:  # the others still run; the report says what failed
                print(f"candidate {k} failed: {e!r}", file=sys.stderr)
                results.append(Result(k, notes=[f"FAILED: {e}"]))
    finally:
        if a.supervisor_log:
            log = sl.lab.base / "supervisor.log"
            if log.exists():
                Path(a.supervisor_log).write_bytes(log.read_bytes())
        sl.teardown()
    meta = {"when": time.strftime("%Y-%m-%d %H:%M"),
            "host": f"kernel {os.uname().release}, {os.cpu_count()} cores, load "
                    f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
            "rounds": str(a.rounds), "seconds": f"{a.seconds:g}"}
    text = report(results, meta)
    if a.json:
        Path(a.json).write_text(json.dumps({"meta": meta, "results": [r.__dict__ for r in results]},
                                           indent=1))
    if a.out:
        Path(a.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
