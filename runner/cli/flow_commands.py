"""`nirunner flows NI [-f] [--app NAME] [--json] [--last N]`: an NI's flow log."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any


def _when(t: float | None) -> str:
    if not t:
        return "-"
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _ends(r: dict[str, Any]) -> str:
    ports = r.get("proto") in ("tcp", "udp")  # else sport holds an ICMP type, ARP opcode

    def one(ip: Any, port: Any) -> str:
        return f"{ip}:{port}" if port and ports else str(ip)

    return f"{one(r.get('src'), r.get('sport'))} -> {one(r.get('dst'), r.get('dport'))}"


def line(r: dict[str, Any]) -> str:
    """One record as a person reads it."""
    app = r.get("app") or r.get("mac") or "-"
    if r.get("type") == "dns":
        answers = ", ".join(f"{a['data']} ({a['type']}, ttl {a['ttl']})"
                            for a in r.get("answers", [])) or "no answer"
        return (f"{_when(r.get('time'))}  {app:<10} dns   {r.get('query')} {r.get('qtype')} "
                f"{r.get('rcode')}: {answers}")
    if r.get("verdict") == "drop":
        return (f"{_when(r.get('end'))}  {app:<10} drop  {r.get('proto')} {_ends(r)}  "
                f"{r.get('reason')}, {r.get('pkts_logged')} pkts logged")
    if r.get("type") == "start":
        return f"{_when(r.get('start'))}  {app:<10} start {r.get('proto')} {_ends(r)}"
    took = (r.get("end") or 0) - (r.get("start") or 0)
    rule = f" ({r['rule']})" if r.get("rule") else ""
    return (f"{_when(r.get('end'))}  {app:<10} {r.get('dir', ''):<7} {r.get('proto')} "
            f"{_ends(r)}  out {_size(r.get('bytes_out', 0))}/{r.get('pkts_out', 0)} pkts, "
            f"in {_size(r.get('bytes_in', 0))}/{r.get('pkts_in', 0)} pkts, "
            f"{took:.1f}s{rule}")


def cmd_flows(args: argparse.Namespace) -> int:
    from runner.api.client import ApiClient

    with ApiClient(args.socket) as api:
        for r in api.flows(args.name, follow=args.follow, app=args.app or "",
                           last=args.last or 0):
            print(json.dumps(r, sort_keys=True) if args.json else line(r), flush=True)
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("flows", help="show an NI's flow log (flows, drops, DNS answers)")
    p.add_argument("--socket", default=argparse.SUPPRESS,
                   help="the supervisor's API socket (env NIRUNNER_SOCKET)")
    p.add_argument("name")
    p.add_argument("-f", "--follow", action="store_true", help="keep showing new records")
    p.add_argument("--app", help="only this app's records")
    p.add_argument("--last", type=int, metavar="N", help="only the last N records kept")
    p.add_argument("--json", action="store_true", help="the records as JSON lines")
    p.set_defaults(func=cmd_flows)
