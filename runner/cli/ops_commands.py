"""CLI commands for running nirunner on a device: install, completion (and its helper)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from runner.cli import completion
from runner.errors import NirunnerError


def _scripts() -> dict[str, str]:
    from runner.cli.main import parser

    top = completion.command(parser())
    return {"bash": completion.bash(top), "zsh": completion.zsh(top)}


def cmd_completion(args: argparse.Namespace) -> int:
    print(_scripts()[args.shell], end="")
    return 0


def cmd_complete_nis(args: argparse.Namespace) -> int:
    """NI names, one a line, for the completion scripts: quick, and silent on any
    failure (no supervisor, no permission): a shell must never show an error."""
    try:
        from runner.api.client import ApiClient

        with ApiClient(args.socket, timeout=2.0) as api:
            names = [s["name"] for s in api.status([])]
    except (NirunnerError, OSError, KeyError, ValueError):
        return 0
    print("\n".join(sorted(names)))
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    from runner.install import files

    if os.geteuid() != 0 and args.root == "/" and not args.dry_run:
        raise NirunnerError("install writes under /etc and /usr/local: run it as root, "
                            "or use --root DIR or --dry-run")
    scripts = _scripts()
    todo = files.plan(args.root, args.prefix, scripts["bash"], scripts["zsh"])
    done = files.install(todo, dry_run=args.dry_run)
    verb = {"create": "would create", "update": "would update"} if args.dry_run else {}
    for f, what in done:
        note = " (exists: left as it is)" if what == "keep" else ""
        print(f"{verb.get(what, what)} {f.path}{note}")
        if args.dry_run and what in ("create", "update"):
            print("".join(f"    {line}\n" for line in f.text.splitlines()), end="")
    if not args.dry_run and args.root == "/":
        print("then: systemctl daemon-reload && systemctl enable --now nirunner")
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    from runner.api.client import ApiClient

    with ApiClient(args.socket) as api:
        resp = api.reload()
    for line in resp.changes:
        print(line)
    if not resp.changes:
        print("no changes")
    if resp.rolling:
        print(f"rolling to the new image, one at a time: {', '.join(resp.rolling)} "
              "(`nirunner roll` waits for it and shows the downtimes)")
    return 0


def cmd_roll(args: argparse.Namespace) -> int:
    from runner.api.client import ApiClient

    with ApiClient(args.socket) as api:
        resp = api.roll(args.names)
    rows = [["NI", "RESULT", "FROM", "TO", "DOWNTIME"]]
    for x in resp.nis:
        rows.append([x.ni, x.result, x.old_image, x.new_image,
                     f"{x.downtime_seconds:.2f}s" if x.result == "rolled" else "-"])
    if resp.nis:
        from runner.cli.ni_commands import table

        print(table(rows))
    for x in resp.nis:
        if x.error:
            print(f"{x.ni}: {x.error}")
    if resp.stopped:
        print(f"roll stopped: {resp.stopped}")
    if resp.pending:
        print(f"still on their old image: {', '.join(resp.pending)}")
    if not resp.nis and not resp.stopped:
        print("nothing to roll: every NI runs the configured image")
    return 1 if resp.stopped else 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("reload", help="re-read the supervisor's config (as SIGHUP does)")
    p.add_argument("--socket", default=argparse.SUPPRESS,
                   help="the supervisor's API socket (env NIRUNNER_SOCKET)")
    p.set_defaults(func=cmd_reload)

    p = sub.add_parser("roll", help="move NIs to the configured NI image, one at a time")
    p.add_argument("names", nargs="*", help="only these NIs (default: every NI on an "
                   "older image)")
    p.add_argument("--socket", default=argparse.SUPPRESS,
                   help="the supervisor's API socket (env NIRUNNER_SOCKET)")
    p.set_defaults(func=cmd_roll)

    p = sub.add_parser("install", help="install the systemd unit, a default config (if "
                       "missing) and the shell completions")
    p.add_argument("--root", default="/", help="write everything under this directory "
                   "(a package's staging root)")
    p.add_argument("--prefix", help="where nirunner is installed (the unit runs "
                   "PREFIX/bin/nirunner; completions go to PREFIX/share); default: this "
                   "nirunner, completions in /usr/local/share")
    p.add_argument("--dry-run", action="store_true", help="show what would be written")
    p.set_defaults(func=cmd_install)

    p = sub.add_parser("completion", help="print the shell completion script")
    p.add_argument("shell", choices=["bash", "zsh"])
    p.set_defaults(func=cmd_completion)

    p = sub.add_parser(completion.HIDDEN_NIS)  # no help: hidden; used by the scripts
    p.add_argument("--socket", default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_complete_nis)
