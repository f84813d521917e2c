"""CLI commands that talk to the supervisor: apply, delete, status, inspect, attach."""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import TYPE_CHECKING, Any

from runner.errors import NirunnerError

if TYPE_CHECKING:
    from runner.api.client import ApiClient


class UserError(NirunnerError):
    """Something the user can fix; printed without a traceback."""


def read_documents(paths: list[str]) -> list[tuple[str, str]]:
    """(source, text) of each file; a directory gives its *.yaml and *.yml, sorted;
    "-" is stdin. Through the model's reader: a file that is too large, not UTF-8 or
    has control characters is refused here, with the same problems as `validate`."""
    from runner.model.errors import ManifestError
    from runner.model.reader import read_paths

    texts, problems = read_paths(paths)
    if problems:
        raise ManifestError(problems)
    return [(t.source, t.text) for t in texts]


def _api(args: argparse.Namespace) -> ApiClient:
    from runner.api.client import ApiClient  # gRPC: only for the commands that call

    return ApiClient(args.socket)


def cmd_apply(args: argparse.Namespace) -> int:
    docs = read_documents(args.file)
    with _api(args) as api:
        resp = api.apply(docs, dry_run=args.dry_run, verbose=args.verbose)
    changed = [op for op in resp.ops if not op.startswith("=")]
    for line in resp.ops:
        print(line)
    if not changed:
        print("no changes")
    if resp.ops:
        print()
    for ch in resp.changes:
        action = {"created": "create", "updated": "update", "recreated": "recreate",
                  "deleted": "delete"}.get(ch.action, ch.action) if args.dry_run else ch.action
        print(f"{ch.ni}: {action}{' (' + ch.detail + ')' if ch.detail else ''}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from runner.model.config import load_config
    from runner.model.errors import ManifestError
    from runner.model.manifest import parse_texts, set_problems
    from runner.model.reader import read_paths

    # without the device's config, uplinks, the transit pool and secretsDir go unchecked
    config = load_config(args.config) if args.config else None
    texts, problems = read_paths(args.file)
    located, bad = parse_texts(texts)
    problems += bad + set_problems(located, config)
    if problems:
        raise ManifestError(problems)
    print(f"{len(located)} network instance(s) valid")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with _api(args) as api:
        resp = api.delete(args.names)
    for line in resp.ops:
        print(line)
    if resp.ops:
        print()
    for name in resp.deleted:
        print(f"{name}: deleted")
    return 0


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / (1 << 20):.1f}"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def render_status(sts: list[dict[str, Any]]) -> str:
    rows = [["NAME", "TYPE", "STATE", "UPLINK", "SUBNET", "APPS", "PORTMAPS", "PID",
             "RESTARTS", "MEMORY MiB", "CPU s/LIMIT"]]
    notes = []
    for s in sts:
        u = s["usage"]
        rows.append([
            s["name"], s["type"], s["state"], s["uplink"] or "(air-gapped)", _subnet(s),
            str(len(s["apps"])), str(len(s["portMaps"])), str(s["task"]["pid"] or "-"),
            str(s["task"]["restarts"]),
            f"{_mib(u.get('memory'))}/{_mib(u['memoryLimit'])}",
            f"{u.get('cpuSeconds', '-')}/{u['cpuLimit']}",
        ])
        if s["reason"]:
            notes.append(f"{s['name']}: {s['state']}: {s['reason']}")
    out = table(rows)
    if any(s.get("vpn") for s in sts):
        out += "\n\nVPN\n" + _vpn_table(sts)
    if len(sts) == 1:
        out += "\n" + _details(sts[0])
    return out + ("\n\n" + "\n".join(notes) if notes else "")


def _subnet(s: dict[str, Any]) -> str:
    """A switch NI has no subnet of its own: the uplink's segment, or VLAN N of it."""
    if s["type"] != "switch":
        return str(s["subnet"])
    return f"vlan {s['vlan']}" if s.get("vlan") else "(segment)" if s["uplink"] else "(L2)"


def _ago(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _vpn_table(sts: list[dict[str, Any]]) -> str:
    """Per VPN NI: IKE and CHILD SA state, since when, traffic, the last error."""
    rows = [["NAME", "REMOTE", "IKE SA", "CHILD SA", "ESTABLISHED", "IN", "OUT",
             "LAST ERROR"]]
    for s in sts:
        v = s.get("vpn")
        if not v:
            continue
        ike, child, err = v["ike"], v["child"], v.get("lastError")
        rows.append([
            s["name"], v["remote"], ike["state"], child["state"],
            _ago(ike.get("establishedSeconds")),
            f"{_size(child.get('bytesIn', 0))}/{child.get('packetsIn', 0)} pkts",
            f"{_size(child.get('bytesOut', 0))}/{child.get('packetsOut', 0)} pkts",
            err["message"] if err else "-",
        ])
    return table(rows)


def _vpn_details(v: dict[str, Any]) -> str:
    ike, child = v["ike"], v["child"]
    lines = [f"VPN {v['backend']} to {v['remote']}: charon {v['charon']}"]
    if ike.get("localHost"):
        nat = ", NAT-T" if ike.get("natTraversal") else ""
        lines.append(f"  IKE {ike['state']} {ike['localHost']} [{ike['localId']}] <-> "
                     f"{ike['remoteHost']} [{ike['remoteId']}]{nat}")
    if child.get("localTs"):
        lines.append(f"  CHILD {child['state']} {child['mode']} "
                     f"{', '.join(child['localTs'])} === {', '.join(child['remoteTs'])}")
    err = v.get("lastError")
    if err:
        lines.append(f"  last error ({_ago(int(time.time()) - err['time'])}): "
                     f"{err['message']} ({err['detail']})")
    return "\n".join(lines)


def _details(s: dict[str, Any]) -> str:
    parts = []
    if s["apps"] and s["type"] == "switch":  # as the NI's ports learned them
        parts.append("\nAPPS\n" + table([["IP", "MAC", "LEARNED FROM", "PORT", "HOSTNAME"]] + [
            [a["ip"] or "-", a["mac"], {"dhcp": "DHCP ACK", "seen": "ARP"}.get(a["source"], "-"),
             a["port"], a["hostname"] or "-"] for a in s["apps"]]))
    elif s["apps"]:
        parts.append("\nAPPS\n" + table([["IP", "MAC", "HOSTNAME"]] + [
            [a["ip"], a["mac"], a["hostname"] or "-"] for a in s["apps"]]))
    if s["portMaps"]:
        parts.append("\nPORT MAPS\n" + table([["NAME", "PROTO", "UPLINK PORT", "TARGET"]] + [
            [p["name"], p["protocol"], str(p["uplinkPort"]),
             f"{p['target']} ({p['targetIp']}):{p['targetPort']}"] for p in s["portMaps"]]))
    if s.get("attached"):
        parts.append("\nATTACHED\n" + table(
            [["KIND", "WHAT", "IFNAME", "MAC", "PORT", "ADDRESS", "PORT MAPPINGS"]] + [
                [a.get("kind", "netns"), _attached_what(a), a["ifname"], a["mac"],
                 a["hostIfname"], a.get("address") or "-",
                 ", ".join(a.get("portMappings") or []) or "-"] for a in s["attached"]]))
    return "\n".join(parts)


def _attached_what(a: dict[str, Any]) -> str:
    if a.get("kind") == "cni":
        return f"container {a['containerId'][:12]} ({a['network']})"
    if a.get("kind") == "tap":
        return "tap (device interface)"
    return a["netns"]


def cmd_status(args: argparse.Namespace) -> int:
    with _api(args) as api:
        sts, source = api.status_and_source(args.names)
    if args.json or args.output == "json":
        print(json.dumps(sts, indent=2, sort_keys=True))
    elif args.output == "yaml":
        import yaml

        print(yaml.safe_dump(sts, sort_keys=True), end="")
    else:
        if source:  # the desired state comes from a fleet: from where, and how it is
            print(f"source: {source['summary']}")
            for name, why in sorted(source.get("rejected", {}).items()):
                print(f"  rejected {name}: {why['reason']}")
        print(render_status(sts) if sts else "no network instances")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    with _api(args) as api:
        (s,) = api.status([args.name], detail=True)
    if args.json:
        print(json.dumps(s, indent=2, sort_keys=True))
        return 0
    print(render_status([s]))
    t = s.get("transit")
    seg = s.get("segment")
    if s["type"] == "switch":
        print(f"\nSEGMENT {seg['lower'] if seg else '(air-gapped: br0)'}  MTU {s['mtu']}"
              + (f"  PORTS {' '.join(seg['ports'])}" if seg and seg["ports"] else ""))
    else:
        print(f"\nGATEWAY {s['gateway']}  MTU {s['mtu']}"
              + (f"  TRANSIT {t['device']} ({t['link']}) <-> {t['ni']}" if t else ""))
    print(f"TASK {s['task']['container']} {s['task']['status']} pid {s['task']['pid']}  "
          f"services: " + (", ".join(f"{k} {v}" for k, v in s["services"].items()) or "-"))
    for key, title in (("routes", "ROUTES (NI netns)"), ("deviceRules", "RULES (device)")):
        if s.get(key):
            print(f"\n{title}\n" + "\n".join(s[key]))
    if s.get("vpn"):
        print("\n" + _vpn_details(s["vpn"]))
    items = s.get("items") or []
    if items:
        print("\nITEMS\n" + table([["STATE", "OBJECT", "NOTE"]] + [
            [x["state"], x["object"], x.get("error") or
             (f"waiting for {x['waiting']}" if x.get("waiting") else "")] for x in items]))
    if s.get("appEdge"):
        print(_app_edge(s["appEdge"]))
    if s.get("nft"):
        print("\nNFT (NI netns)\n" + s["nft"].rstrip())
    return 0


def _app_edge(e: dict[str, Any]) -> str:
    """The app ports with their drops (anti-spoofing), and the ACL rules' counters."""
    out = []
    if e.get("ports"):
        out.append("\nAPP PORTS (anti-spoofing)\n" + table([["PORT", "APP", "MAC", "DROPS"]] + [
            [p["port"], p["app"] or "-", p["mac"],
             ", ".join(f"{case} {n}" for case, n in sorted(p["drops"].items())) or "-"]
            for p in e["ports"]]))
    if e.get("rules"):
        out.append("\nACL RULES\n" + table([["RULE", "PACKETS", "BYTES"]] + [
            [label, str(c["packets"]), _size(c["bytes"])]
            for label, c in sorted(e["rules"].items())]))
    c = e.get("collector")
    if c:
        out.append(f"\nFLOW LOG {'on' if e.get('flowLog') else 'off (host names only)'}: "
                   f"{c['records']} records, {c['lost']} overruns")
    if e.get("followError"):
        out.append(f"leases and flow log: {e['followError']}")
    return "\n".join(out)


def cmd_attach(args: argparse.Namespace) -> int:
    if args.interface:
        if args.mac or args.hostname or args.ifname != "eth0":
            raise UserError("--interface takes the interface as it is: no --ifname, --mac "
                            "or --hostname")
        with _api(args) as api:
            a = api.attach_interface(args.name, args.interface)
        print(f"attached {args.interface} (mac {a.mac}) to {args.name} as {a.host_ifname}")
        return 0
    with _api(args) as api:
        r = api.attach(args.name, os.path.abspath(args.netns), args.ifname, args.mac or "",
                       args.hostname or "", args.app or "")
    app = f" as app {args.app}" if args.app else ""
    print(f"attached {args.netns} {args.ifname} (mac {r.mac}){app} to {args.name} via "
          f"{r.host_ifname}")
    return 0


def cmd_detach(args: argparse.Namespace) -> int:
    if args.interface:
        with _api(args) as api:
            if not api.detach_interface(args.name, args.interface):
                raise UserError(f"{args.interface} is not attached to NI {args.name}")
        print(f"detached {args.interface} from {args.name}: back in the device netns")
        return 0
    with _api(args) as api:
        api.detach(args.name, os.path.abspath(args.netns), args.ifname)
    print(f"detached {args.netns} {args.ifname} from {args.name}")
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    import datetime as dt

    with _api(args) as api:
        for e in api.events(follow=args.follow):
            when = dt.datetime.fromtimestamp(e.time).strftime("%Y-%m-%d %H:%M:%S")
            fields = json.loads(e.fields_json or "{}")
            extra = " ".join(f"{k}={v}" for k, v in sorted(fields.items()))
            who = f" {e.ni}:" if e.ni else ""
            print(f"{when} {e.level:<7} {e.kind}{who} {e.message}"
                  f"{'  ' + extra if extra else ''}", flush=True)
    return 0


def cmd_supervise(args: argparse.Namespace) -> int:
    from runner.api.server import serve
    from runner.model.config import load_config
    from runner.supervisor import logformat, malloc

    malloc.limit_arenas()
    config = load_config(args.config)
    logformat.setup(args.log_format, args.verbose)
    return serve(config, args.config)


def add_commands(sub: Any) -> None:
    def api_cmd(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        # also a top-level option (its default, from env, lives there): given here, it wins
        p.add_argument("--socket", default=argparse.SUPPRESS,
                       help="the supervisor's API socket (env NIRUNNER_SOCKET)")
        return p

    p = sub.add_parser("supervise", help="run the supervisor daemon")
    p.add_argument("--config", required=True, help="the supervisor's config file (YAML)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--log-format", choices=["auto", "text", "journal", "json"], default="auto",
                   help="auto: journal under systemd (no timestamps, <N> priority "
                   "prefixes), else text; json: JSON lines")
    p.set_defaults(func=cmd_supervise, daemon=True)  # leaves the normal way (runner.exit)

    p = sub.add_parser("validate", help="check manifests without applying them")
    p.add_argument("-f", "--file", action="append", required=True,
                   help="file or directory; - for stdin")
    p.add_argument("--config", help="the supervisor's config, to check uplinks, the transit "
                                    "pool and secretsDir too")
    p.set_defaults(func=cmd_validate)

    p = api_cmd("apply", "apply manifests (all or nothing)")
    p.add_argument("-f", "--file", action="append", required=True,
                   help="file or directory; - for stdin")
    p.add_argument("--dry-run", action="store_true", help="show what would change")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also list what stays as it is (= lines)")
    p.set_defaults(func=cmd_apply)

    p = api_cmd("delete", "delete network instances")
    p.add_argument("names", nargs="+")
    p.set_defaults(func=cmd_delete)

    p = api_cmd("status", "show network instances")
    p.add_argument("names", nargs="*")
    p.add_argument("--json", action="store_true")
    p.add_argument("-o", "--output", choices=["table", "yaml", "json"], default="table")
    p.set_defaults(func=cmd_status)

    p = api_cmd("inspect", "show one network instance in detail")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)

    p = api_cmd("events", "show the supervisor's events (NI created, task restarted, ...)")
    p.add_argument("-f", "--follow", action="store_true", help="keep showing new events")
    p.set_defaults(func=cmd_events)

    p = api_cmd("attach", "plug an app's network namespace, or a VM's tap, into an NI")
    p.add_argument("name")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--netns", help="path of the app's netns")
    what.add_argument("--interface", help="a tap of the device netns, taken into the NI's bridge")
    p.add_argument("--ifname", default="eth0")
    p.add_argument("--mac")
    p.add_argument("--hostname")
    p.add_argument("--app", help="a declared app of the NI (spec.apps): its MAC, its name")
    p.set_defaults(func=cmd_attach)

    p = api_cmd("detach", "unplug an app's network namespace, or give a tap back")
    p.add_argument("name")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--netns")
    what.add_argument("--interface", help="a tap taken with attach --interface")
    p.add_argument("--ifname", default="eth0")
    p.set_defaults(func=cmd_detach)
